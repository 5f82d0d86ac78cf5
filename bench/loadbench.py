"""Load runs: one gunicorn server, its replies checked, then timed by wrk replaying pushes.

Every app is served by the same command, ``gunicorn -c gunicorn.conf.py --chdir DIR
MODULE:app``, with the same GUNICORN_* variables, so the only difference between
two servers of one configuration is the WSGI app.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

import pushes
import sysstat

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
APPS_DIR = os.path.join(BENCH, "apps")
LUA = os.path.join(BENCH, "replay.lua")
GUNICORN_CONF = os.path.join(REPO, "gunicorn.conf.py")
GUNICORN = os.path.join(os.path.dirname(sys.executable), "gunicorn")


@dataclass(frozen=True)
class App:
    name: str
    label: str
    chdir: str
    module: str
    expect: str  # what wrk's script checks each body against: "xml" or "success"
    repo: str = REPO  # the checkout whose gunicorn.conf.py serves it and whose app/ is on the path


APPS = {
    "bare": App("bare", "bare Flask (ceiling)", APPS_DIR, "bare_flask:app", "success"),
    "project": App("project", "project (echo plugin)", REPO, "wsgi:app", "xml"),
    "werobot": App("werobot", "WeRoBot echo", APPS_DIR, "werobot_echo:app", "xml"),
    "wechatpy": App("wechatpy", "Flask + wechatpy echo", APPS_DIR, "wechatpy_echo:app", "xml"),
}


@dataclass(frozen=True)
class Config:
    name: str
    label: str
    env: dict
    workers: int
    server_cpus: str | None  # taskset list for the server, None: unpinned
    wrk_cpus: str | None
    wrk_threads: int
    connections: int


def conf_default(variable: str) -> str:
    """The default gunicorn.conf.py gives ``variable`` (``os.environ.get("GUNICORN_X", "default")``), or "?"."""
    with open(GUNICORN_CONF) as f:
        found = re.search(rf"""os\.environ\.get\(["']{variable}["'],\s*["']([^"']*)["']\)""", f.read())
    return found.group(1) if found else "?"


CONFIGS = {
    "pinned": Config(
        "pinned",
        "1 sync worker pinned to CPU 0, wrk pinned to CPU 1",
        # GUNICORN_THREADS=1: with more, gunicorn runs a "sync" worker as gthread
        {"GUNICORN_WORKERS": "1", "GUNICORN_WORKER_CLASS": "sync", "GUNICORN_THREADS": "1"},
        1,
        "0",
        "1",
        1,
        4,
    ),
    "2w": Config(
        "2w",
        f"2 workers (gunicorn.conf.py's {conf_default('GUNICORN_WORKER_CLASS')}, "
        f"{conf_default('GUNICORN_THREADS')} threads), unpinned; wrk unpinned",
        {"GUNICORN_WORKERS": "2"},
        2,
        None,
        None,
        2,
        16,
    ),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env() -> dict:
    """The environment without any inherited GUNICORN_* / WECHAT_* / metrics-folder setting."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GUNICORN_", "WECHAT_", "BENCH_")) and k != "PROMETHEUS_MULTIPROC_DIR"
    }


class Server:
    def __init__(
        self, app: App, config: Config, workdir: str, store_path: str | None = None, extra_env: dict | None = None
    ) -> None:
        self.app = app
        self.config = config
        self.port = free_port()
        self.workdir = workdir
        self.store_path = store_path or os.path.join(workdir, f"bench-{self.port}.sqlite3")
        self.owns_store = store_path is None
        self.log_path = os.path.join(workdir, f"gunicorn-{app.name}-{self.port}.log")
        # gunicorn.conf.py makes a temporary folder for the metrics of every server started
        # without one; each server here gets its own inside the workdir, removed with it.
        self.metrics_dir = os.path.join(workdir, f"metrics-{self.port}")
        os.makedirs(self.metrics_dir, exist_ok=True)
        self.env_settings = {
            **pushes.ENV,  # token, appid, AES key, and WECHAT_MESSAGE_MODE=compatible (both modes)
            "WECHAT_PLUGINS": "app.plugins.echo",
            "WECHAT_STORE_URL": f"sqlite:///{self.store_path}",
            **config.env,
            "GUNICORN_BIND": f"127.0.0.1:{self.port}",
            **(extra_env or {}),
        }
        cmd = [GUNICORN, "-c", os.path.join(app.repo, "gunicorn.conf.py"), "--chdir", app.chdir, app.module]
        if config.server_cpus is not None:
            cmd = ["taskset", "-c", config.server_cpus, *cmd]
        self.cmd = cmd
        self.proc: subprocess.Popen | None = None
        self.workers: list[int] = []

    @property
    def command_line(self) -> str:
        env = " ".join(f"{k}={v}" for k, v in self.env_settings.items())
        return f"{env} {' '.join(self.cmd)}"

    def start(self, timeout: float = 30.0) -> None:
        self.log = open(self.log_path, "wb")
        # gunicorn.conf.py's worker hooks import app.runs in every worker, the peers' too: the
        # repository is on the path whatever the driver's working directory.
        path = os.pathsep.join(p for p in (self.app.repo, os.environ.get("PYTHONPATH")) if p)
        env = {**clean_env(), **self.env_settings, "PROMETHEUS_MULTIPROC_DIR": self.metrics_dir, "PYTHONPATH": path}
        self.proc = subprocess.Popen(
            self.cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.app.name} server exited with {self.proc.returncode}; see {self.log_path}:\n"
                    + open(self.log_path, errors="replace").read()[-2000:]
                )
            workers = sysstat.children(self.proc.pid)
            if len(workers) >= self.config.workers:
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                        self.workers = workers
                        return
                except OSError:
                    pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.app.name} server did not come up in {timeout}s; see {self.log_path}")

    def pids(self) -> list[int]:
        return [self.proc.pid, *sysstat.children(self.proc.pid)]

    def stop(self) -> None:
        if self.proc is None:
            return
        pids = self.pids() if self.proc.poll() is None else []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                self.proc.wait(5)
        self.log.close()
        shutil.rmtree(self.metrics_dir, ignore_errors=True)
        if self.owns_store:
            for suffix in ("", "-wal", "-shm"):
                try:
                    os.remove(self.store_path + suffix)
                except FileNotFoundError:
                    pass

    # --- requests ---------------------------------------------------------------

    def post(self, push: pushes.Push) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("POST", push.target, body=push.body, headers={"Content-Type": "text/xml"})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def check(self, safe: bool) -> int:
        """Send every text of the mix twice and check each reply; return how many were checked."""
        sample = pushes.make_pushes(2 * len(pushes.TEXTS), safe)
        for push in sample:
            status, body = self.post(push)
            try:
                pushes.check_reply(self.app.name, safe, push, status, body)
            except Exception as exc:
                raise pushes.BadReply(
                    f"{self.app.name} ({'safe' if safe else 'plaintext'}) answered {push.content!r} wrongly: {exc}"
                ) from None
        return len(sample)


@dataclass
class WrkResult:
    data: dict
    cpu_s: float
    command: str
    stdout: str


def run_wrk(server: Server, push_file: str, duration: float, config: Config) -> WrkResult:
    cmd = [
        "wrk",
        f"-t{config.wrk_threads}",
        f"-c{config.connections}",
        f"-d{duration}s",
        "--timeout",
        "5s",
        "-s",
        LUA,
        f"http://127.0.0.1:{server.port}",
        "--",
        push_file,
        server.app.expect,
        str(config.wrk_threads),
    ]
    if config.wrk_cpus is not None:
        cmd = ["taskset", "-c", config.wrk_cpus, *cmd]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    # A watchdog ends a wrk that outlives its duration by a minute (it never should).
    watchdog = threading.Timer(duration + 60, proc.kill)
    watchdog.start()
    # wrk prints little: read it all, then reap it with wait4 to get its CPU time.
    out = proc.stdout.read()
    watchdog.cancel()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    text = out.decode(errors="replace")
    data = None
    for line in text.splitlines():
        if line.startswith("BENCH_JSON "):
            data = json.loads(line[len("BENCH_JSON ") :])
    if proc.returncode != 0 or data is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}):\n{text}")
    return WrkResult(data, usage.ru_utime + usage.ru_stime, " ".join(cmd), text)


@dataclass
class RunResult:
    config: str
    mode: str
    app: str
    round: int
    attempt: int
    ok: bool = False
    error: str | None = None
    rps: float | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    requests: int | None = None
    cpu_us_per_req: float | None = None
    checked: int = 0
    pushes_generated: int = 0
    wrk: dict = field(default_factory=dict)
    machine: dict = field(default_factory=dict)
    invalid: list = field(default_factory=list)
    disturbed: list = field(default_factory=list)
    server_command: str = ""
    wrk_command: str = ""
    started: str = ""


# A run is disturbed when something other than the server, wrk and this driver kept
# the machine busy, or the hypervisor took the CPU away (steal), beyond these (in cores).
OTHER_LIMIT = 0.10
STEAL_LIMIT = 0.05


def timed_run(
    app: App,
    config: Config,
    safe: bool,
    duration: float,
    n_pushes: int,
    round_no: int,
    attempt: int,
    workdir: str,
    store_path: str | None = None,
    extra_env: dict | None = None,
) -> RunResult:
    mode = "safe" if safe else "plaintext"
    result = RunResult(config.name, mode, app.name, round_no, attempt, started=time.strftime("%H:%M:%S"))
    server = Server(app, config, workdir, store_path, extra_env)
    result.server_command = server.command_line
    try:
        server.start()
        # 1. correctness, before any timing
        result.checked = server.check(safe)
        # 2. warm-up: a second of load on its own pushes
        warm_file = os.path.join(workdir, "warm.txt")
        pushes.write_wrk_file(warm_file, pushes.make_pushes(max(500, n_pushes // max(1, int(duration))), safe))
        run_wrk(server, warm_file, 1, config)
        # 3. the timed pushes, generated now so their timestamps are fresh
        push_file = os.path.join(workdir, "timed.txt")
        pushes.write_wrk_file(push_file, pushes.make_pushes(n_pushes, safe))
        result.pushes_generated = n_pushes
        workers_before = sysstat.children(server.proc.pid)
        pids = server.pids()
        before = sysstat.snapshot(pids)
        wrk = run_wrk(server, push_file, duration, config)
        time.sleep(0.2)  # let the server finish the requests wrk left in flight
        after = sysstat.snapshot(pids)
        result.wrk_command = wrk.command
        data = wrk.data
        result.wrk = data
        result.machine = sysstat.machine_report(before, after, wrk.cpu_s)
        if sysstat.children(server.proc.pid) != workers_before:
            result.invalid.append("a worker restarted during the run")
        result.requests = data["requests"]
        result.rps = data["requests"] / (data["duration_us"] / 1e6)
        result.p50_ms = data["latency_us"]["p50"] / 1000
        result.p90_ms = data["latency_us"]["p90"] / 1000
        result.p99_ms = data["latency_us"]["p99"] / 1000
        server_ticks = sum(after.server.get(pid, t) - t for pid, t in before.server.items())
        result.cpu_us_per_req = server_ticks / sysstat.HZ * 1e6 / max(1, data["requests"])
        if data["non200"]:
            result.invalid.append(f"{data['non200']} non-200 responses {data['statuses']}")
        if data["bad_body"]:
            result.invalid.append(f"{data['bad_body']} replies with a wrong body")
        if data["repeats"]:
            result.invalid.append(f"{data['repeats']} pushes sent twice (only {data['available']} generated)")
        errors = {k: v for k, v in data["errors"].items() if v}
        if errors:
            result.invalid.append(f"socket errors {errors}")
        machine = result.machine
        if machine["other_cores"] > OTHER_LIMIT:
            result.disturbed.append(f"other load {machine['other_cores']:.2f} cores")
        if machine["steal_cores"] > STEAL_LIMIT:
            result.disturbed.append(f"steal {machine['steal_cores']:.2f} cores")
        result.ok = not result.invalid
    except Exception as exc:  # noqa: BLE001 - a failed run is reported, not fatal
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        server.stop()
    return result


def make_workdir() -> str:
    return tempfile.mkdtemp(prefix="wechat-bench-")


def remove_workdir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
