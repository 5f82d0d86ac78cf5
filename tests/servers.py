"""Real servers the tests start on loopback ports: Redis, and the app under gunicorn.

Where redis-server is not installed the Redis tests are skipped, except in CI
(``CI`` set), where a missing server is a failure: .ci/run installs it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.conftest import AES_KEY, APP_ID, TOKEN

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_redis(folder: Path):
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed; .ci/run should have installed it")
        pytest.skip("redis-server is not installed")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    process.kill()
    pytest.fail("redis-server did not start within 10 s")


@contextlib.contextmanager
def write_lock(database: Path) -> Iterator[None]:
    """Another process holds SQLite's write lock on ``database`` until the block ends."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys\n"
            f"c = sqlite3.connect({str(database)!r}, isolation_level=None)\n"
            "c.execute('BEGIN IMMEDIATE')\n"
            "print('locked', flush=True)\n"
            "sys.stdin.readline()\n"
            "c.execute('COMMIT')\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield
    finally:
        holder.stdin.write("\n")
        holder.stdin.flush()
        holder.wait(timeout=10)


@dataclass
class Served:
    base_url: str
    port: int
    process: subprocess.Popen


@contextlib.contextmanager
def serve(tmp_path: Path, **env_overrides: str) -> Iterator[Served]:
    """``gunicorn -c gunicorn.conf.py wsgi:app`` (the echo app) on a free loopback port."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WECHAT_", "GUNICORN_"))}
    env.update(
        WECHAT_TOKEN=TOKEN,
        WECHAT_APP_ID=APP_ID,
        WECHAT_ENCODING_AES_KEY=AES_KEY,
        WECHAT_PLUGINS="app.plugins.echo",
        WECHAT_STORE_URL=f"sqlite:///{tmp_path}/served.sqlite3",
        GUNICORN_BIND=f"127.0.0.1:{port}",
    )
    env.update(env_overrides)
    if env.get("WECHAT_ENCODING_AES_KEY"):
        env.setdefault("WECHAT_MESSAGE_MODE", "compatible")
    gunicorn = Path(sys.executable).with_name("gunicorn")
    process = subprocess.Popen(
        [str(gunicorn), "-c", "gunicorn.conf.py", "wsgi:app"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not start: {process.stderr.read().decode()[-2000:]}")
            time.sleep(0.1)
        yield Served(base_url, port, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
