"""The shipped deployment: deploy/nginx.conf in front of gunicorn, and deploy/compose.yaml.

A real nginx serves the shipped config on a free loopback port, with only the
listen address, the upstream address and the paths nginx writes to (pid, logs,
temporary files) changed, in front of a real gunicorn started from
gunicorn.conf.py.  Where nginx is not installed these tests are skipped, except
in CI (``CI`` set), where a missing nginx is a failure: .ci/run installs it.

Run as a script, this module measures how many connections trickling their
headers straight at gunicorn it takes to delay a push (the README's numbers)::

    .venv/bin/python -m tests.test_nginx [--workers 2] [--threads 4] [--counts 4,8,16] [--trials 10]
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import re
import selectors
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests
import yaml

from app.testing import signed_query, text_push
from tests.conftest import TOKEN
from tests.servers import ROOT, free_port, serve

DEPLOY = ROOT / "deploy"
CONFIG = DEPLOY / "nginx.conf"
COMPOSE = DEPLOY / "compose.yaml"
LOCAL_NETWORKS = ["127.0.0.1", "::1", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]


# --- the shipped config, made servable on loopback -------------------------------------------


def nginx_binary() -> str:
    binary = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("nginx is not installed; .ci/run should have installed it")
        pytest.skip("nginx is not installed")
    return binary


def servable(text: str, folder: Path, port: int, upstream: str) -> str:
    """The shipped config listening on 127.0.0.1:``port``, proxying to ``upstream``, writing under ``folder``.

    Each line it changes must be found exactly as often as expected, so that a
    change to the shipped file's shape fails here instead of going untested.
    """
    rewrites = [
        (r"^(\s*)listen 80;$", lambda m: f"{m[1]}listen 127.0.0.1:{port};", 1),
        (r"^(\s*)server app:8000;$", lambda m: f"{m[1]}server {upstream};", 1),
        (r"^pid \S+;$", lambda m: f"pid {folder}/nginx.pid;", 1),
        (r"^error_log \S+", lambda m: f"error_log {folder}/error.log", 1),
        (r"^(\s*)access_log \S+;$", lambda m: f"{m[1]}access_log {folder}/access.log;", 1),
        (r"^(\s*)(\w+_temp_path) /var/cache/nginx/(\w+);$", lambda m: f"{m[1]}{m[2]} {folder}/{m[3]};", 5),
    ]
    for pattern, replacement, expected in rewrites:
        text, found = re.subn(pattern, replacement, text, flags=re.MULTILINE)
        assert found == expected, f"deploy/nginx.conf: {pattern!r} found {found} times, expected {expected}"
    return text


@contextlib.contextmanager
def nginx_folder() -> Iterator[Path]:
    """A folder nginx's workers can write to: they run as an unprivileged user when the tests run as root."""
    with tempfile.TemporaryDirectory(prefix="wechat-nginx-") as name:
        os.chmod(name, 0o755)
        yield Path(name)


def write_config(folder: Path, port: int, upstream: str) -> Path:
    path = folder / "nginx.conf"
    path.write_text(servable(CONFIG.read_text(), folder, port, upstream))
    return path


@dataclass
class Front:
    base_url: str
    port: int
    folder: Path


@contextlib.contextmanager
def nginx_in_front_of(upstream_port: int) -> Iterator[Front]:
    """A real nginx (the shipped config) on a free loopback port, proxying to 127.0.0.1:``upstream_port``."""
    binary = nginx_binary()
    with nginx_folder() as folder:
        port = free_port()
        config = write_config(folder, port, f"127.0.0.1:{upstream_port}")
        process = subprocess.Popen(
            [binary, "-e", str(folder / "error.log"), "-c", str(config), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    log = (folder / "error.log").read_text() if (folder / "error.log").exists() else ""
                    pytest.fail(f"nginx did not start: {process.stderr.read().decode()[-2000:]} {log[-2000:]}")
                time.sleep(0.05)
            yield Front(f"http://127.0.0.1:{port}", port, folder)
        finally:
            process.terminate()  # SIGTERM: nginx's fast shutdown
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def directives(name: str) -> list[str]:
    """The values the shipped config gives a directive, in order: ``directives("send_timeout")`` -> ["10s"]."""
    return [value.strip() for value in re.findall(rf"^\s*{name}\s+([^;]+);", CONFIG.read_text(), flags=re.MULTILINE)]


def directive(name: str) -> str:
    """The value of a directive the shipped config sets once."""
    found = directives(name)
    assert len(found) == 1, f"deploy/nginx.conf sets {name} {len(found)} times"
    return found[0]


def seconds(value: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(ms|s|m)?", value).groups()
    return int(number) * {"ms": 0.001, "s": 1, None: 1, "m": 60}[unit]


def kibibytes(value: str) -> float:
    number, unit = re.fullmatch(r"(\d+)([kKmM])?", value).groups()
    return int(number) * {"k": 1, "K": 1, "m": 1024, "M": 1024, None: 1 / 1024}[unit]


def locations(text: str) -> dict[str, str]:
    """Each ``location`` block's argument and body (the shipped file nests no blocks inside a location)."""
    return {m[1].strip(): m[2] for m in re.finditer(r"^\s*location\s+([^{]+)\{([^}]*)\}", text, flags=re.MULTILINE)}


# --- connections that send their request header one byte a second ----------------------------


SLOW_HEADER = (
    f"POST /wechat?{urlencode(signed_query(TOKEN))} HTTP/1.1\r\n"
    "Host: 127.0.0.1\r\nContent-Type: text/xml\r\nContent-Length: 300\r\n"
).encode()


@dataclass
class SlowConnection:
    sock: socket.socket
    opened: float
    sent: int = 0
    closed: float | None = None  # when the server closed or reset it
    how: str = ""


@dataclass
class Trickle:
    """``count`` connections to ``port`` that each send a partial request header, one byte per ``every`` seconds.

    A background thread sends the bytes and notices at once when the server
    closes a connection.  It stops by itself after ``lasting`` seconds or when
    every connection is closed, and on :meth:`stop`.
    """

    port: int
    count: int
    every: float = 1.0
    lasting: float = 8.0
    connections: list[SlowConnection] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._wake, self._waker = socket.socketpair()  # stop() wakes the thread at once
        self._thread = threading.Thread(target=self._run, name="trickle", daemon=True)

    def start(self) -> Trickle:
        try:
            for _ in range(self.count):
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=2)
                sock.setblocking(False)
                self.connections.append(SlowConnection(sock, time.monotonic()))
        except OSError:
            self.stop()
            raise
        self._send_next_bytes()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._waker.send(b"x")
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        for sock in (self._wake, self._waker, *(c.sock for c in self.connections)):
            sock.close()

    def __enter__(self) -> Trickle:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def open(self) -> list[SlowConnection]:
        return [c for c in self.connections if c.closed is None]

    def wait_until_sent(self, nbytes: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while any(c.sent < nbytes for c in self.open()) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert all(c.sent >= nbytes for c in self.open()), "the slow connections did not send their bytes in time"

    def _closed(self, connection: SlowConnection, how: str) -> None:
        connection.closed, connection.how = time.monotonic(), how

    def _send_next_bytes(self) -> None:
        for connection in self.open():
            try:
                connection.sock.send(SLOW_HEADER[connection.sent : connection.sent + 1])
                connection.sent += 1
            except OSError as exc:
                self._closed(connection, type(exc).__name__)

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self._wake, selectors.EVENT_READ, None)
        for connection in self.connections:
            selector.register(connection.sock, selectors.EVENT_READ, connection)
        ends = self.connections[0].opened + self.lasting
        next_tick = time.monotonic() + self.every
        try:
            for _ in range(int(self.lasting / self.every) * 10 + 100):  # bounded: ticks, plus a wake per closing
                now = time.monotonic()
                if self._stop.is_set() or now >= ends or not self.open():
                    return
                for key, _ in selector.select(timeout=max(0.0, min(next_tick, ends) - now)):
                    connection = key.data
                    if connection is None:  # stop()
                        return
                    try:
                        data = connection.sock.recv(4096)
                        how = f"answered {data[:12]!r}" if data else "closed"
                    except BlockingIOError:
                        continue
                    except OSError as exc:
                        how = type(exc).__name__
                    self._closed(connection, how)
                    selector.unregister(connection.sock)
                if time.monotonic() >= next_tick:
                    next_tick += self.every
                    self._send_next_bytes()
        finally:
            selector.close()


def post_push(base_url: str, content: str, timeout: float = 5) -> tuple[requests.Response, float]:
    started = time.monotonic()
    answer = requests.post(
        f"{base_url}/wechat?{urlencode(signed_query(TOKEN))}",
        data=text_push(content),
        headers={"Content-Type": "text/xml", "Connection": "close"},
        timeout=timeout,
    )
    return answer, time.monotonic() - started


def assert_echoed(answer: requests.Response, content: str) -> None:
    assert answer.status_code == 200, answer.text
    assert f"<Content><![CDATA[{content}]]></Content>" in answer.content.decode()


# --- the config itself --------------------------------------------------------------------------


def test_the_shipped_config_passes_nginx_t():
    binary = nginx_binary()
    with nginx_folder() as folder:
        config = write_config(folder, free_port(), "127.0.0.1:8000")
        checked = subprocess.run(
            [binary, "-t", "-e", str(folder / "error.log"), "-c", str(config)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert checked.returncode == 0, checked.stderr
    assert "test is successful" in checked.stderr


def test_the_config_reads_whole_requests_and_cuts_slow_clients_off():
    assert directive("proxy_request_buffering") == "on"
    assert 256 < kibibytes(directive("client_max_body_size")) <= 300  # the app's 262144 bytes, and a little
    assert kibibytes(directive("client_body_buffer_size")) >= 16  # a push whole in memory
    assert 1 <= seconds(directive("client_header_timeout")) <= 10
    assert 1 <= seconds(directive("client_body_timeout")) <= 10
    assert seconds(directive("send_timeout")) <= 30
    # To clients, then to gunicorn: nginx must drop an idle upstream connection before gunicorn does.
    to_clients, to_app = directives("keepalive_timeout")
    assert seconds(to_clients) <= 75
    gunicorn_keepalive = re.search(r"^keepalive = (\d+)$", (ROOT / "gunicorn.conf.py").read_text(), flags=re.MULTILINE)
    assert seconds(to_app) < int(gunicorn_keepalive[1])
    # The app holds some deliveries up to 5.5 s unanswered on purpose: nginx must wait longer.
    assert seconds(directive("proxy_read_timeout")) >= 10
    assert directive("proxy_set_header X-Forwarded-For") == "$proxy_add_x_forwarded_for"
    assert directive("proxy_set_header X-Forwarded-Proto") == "$scheme"
    assert directive("limit_conn_zone") == "$binary_remote_addr zone=per_client:10m"
    # Above what the app serves at once (workers x threads, as gunicorn.conf.py defaults them), so WeChat is
    # never refused by nginx while the app could answer.
    conf = (ROOT / "gunicorn.conf.py").read_text()
    workers, threads = (int(re.search(rf'"GUNICORN_{name}", "(\d+)"', conf)[1]) for name in ("WORKERS", "THREADS"))
    assert int(directive("limit_conn per_client")) >= workers * threads


def test_metrics_and_healthz_are_for_local_networks_only_and_the_callback_for_everyone():
    blocks = locations(CONFIG.read_text())
    assert set(blocks) == {"= /wechat", "= /metrics", "= /healthz", "/"}
    for probe in ("= /metrics", "= /healthz"):
        rules = re.findall(r"^\s*(allow|deny)\s+([^;]+);", blocks[probe], flags=re.MULTILINE)
        assert rules == [("allow", network) for network in LOCAL_NETWORKS] + [("deny", "all")]
        assert "proxy_pass http://wechat_app;" in blocks[probe]
    for public in ("= /wechat", "/"):
        assert not re.search(r"^\s*(allow|deny)\b", blocks[public], flags=re.MULTILINE)
        assert "proxy_pass http://wechat_app;" in blocks[public]
    # Nothing outside those blocks lets anyone in or keeps anyone out.
    assert len(re.findall(r"^\s*(?:allow|deny)\b", CONFIG.read_text(), flags=re.MULTILINE)) == 2 * 6


# --- the compose file ---------------------------------------------------------------------------


def test_the_compose_file_runs_nginx_the_app_redis_and_a_worker():
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert set(services) == {"nginx", "app", "redis", "worker"}

    nginx = services["nginx"]
    assert nginx["image"].startswith("nginx:")
    assert nginx["ports"] == ["80:80"]
    assert "./nginx.conf:/etc/nginx/nginx.conf:ro" in nginx["volumes"]
    assert (COMPOSE.parent / "nginx.conf").is_file()
    assert nginx["depends_on"]["app"]["condition"] == "service_healthy"
    assert "healthcheck" in nginx

    app = services["app"]
    assert app["build"] == {"context": "..", "dockerfile": "Dockerfile"}
    assert (COMPOSE.parent / app["build"]["context"] / "Dockerfile").resolve().is_file()
    assert app["environment"]["WECHAT_STORE_URL"] == "redis://redis:6379/0"
    assert app["environment"]["WECHAT_TRUSTED_PROXIES"] == "1"
    assert app["env_file"] == "wechat.env"
    assert "ports" not in app  # reachable through nginx only

    worker = services["worker"]
    assert worker["image"] == app["image"]
    assert worker["command"] == ["rq", "worker", "--url", "redis://redis:6379/0", "wechat"]
    assert worker["environment"] == app["environment"]
    assert worker["env_file"] == "wechat.env"

    redis = services["redis"]
    assert redis["image"].startswith("redis:")
    assert redis["command"] == ["redis-server", "--appendonly", "yes"]
    assert redis["volumes"] == ["redis-data:/data"]
    assert "redis-data" in compose["volumes"]
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]

    example = (COMPOSE.parent / "wechat.env.example").read_text()
    assert "WECHAT_TOKEN=" in example and "WECHAT_STORE_URL" not in example.split("set there")[1]


# --- real traffic through a real nginx ----------------------------------------------------------


# One worker of 4 threads, here and straight at gunicorn below: 5 slow connections hold up a push when
# they reach gunicorn directly, so the 100 that trickle at nginx are 20 times what it would take.
SMALL_POOL = {"GUNICORN_WORKERS": "1", "GUNICORN_THREADS": "4"}


@pytest.fixture(scope="module")
def fronted(tmp_path_factory):
    """gunicorn (gunicorn.conf.py, a small pool) behind the shipped nginx, trusting one proxy as compose runs it."""
    with (
        serve(
            tmp_path_factory.mktemp("fronted"),
            WECHAT_TRUSTED_PROXIES="1",
            WECHAT_ALLOWED_IPS="127.0.0.1",
            **SMALL_POOL,
        ) as served,
        nginx_in_front_of(served.port) as front,
    ):
        yield served, front


def test_pushes_through_nginx_are_answered_while_100_connections_trickle_their_headers(fronted):
    _served, front = fronted
    header_timeout = seconds(directive("client_header_timeout"))
    timings: list[float] = []
    with Trickle(front.port, count=100, lasting=header_timeout + 3) as trickle:
        trickle.wait_until_sent(2, timeout=3)  # straight at gunicorn, each would now hold a thread
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            for answer, took in pool.map(lambda n: post_push(front.base_url, f"push {n}"), range(24)):
                timings.append(took)
                assert answer.status_code == 200
                assert took < 1.0
        pushes_done = time.monotonic()
        assert len(trickle.open()) == 100, "the pushes were not sent while every slow connection was open"
        assert pushes_done < min(c.opened for c in trickle.connections) + header_timeout

        # nginx cuts each one off client_header_timeout after it connected, trickling or not.
        deadline = time.monotonic() + header_timeout + 2
        while trickle.open() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not trickle.open()
        for connection in trickle.connections:
            assert connection.closed - connection.opened == pytest.approx(header_timeout, abs=0.3), connection.how
    print(f"\n24 pushes through nginx during the trickle: max {max(timings):.3f} s, mean {sum(timings) / 24:.3f} s")


def test_every_push_through_nginx_is_echoed(fronted):
    _served, front = fronted
    answer, took = post_push(front.base_url, "前面是 nginx")
    assert_echoed(answer, "前面是 nginx")
    assert took < 1.0


def test_the_app_reads_the_callers_address_from_the_hop_nginx_appends(fronted):
    """WECHAT_ALLOWED_IPS=127.0.0.1, WECHAT_TRUSTED_PROXIES=1: a forged X-Forwarded-For changes nothing."""
    _served, front = fronted
    for forged in ("192.0.2.10", "192.0.2.10, 198.51.100.7"):
        answer = requests.post(
            f"{front.base_url}/wechat?{urlencode(signed_query(TOKEN))}",
            data=text_push("forged"),
            headers={"X-Forwarded-For": forged},
            timeout=5,
        )
        assert_echoed(answer, "forged")  # the caller is 127.0.0.1, the address nginx saw


def test_metrics_and_healthz_through_nginx_are_open_to_loopback(fronted):
    _served, front = fronted
    health = requests.get(f"{front.base_url}/healthz", timeout=5)
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    metrics = requests.get(f"{front.base_url}/metrics", timeout=5)
    assert metrics.status_code == 200
    assert "# TYPE" in metrics.text


def test_bodies_up_to_the_apps_limit_reach_the_app_and_larger_ones_stop_at_nginx(fronted):
    _served, front = fronted
    url = f"{front.base_url}/wechat?{urlencode(signed_query(TOKEN))}"
    just_over = requests.post(url, data=b"x" * (262144 + 1), timeout=5)
    assert just_over.status_code == 413
    assert just_over.text.startswith("body exceeds WECHAT_MAX_BODY_BYTES")  # the app's answer, not nginx's
    far_over = requests.post(url, data=b"x" * (300 * 1024), timeout=5)
    assert far_over.status_code == 413
    assert "nginx" in far_over.text


# --- the same trickle straight at gunicorn ------------------------------------------------------


def test_straight_at_gunicorn_threads_plus_one_trickling_connections_hold_up_a_push(tmp_path):
    """Why nginx is in front: gthread gives a connection a thread at its first byte, until its header is whole.

    With one worker of 4 threads, 5 slow connections take every thread (the
    fifth waits in the queue): a push waits behind them, and is answered only
    when they go away.  (With several workers, which worker accepts a connection
    is up to the kernel, so how many it takes varies: see the module's script.)
    """
    with serve(tmp_path, **SMALL_POOL) as served:
        trickle = Trickle(served.port, count=int(SMALL_POOL["GUNICORN_THREADS"]) + 1).start()
        try:
            trickle.wait_until_sent(2, timeout=3)
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                push = pool.submit(post_push, served.base_url, "held up", 10)
                with pytest.raises(concurrent.futures.TimeoutError):
                    push.result(timeout=1.0)
                assert len(trickle.open()) == trickle.count
                released = time.monotonic()
                trickle.stop()
                answer, _took = push.result(timeout=5)
                assert_echoed(answer, "held up")
                assert time.monotonic() - released < 1.0 + 0.3
        finally:
            trickle.stop()


# --- the README's numbers -----------------------------------------------------------------------


def measure(workers: int, threads: int | None, counts: list[int], trials: int) -> None:
    """For each count of slow connections straight at gunicorn, in how many trials a push took over 1 s."""
    pool = {"GUNICORN_WORKERS": str(workers)} | ({"GUNICORN_THREADS": str(threads)} if threads else {})
    with tempfile.TemporaryDirectory() as folder, serve(Path(folder), **pool) as served:
        for count in counts:
            delayed = 0
            for _ in range(trials):
                with Trickle(served.port, count=count, lasting=5) as trickle:
                    trickle.wait_until_sent(2, timeout=3)
                    try:
                        post_push(served.base_url, "measured", timeout=1.0)
                    except requests.Timeout:
                        delayed += 1
                time.sleep(0.3)  # the threads see the connections close
            print(f"{pool} {count:4d} slow connections: a push took over 1 s in {delayed}/{trials}", flush=True)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Slow connections straight at gunicorn (gunicorn.conf.py).")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, help="default: gunicorn.conf.py's")
    parser.add_argument("--counts", default="4,8,16,32,64,128,256", help="comma-separated")
    parser.add_argument("--trials", type=int, default=10)
    options = parser.parse_args()
    measure(options.workers, options.threads, [int(n) for n in options.counts.split(",")], options.trials)
