"""``python -m app.testing.fakeapi``: the fake WeChat API run on its own, as a plugin author runs it."""

from __future__ import annotations

import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from app.testing.fakeapi import FakeWeChatAPI

ROOT = Path(__file__).resolve().parent.parent


def first_line(process: subprocess.Popen, timeout: float = 15.0) -> str:
    """The first line the process prints, waiting at most ``timeout`` seconds for it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.1)
        if ready:
            return process.stdout.readline().strip()
        if process.poll() is not None:
            raise AssertionError(f"exited with {process.returncode} before printing: {process.stderr.read()}")
    raise AssertionError(f"printed nothing in {timeout} seconds")


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_the_command_serves_tokens_on_the_url_it_prints_until_stopped(stop):
    defaults = FakeWeChatAPI()  # not started: only its default appid and secret
    process = subprocess.Popen(
        [sys.executable, "-m", "app.testing.fakeapi", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base_url = first_line(process)
        assert base_url.startswith("http://127.0.0.1:")

        answer = requests.get(
            f"{base_url}/cgi-bin/token",
            params={"grant_type": "client_credential", "appid": defaults.app_id, "secret": defaults.app_secret},
            timeout=5,
        )
        assert answer.status_code == 200
        assert answer.json()["expires_in"] == 7200
        assert answer.json()["access_token"]

        process.send_signal(stop)
        assert process.wait(timeout=10) == 0
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{base_url}/cgi-bin/token", timeout=2)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()
