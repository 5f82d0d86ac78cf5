"""A store that cannot write is seen by the operator: /healthz, /metrics, the log, start-up.

The faults are real: a full tmpfs, a read-only bind mount (root ignores file
modes), a write lock held by another process, a Redis server stopped with
SIGSTOP.  Mounting needs root, as CI has; elsewhere those tests are skipped.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from app import SettingsError
from app.testing import PushClient, text_push
from tests.conftest import make_app_at
from tests.servers import serve, start_redis, write_lock

TOLERANCE = 0.3


def mount(*args: str) -> None:
    result = subprocess.run(["mount", *args], capture_output=True, text=True)
    if result.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"mount {' '.join(args)} failed in CI: {result.stderr.strip()}")
        pytest.skip(f"cannot mount here: {result.stderr.strip()}")


@contextlib.contextmanager
def tmpfs(path: Path, size: str):
    path.mkdir()
    mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@contextlib.contextmanager
def bind_mount(source: Path, target: Path):
    target.mkdir()
    mount("--bind", str(source), str(target))
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


def read_only(target: Path, on: bool) -> None:
    mount("-o", f"remount,bind,{'ro' if on else 'rw'}", str(target))


def health(app) -> tuple[int, dict, float]:
    started = time.monotonic()
    response = app.test_client().get("/healthz")
    return response.status_code, response.get_json(), time.monotonic() - started


def metric(app, name: str) -> float:
    text = app.test_client().get("/metrics").get_data(as_text=True)
    return float(next(line for line in text.splitlines() if line.startswith(name + " ")).rsplit(" ", 1)[1])


FAILED_PROBES = 'wechat_store_failures_total{operation="check_writable"}'


def test_a_full_disk_turns_healthz_503_and_back(tmp_path):
    with tmpfs(tmp_path / "small", "4m") as disk:
        app = make_app_at(str(disk / "store.sqlite3"))
        assert health(app)[:2] == (200, {"status": "ok"})
        filler = disk / "filler"
        with open(filler, "wb") as out:
            with contextlib.suppress(OSError):
                while True:
                    out.write(b"\0" * 65536)
                    out.flush()
        status, body, _ = health(app)
        assert (status, body) == (503, {"status": "unavailable"})
        assert metric(app, FAILED_PROBES) == 1
        filler.unlink()
        assert health(app)[:2] == (200, {"status": "ok"})


def test_free_space_under_the_setting_is_503_before_the_disk_is_full(tmp_path):
    with tmpfs(tmp_path / "small", "8m") as disk:
        app = make_app_at(str(disk / "store.sqlite3"), WECHAT_HEALTH_MIN_FREE_BYTES=str(4 << 20))
        assert health(app)[0] == 200
        (disk / "filler").write_bytes(b"\0" * (5 << 20))
        assert health(app)[0] == 503
        (disk / "filler").unlink()
        assert health(app)[0] == 200


def test_a_read_only_store_turns_healthz_503_and_back(tmp_path):
    source = tmp_path / "data"
    source.mkdir()
    with bind_mount(source, tmp_path / "mounted") as mounted:
        app = make_app_at(str(mounted / "store.sqlite3"))
        assert health(app)[0] == 200
        read_only(mounted, True)
        try:
            assert health(app)[:2] == (503, {"status": "unavailable"})
        finally:
            read_only(mounted, False)
        assert health(app)[0] == 200


def test_start_up_refuses_a_read_only_store(tmp_path):
    source = tmp_path / "data"
    source.mkdir()
    with bind_mount(source, tmp_path / "mounted") as mounted:
        make_app_at(str(mounted / "store.sqlite3"))  # the file exists, and is fine
        read_only(mounted, True)
        try:
            with pytest.raises(SettingsError) as caught:
                make_app_at(str(mounted / "store.sqlite3"))
        finally:
            read_only(mounted, False)
    message = str(caught.value)
    assert message.startswith("WECHAT_STORE_URL")
    assert "cannot open" in message or "cannot take a write" in message
    assert "\n" not in message


def test_start_up_refuses_a_store_without_room(tmp_path):
    with tmpfs(tmp_path / "small", "4m") as disk:
        with pytest.raises(SettingsError) as caught:
            make_app_at(str(disk / "store.sqlite3"), WECHAT_HEALTH_MIN_FREE_BYTES=str(8 << 20))
    message = str(caught.value)
    assert message.startswith("WECHAT_STORE_URL")
    assert "cannot take a write" in message
    assert "less than 8388608" in message


def test_a_write_lock_held_past_the_budget_is_503_within_the_timeout(tmp_path):
    database = tmp_path / "store.sqlite3"
    app = make_app_at(str(database), WECHAT_HEALTH_TIMEOUT="0.5")
    assert health(app)[0] == 200
    with write_lock(database):
        status, body, took = health(app)
        assert (status, body) == (503, {"status": "unavailable"})
        assert took < 0.5 + TOLERANCE
    assert health(app)[0] == 200


def test_a_stopped_redis_is_503_within_the_timeout_and_back(tmp_path):
    process, url = start_redis(tmp_path)
    try:
        app = make_app_at(str(tmp_path / "unused.sqlite3"), WECHAT_STORE_URL=url, WECHAT_HEALTH_TIMEOUT="0.5")
        assert health(app)[0] == 200
        process.send_signal(signal.SIGSTOP)
        try:
            status, body, took = health(app)
            assert (status, body) == (503, {"status": "unavailable"})
            assert took < 0.5 + TOLERANCE
        finally:
            process.send_signal(signal.SIGCONT)
        assert health(app)[0] == 200
    finally:
        process.kill()
        process.wait()


def test_a_redis_outage_logs_a_line_per_kind_not_a_traceback_per_push(tmp_path, caplog):
    process, url = start_redis(tmp_path)
    app = make_app_at(str(tmp_path / "unused.sqlite3"), WECHAT_STORE_URL=url)
    process.kill()
    process.wait()
    client = PushClient(app)
    with caplog.at_level("INFO"):
        replies = [client.post(text_push(f"during the outage {n}")) for n in range(20)]
    assert [reply.content for reply in replies] == [f"during the outage {n}" for n in range(20)]
    store_lines = [r for r in caplog.records if "store failed" in r.getMessage()]
    operations = [line.getMessage().split(" (")[0] for line in store_lines]
    assert "store failed in claim_push" in operations
    assert len(operations) == len(set(operations)), "one line per kind of failure, not one per push"
    assert all(line.exc_info is None for line in store_lines)
    counts = app.test_client().get("/metrics").get_data(as_text=True)
    assert 'wechat_store_failures_total{operation="claim_push"} 1.0' in counts


def test_store_failures_are_counted_across_gunicorn_workers(tmp_path):
    """Counters in each worker's memory, added up by prometheus-client's multiprocess mode."""
    with serve(tmp_path, GUNICORN_WORKERS="2", WECHAT_HEALTH_TIMEOUT="0.2") as served:
        database = Path(f"{tmp_path}/served.sqlite3")
        with write_lock(database):
            statuses = [
                requests.get(f"{served.base_url}/healthz", headers={"Connection": "close"}, timeout=5).status_code
                for _ in range(8)
            ]
        assert statuses == [503] * 8
        for _ in range(4):  # whichever worker answers the scrape, it counts all eight
            text = requests.get(f"{served.base_url}/metrics", headers={"Connection": "close"}, timeout=5).text
            assert f"{FAILED_PROBES} 8.0" in text
