"""A process that exits normally (a CLI command, a script using the test kit) lets its handler pool finish first;
one that is done with an app stops the app's background work."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

from app import get_state
from app.testing import PushClient, text_push
from tests.test_metrics import sample, scrape


def test_work_handed_to_the_pool_finishes_before_a_normal_exit(tmp_path):
    marker = tmp_path / "done"
    script = textwrap.dedent(
        f"""
        import time
        from app.runs import Pool

        def slow():
            time.sleep(0.5)
            open({str(marker)!r}, "w").write("done")

        Pool(4, "test").submit(slow)
        """
    )
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", script], check=True, timeout=30)
    assert marker.read_text() == "done", "the call was cut off at exit"
    assert time.monotonic() - started >= 0.5


def test_a_hung_call_holds_the_exit_no_longer_than_the_bound(tmp_path):
    script = textwrap.dedent(
        """
        import threading
        import app.runs as runs
        runs.EXIT_WAIT = 0.5
        runs.Pool(1, "test").submit(threading.Event().wait)  # never returns
        """
    )
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    assert time.monotonic() - started < 0.5 + 5  # the bound, plus the interpreter's start and stop
    assert "work still running in the handler pool" in result.stderr


def expired_holds_counted(app) -> float:
    return sample(scrape(app), "wechat_held_replies_total", outcome="expired") or 0.0


def lease_thread_takes_an_expired_hold(app, push: str, within: float) -> bool:
    """Whether the app's lease thread, looking every second, takes a hold that expires at once."""
    before = expired_holds_counted(app)
    get_state(app).store.hold_reply("o_fan", b"<xml>late</xml>", 0.05, push=push)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        time.sleep(0.1)
        if expired_holds_counted(app) > before:
            return True
    return False


def test_a_stopped_app_leaves_its_store_alone_until_its_next_push(app):
    """Runner.stop (what a test does when done with an app): the lease thread, which every second
    sweeps, renews and takes expired holds, ends; the next push starts it again, same owner."""
    client, state = PushClient(app), get_state(app)
    assert client.post(text_push("starts the background work")).content == "starts the background work"
    owner = state.pipeline.runner.owner_id()
    assert lease_thread_takes_an_expired_hold(app, "msg:1", within=5.0), "a running app takes an expired hold"

    state.pipeline.runner.stop()
    assert not lease_thread_takes_an_expired_hold(app, "msg:2", within=2.5), "a stopped app took it"

    assert client.post(text_push("starts it again")).content == "starts it again"
    assert state.pipeline.runner.owner_id() == owner
    assert lease_thread_takes_an_expired_hold(app, "msg:3", within=5.0), "the next push did not start it again"
