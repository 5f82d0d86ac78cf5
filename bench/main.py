"""The benchmark driver behind ``bench/run``: load runs, scale runs, in-process runs,
the profile, and the report.  See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import asdict
from importlib import metadata

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
OUT = os.path.join(BENCH, "out")
sys.path.insert(0, BENCH)

import loadbench as lb  # noqa: E402
import report  # noqa: E402
import sysstat  # noqa: E402

# Requests per second assumed before the first run of an app has been measured; the
# pushes generated for a run are 1.5 x what the last run of that app needed.
FIRST_GUESS_RPS = {"pinned": 3000, "2w": 6000}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def versions() -> dict:
    names = [
        "gunicorn",
        "Flask",
        "Werkzeug",
        "lxml",
        "cryptography",
        "blinker",
        "WeRoBot",
        "bottle",
        "wechatpy",
        "xmltodict",
        "pyinstrument",
    ]
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    try:
        out["wrk"] = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split(" Copyright")[0].strip()
    except FileNotFoundError:
        out["wrk"] = None
    return out


def machine() -> dict:
    info = {"kernel": platform.release(), "cores": os.cpu_count()}
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        info["memory_gib"] = round(int(f.readline().split()[1]) / 2**20, 1)
    return info


def source_hash() -> str:
    """A hash of the code under test (app/, wsgi.py, gunicorn.conf.py): shows an edit made mid-run."""
    import hashlib

    digest = hashlib.sha256()
    paths = [os.path.join(REPO, "wsgi.py"), os.path.join(REPO, "gunicorn.conf.py")]
    for root, dirs, files in os.walk(os.path.join(REPO, "app")):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        paths += [os.path.join(root, f) for f in sorted(files) if f.endswith(".py")]
    for path in paths:
        digest.update(os.path.relpath(path, REPO).encode())
        with open(path, "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()[:16]


def git_state() -> dict:
    def git(*args: str) -> str:
        result = subprocess.run(["git", "-C", REPO, *args], capture_output=True, text=True)
        return result.stdout.rstrip("\n")

    return {
        "commit": git("rev-parse", "HEAD"),
        "dirty_paths": [
            line[3:] for line in git("status", "--porcelain", "--", "app", "wsgi.py", "gunicorn.conf.py").splitlines()
        ],
    }


# --- load ---------------------------------------------------------------------------


def load_phase(args, results: dict, workdir: str, deadline: float) -> None:
    estimates: dict[tuple, float] = {}
    runs = results["load"]
    for config_name in args.configs:
        config = lb.CONFIGS[config_name]
        # the driver stays off the server's CPU in the pinned configuration
        os.sched_setaffinity(0, {int(config.wrk_cpus)} if config.wrk_cpus else set(range(sysstat.NCPU)))
        for round_no in range(1, args.rounds + 1):
            for mode in args.modes:
                safe = mode == "safe"
                attempt = 0
                while True:
                    quiet = sysstat.wait_quiet(max_wait=args.quiet_wait if time.monotonic() < deadline else 3)
                    log(
                        f"{config_name} round {round_no} {mode} attempt {attempt + 1} "
                        f"(machine busy {quiet['busy_cores']:.2f} cores, waited {quiet['waited_s']}s)"
                    )
                    group = []
                    for app_name in args.apps:
                        app = lb.APPS[app_name]
                        # the fastest rate seen so far in this configuration and mode (the ceiling runs first)
                        seen = [v for (c, md, _), v in estimates.items() if (c, md) == (config_name, mode)]
                        rps = max(seen) if seen else FIRST_GUESS_RPS[config_name]
                        n = int(rps * args.duration * 1.5) + 1000
                        r = lb.timed_run(app, config, safe, args.duration, n, round_no, attempt + 1, workdir)
                        if r.rps:
                            estimates[(config_name, mode, app_name)] = r.rps
                        r_dict = asdict(r)
                        r_dict["quiet_before"] = quiet
                        group.append(r_dict)
                        log(
                            f"  {app_name:9s} "
                            + (
                                f"{r.rps:8.0f} req/s  p50 {r.p50_ms:6.2f} ms  p99 {r.p99_ms:6.2f} ms  "
                                f"{r.cpu_us_per_req:6.0f} CPU us/req  other {r.machine['other_cores']:.2f} "
                                f"steal {r.machine['steal_cores']:.2f}"
                                + (f"  INVALID: {'; '.join(r.invalid)}" if r.invalid else "")
                                + (f"  DISTURBED: {'; '.join(r.disturbed)}" if r.disturbed else "")
                                if r.error is None
                                else f"ERROR {r.error}"
                            )
                        )
                    redo = [g for g in group if g["error"] is None and (g["disturbed"] or g["wrk"].get("repeats"))]
                    attempt += 1
                    if redo and attempt <= args.retries and time.monotonic() < deadline:
                        for g in group:
                            g["superseded"] = True
                        runs.extend(group)
                        log(f"  round disturbed ({', '.join(g['app'] for g in redo)}): running it again")
                        continue
                    runs.extend(group)
                    break
    os.sched_setaffinity(0, set(range(sysstat.NCPU)))


def scale_http_phase(args, results: dict, workdir: str, deadline: float) -> None:
    """The project server (pinned, plaintext) with its store holding 1 key, then many."""
    import inprocess

    big = os.path.join(workdir, f"store-{args.scale_keys}.sqlite3")
    small = os.path.join(workdir, "store-1.sqlite3")
    log(f"scale: filling a store with {args.scale_keys:,} keys")
    fill_s = inprocess.fill_store(big, args.scale_keys)
    inprocess.fill_store(small, 1)
    results["scale_http"] = {
        "keys": args.scale_keys,
        "fill_s": round(fill_s, 1),
        "file_mb": round(os.path.getsize(big) / 2**20, 1),
        "runs": [],
    }
    config = lb.CONFIGS["pinned"]
    os.sched_setaffinity(0, {int(config.wrk_cpus)})
    for round_no in range(1, args.rounds + 1):
        for keys, path in ((1, small), (args.scale_keys, big)):
            tries = 1 + (args.retries if time.monotonic() < deadline else 0)
            for attempt in range(1, tries + 1):
                quiet = sysstat.wait_quiet(max_wait=args.quiet_wait if time.monotonic() < deadline else 3)
                r = lb.timed_run(
                    lb.APPS["project"],
                    config,
                    False,
                    args.duration,
                    int(3000 * args.duration),
                    round_no,
                    attempt,
                    workdir,
                    store_path=path,
                )
                d = asdict(r)
                d["keys"] = keys
                d["quiet_before"] = quiet
                results["scale_http"]["runs"].append(d)
                log(
                    f"  scale {keys:>9,} keys: "
                    + (
                        f"{r.rps:7.0f} req/s  {r.cpu_us_per_req:6.0f} CPU us/req  other {r.machine['other_cores']:.2f}"
                        + (f"  INVALID: {'; '.join(r.invalid)}" if r.invalid else "")
                        + (f"  DISTURBED: {'; '.join(r.disturbed)}" if r.disturbed else "")
                        if r.error is None
                        else f"ERROR {r.error}"
                    )
                )
                if not r.disturbed:
                    break
                d["superseded"] = attempt < tries
    os.sched_setaffinity(0, set(range(sysstat.NCPU)))
    results["scale_http"]["big_store"] = big


def on_core_0(script: str, *args: str) -> list[str]:
    """The command that runs bench/``script`` with this interpreter, pinned to CPU 0 (one core, as measured)."""
    return ["taskset", "-c", "0", sys.executable, os.path.join(BENCH, script), *args]


def run_child(label: str, cmd: list[str], results: dict) -> int:
    log(f"{label}: {' '.join(shlex.quote(c) for c in cmd)}")
    results.setdefault("commands", []).append(" ".join(shlex.quote(c) for c in cmd))
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        log(f"{label} failed ({proc.returncode}):\n{proc.stdout[-4000:]}")
    return proc.returncode


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench/run", description="Benchmark the WeChat callback server.")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 1 round of 2 s, small in-process runs, 20,000-key store; "
        "writes bench/out/RESULTS-quick.md, not bench/RESULTS.md",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5, help="seconds of each timed wrk run")
    parser.add_argument("--configs", default="pinned,2w")
    parser.add_argument("--modes", default="plaintext,safe")
    parser.add_argument("--apps", default="bare,project,werobot,wechatpy")
    parser.add_argument("--retries", type=int, default=2, help="reruns of a disturbed round")
    parser.add_argument("--quiet-wait", type=float, default=20, help="longest wait for a quiet machine before a round")
    parser.add_argument("--scale-keys", type=int, default=1_000_000)
    parser.add_argument("--inproc-pushes", type=int, default=3000)
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: load,scale,inprocess,profile")
    parser.add_argument(
        "--profile",
        choices=["auto", "always", "never"],
        default="auto",
        help="profile the project's in-process path: when a target is missed (auto), always, never",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=12,
        help="minutes of load runs after which disturbed rounds are not rerun nor waited for",
    )
    parser.add_argument(
        "--output", help="the report to write (default bench/RESULTS.md, quick: bench/out/RESULTS-quick.md)"
    )
    args = parser.parse_args()
    if args.quick:
        args.rounds = min(args.rounds, 1)
        args.duration = 2
        args.retries = 0
        args.quiet_wait = 5
        args.scale_keys = min(args.scale_keys, 20_000)
        args.inproc_pushes = 500
    for name in ("configs", "modes", "apps", "skip"):
        setattr(args, name, [x for x in getattr(args, name).split(",") if x])
    output = args.output or (os.path.join(OUT, "RESULTS-quick.md") if args.quick else os.path.join(BENCH, "RESULTS.md"))
    os.makedirs(OUT, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    json_path = os.path.join(OUT, f"results-{stamp}{'-quick' if args.quick else ''}.json")
    profile_dir = os.path.join(OUT, f"profile-{stamp}")

    started = time.time()
    deadline = time.monotonic() + args.budget * 60
    results = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "argv": sys.argv[1:],
        "command": " ".join(["bench/run", *(shlex.quote(a) for a in sys.argv[1:])]),
        "quick": args.quick,
        "settings": {k: v for k, v in vars(args).items() if k != "output"},
        "machine": machine(),
        "versions": versions(),
        "git": git_state(),
        "source_hash_start": source_hash(),
        "configs": {name: {**asdict(c), "env": c.env} for name, c in lb.CONFIGS.items() if name in args.configs},
        "apps": {name: asdict(a) for name, a in lb.APPS.items() if name in args.apps},
        "thresholds": {"other_cores": lb.OTHER_LIMIT, "steal_cores": lb.STEAL_LIMIT},
        "load": [],
    }
    workdir = lb.make_workdir()
    try:
        if "load" not in args.skip:
            load_phase(args, results, workdir, deadline)
        if "scale" not in args.skip:
            scale_http_phase(args, results, workdir, deadline + 3 * 60)
        if "inprocess" not in args.skip:
            inproc_json = os.path.join(workdir, "inprocess.json")
            cmd = on_core_0(
                "inprocess.py",
                "--out",
                inproc_json,
                "--pushes",
                str(args.inproc_pushes),
                "--scale-keys",
                str(args.scale_keys),
                "--scale-pushes",
                str(max(500, args.inproc_pushes // 2)),
            )
            if args.quick:
                cmd += ["--runs", "3", "--parse-repeat", "1000"]
            big = results.get("scale_http", {}).get("big_store")
            if big:
                cmd += ["--big-store", big]
            sysstat.wait_quiet(max_wait=args.quiet_wait)
            if run_child("in-process", cmd, results) == 0:
                with open(inproc_json) as f:
                    results["inprocess"] = json.load(f)
        targets = report.evaluate(results)
        results["targets"] = targets
        missed = [t for t in targets if t["met"] is False]
        if "profile" not in args.skip and (args.profile == "always" or (args.profile == "auto" and missed)):
            cmd = on_core_0(
                "profile_project.py",
                "--out-dir",
                profile_dir,
                "--pushes",
                str(args.inproc_pushes),
            )
            if args.quick:
                cmd += ["--passes", "3"]
            sysstat.wait_quiet(max_wait=args.quiet_wait)
            if run_child("profile", cmd, results) == 0:
                with open(os.path.join(profile_dir, "profile.json")) as f:
                    results["profile"] = json.load(f)
                results["profile_dir"] = os.path.relpath(profile_dir, REPO)
    finally:
        lb.remove_workdir(workdir)
        results["elapsed_min"] = round((time.time() - started) / 60, 1)
        results["source_hash_end"] = source_hash()
        with open(json_path, "w") as f:
            json.dump(results, f, indent=1, default=str)
        results["json_path"] = os.path.relpath(json_path, REPO)
        with open(output, "w") as f:
            f.write(report.markdown(results))
    log(f"wrote {os.path.relpath(output, REPO)} and {os.path.relpath(json_path, REPO)} ({results['elapsed_min']} min)")
    for t in results.get("targets", []):
        print(
            f"  {'MET   ' if t['met'] else 'MISSED' if t['met'] is False else 'N/A   '} {t['name']}: "
            f"{t['value'] if t['value'] is not None else '-'} (target {t['target']})"
        )


if __name__ == "__main__":
    main()
