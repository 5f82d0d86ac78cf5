"""How busy the machine and a process tree were: /proc/stat, /proc/<pid>/stat, loadavg."""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass, field

HZ = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1

# /proc/stat columns after the cpu name
USER, NICE, SYSTEM, IDLE, IOWAIT, IRQ, SOFTIRQ, STEAL = range(8)


def proc_stat() -> dict[str, list[int]]:
    rows = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu"):
                name, *values = line.split()
                rows[name] = [int(v) for v in values[:8]]
    return rows


def process_ticks(pid: int) -> int | None:
    """utime + stime of ``pid`` in clock ticks, None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of the full line)


def children(pid: int) -> list[int]:
    """The direct children of ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                text = f.read()
        except (FileNotFoundError, ProcessLookupError):
            continue
        ppid = int(text[text.rindex(")") + 2 :].split()[1])
        if ppid == pid:
            found.append(int(entry))
    return sorted(found)


def loadavg() -> list[float]:
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


@dataclass
class Snapshot:
    at: float
    stat: dict[str, list[int]]
    server: dict[int, int]  # pid -> ticks
    driver: float  # seconds of CPU this process used
    load: list[float] = field(default_factory=list)


def snapshot(server_pids: list[int]) -> Snapshot:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    ticks = {}
    for pid in server_pids:
        t = process_ticks(pid)
        if t is not None:
            ticks[pid] = t
    return Snapshot(time.monotonic(), proc_stat(), ticks, usage.ru_utime + usage.ru_stime, loadavg())


def busy(row: list[int]) -> int:
    return row[USER] + row[NICE] + row[SYSTEM] + row[IRQ] + row[SOFTIRQ]


def machine_report(before: Snapshot, after: Snapshot, wrk_cpu_s: float) -> dict:
    """What the machine did between two snapshots, in cores (1.0 = one core busy all the time).

    ``other`` is the busy time no known process explains: the machine's busy time minus
    the server's, wrk's and this driver's.  Kernel work for the loopback traffic (softirq)
    is charged to the processes it interrupts (this kernel does no separate IRQ time
    accounting), so it is not subtracted again; it is shown for information.
    """
    wall = after.at - before.at
    server_s = sum(after.server.get(pid, t) - t for pid, t in before.server.items()) / HZ
    driver_s = after.driver - before.driver
    total = [a - b for a, b in zip(after.stat["cpu"], before.stat["cpu"])]
    busy_s = busy(total) / HZ
    softirq_s = total[SOFTIRQ] / HZ
    steal_s = total[STEAL] / HZ
    other_s = busy_s - server_s - wrk_cpu_s - driver_s
    per_cpu = {}
    for name in after.stat:
        if name == "cpu":
            continue
        delta = [a - b for a, b in zip(after.stat[name], before.stat[name])]
        per_cpu[name] = round(busy(delta) / HZ / wall, 3)
    return {
        "wall_s": round(wall, 3),
        "server_cores": round(server_s / wall, 3),
        "wrk_cores": round(wrk_cpu_s / wall, 3),
        "driver_cores": round(driver_s / wall, 3),
        "softirq_cores": round(softirq_s / wall, 3),
        "steal_cores": round(steal_s / wall, 3),
        "other_cores": round(other_s / wall, 3),
        "busy_cores": round(busy_s / wall, 3),
        "per_cpu_busy": per_cpu,
        "loadavg_before": before.load,
        "loadavg_after": after.load,
    }


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cores_busy(stat_before: dict, stat_after: dict, cpus: list[int] | None = None) -> tuple[float, float]:
    """Busy and steal seconds between two /proc/stat readings, over ``cpus`` (None: all)."""
    names = ["cpu"] if cpus is None else [f"cpu{c}" for c in cpus]
    busy_t = steal_t = 0
    for name in names:
        delta = [a - b for a, b in zip(stat_after[name], stat_before[name])]
        busy_t += busy(delta)
        steal_t += delta[STEAL]
    return busy_t / HZ, steal_t / HZ


def wait_quiet(limit: float = 0.15, window: float = 1.0, max_wait: float = 60.0) -> dict:
    """Wait (at most ``max_wait`` s) until the machine's busy time over a ``window`` is under
    ``limit`` cores, not counting this process.  Returns what was seen."""
    start = time.monotonic()
    while True:
        s0, c0, t0 = proc_stat(), self_cpu(), time.monotonic()
        time.sleep(window)
        s1, c1, t1 = proc_stat(), self_cpu(), time.monotonic()
        busy_s, steal_s = cores_busy(s0, s1)
        other = (busy_s - (c1 - c0) + steal_s) / (t1 - t0)
        waited = time.monotonic() - start
        if other <= limit or waited >= max_wait:
            return {"waited_s": round(waited, 1), "busy_cores": round(other, 3), "quiet": other <= limit}


def measure_quietly(fn, cpus: list[int] | None, limit: float = 0.15, tries: int = 4):
    """Run ``fn`` until a run is not disturbed (busy time on ``cpus`` not ours, plus steal,
    under ``limit`` cores), at most ``tries`` times.  Returns (value, other_cores, tries_used)."""
    for attempt in range(1, tries + 1):
        s0, c0, t0 = proc_stat(), self_cpu(), time.monotonic()
        value = fn()
        s1, c1, t1 = proc_stat(), self_cpu(), time.monotonic()
        busy_s, steal_s = cores_busy(s0, s1, cpus)
        other = max(0.0, (busy_s - (c1 - c0) + steal_s) / (t1 - t0))
        if other <= limit:
            break
    return value, round(other, 3), attempt
