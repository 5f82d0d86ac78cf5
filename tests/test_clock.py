"""WeChat's clock, against real gunicorn workers: every push answered in time, whatever is slow.

WeChat is played by :mod:`tests.wechat`: three deliveries of a push, 5 s each,
fresh timestamp and nonce each time.  The plugin ``tests.plugins.slow`` sleeps as
long as the message asks and writes a line per run, so the tests count runs
across worker processes.  Deadlines are asserted with 0.3 s of tolerance.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import requests

from app.testing import text_push
from app.testing.fakeapi import FakeWeChatAPI
from tests.servers import serve, start_redis, write_lock
from tests.wechat import WeChat

TOLERANCE = 0.3
DEADLINE = 4.5
HINT = "still working on it"


def runs(path: Path) -> list[tuple[int, str]]:
    """``(pid, text)`` of every run of the slow plugin so far."""
    if not path.exists():
        return []
    return [(int(pid), text) for pid, _, text in (line.split(" ", 2) for line in path.read_text().splitlines())]


def wait_for(condition, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def near(value: float | None, expected: float) -> bool:
    return value is not None and expected - 0.05 <= value <= expected + TOLERANCE


@contextlib.contextmanager
def served(tmp_path: Path, store: str = "sqlite", **env: str):
    runs_file = tmp_path / "runs.txt"
    redis_process = None
    if store == "redis":
        redis_process, env["WECHAT_STORE_URL"] = start_redis(tmp_path)
    try:
        with serve(
            tmp_path,
            WECHAT_PLUGINS="tests.plugins.slow",
            WECHAT_LATE_REPLY_HINT=HINT,
            SLOW_PLUGIN_RUNS=str(runs_file),
            GUNICORN_WORKERS="2",
            **env,
        ) as server:
            server.runs_file = runs_file
            server.redis = redis_process
            yield server
    finally:
        if redis_process is not None:
            redis_process.kill()
            redis_process.wait()


def customer_service(fake: FakeWeChatAPI) -> dict[str, str]:
    """Settings that send late replies through ``fake``."""
    return {
        "WECHAT_LATE_REPLY": "customer_service",
        "WECHAT_API_BASE_URL": fake.base_url,
        "WECHAT_APP_ID": fake.app_id,
        "WECHAT_APP_SECRET": fake.app_secret,
    }


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_a_7s_handlers_reply_is_carried_by_the_second_delivery(tmp_path, store):
    with served(tmp_path, store) as server:
        push = WeChat(server.base_url).push(text_push("sleep 7 late, but here"))
        first, second = push.deliveries
        assert first.failure == "timeout"
        assert near(second.sent_at, 5.0)
        assert near(second.answered_at, 7.0)
        assert second.content == "late, but here"
        assert len(runs(server.runs_file)) == 1


def test_a_16s_handler_hints_on_the_third_delivery_and_its_reply_answers_the_next_message(tmp_path):
    with served(tmp_path) as server:
        wechat = WeChat(server.base_url)
        push = wechat.push(text_push("sleep 16 the long answer", from_user="o_patient"))
        first, second, third = push.deliveries
        assert (first.failure, second.failure) == ("timeout", "timeout")
        assert near(third.sent_at, 10.0)
        assert near(third.answered_at, third.sent_at + DEADLINE)
        assert third.content == HINT
        time.sleep(max(0.0, 16.5 - third.answered_at))  # the run ends 16 s after the first delivery

        taken = wechat.push(text_push("is it ready?", from_user="o_patient"))
        assert taken.answer.content == "the long answer"
        assert taken.answer.answered_at < 1.0
        assert [text for _, text in runs(server.runs_file)] == ["sleep 16 the long answer"], (
            "its own handlers did not run"
        )

        after = wechat.push(text_push("thanks", from_user="o_patient"))
        assert after.answer.content == "echo: thanks"
        assert len(runs(server.runs_file)) == 2


def test_customer_service_mode_answers_success_by_the_deadline_then_sends(tmp_path):
    with (
        FakeWeChatAPI() as fake,
        served(tmp_path, **customer_service(fake)) as server,
    ):
        started = time.monotonic()
        push = WeChat(server.base_url).push(text_push("sleep 7 sent through the API", from_user="o_busy"))
        [delivery] = push.deliveries
        assert near(delivery.answered_at, DEADLINE)
        assert delivery.body == b"success"
        wait_for(lambda: fake.requests_to("message/custom/send"), 10)
        sent_at = time.monotonic() - started
        assert near(sent_at, 7.0)
        [typing] = fake.requests_to("message/custom/typing")
        assert typing.json == {"touser": "o_busy", "command": "Typing"}
        [sent] = fake.requests_to("message/custom/send")
        assert sent.json["touser"] == "o_busy"
        assert sent.json["text"] == {"content": "sent through the API"}
        assert fake.requests.index(typing) < fake.requests.index(sent)
        assert len(runs(server.runs_file)) == 1


def kill_the_runner_when_it_starts(runs_file: Path, after: float = 0.0):
    """A thread that SIGKILLs the worker running the handler, ``after`` seconds after the run began."""

    def kill() -> None:
        wait_for(lambda: runs(runs_file), 5)
        time.sleep(after)
        os.kill(runs(runs_file)[0][0], signal.SIGKILL)

    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_a_worker_killed_mid_handler_gets_its_push_run_again_once(tmp_path, store):
    with served(tmp_path, store) as server:
        killer = kill_the_runner_when_it_starts(server.runs_file)
        push = WeChat(server.base_url).push(text_push("sleep 3 survived"))
        killer.join(5)
        assert push.deliveries[0].failure == "dropped"
        assert push.answer is not None and push.answer.content == "survived"
        pids = [pid for pid, _ in runs(server.runs_file)]
        assert len(pids) == 2, "exactly one re-run"
        assert pids[0] != pids[1]


def test_customer_service_mode_reruns_a_run_killed_after_success(tmp_path):
    """No delivery comes after the success: the server itself re-runs the push, within 15 s."""
    with (
        FakeWeChatAPI() as fake,
        served(tmp_path, **customer_service(fake)) as server,
    ):
        started = time.monotonic()
        killer = kill_the_runner_when_it_starts(server.runs_file, after=5.0)
        push = WeChat(server.base_url).push(text_push("sleep 6 done at last", from_user="o_busy"))
        assert push.deliveries[0].body == b"success"
        killer.join(10)
        wait_for(lambda: len(runs(server.runs_file)) == 2, 15 - (time.monotonic() - started))
        wait_for(lambda: fake.requests_to("message/custom/send"), 10)
        [sent] = fake.requests_to("message/custom/send")
        assert sent.json["text"] == {"content": "done at last"}
        time.sleep(1.5)
        assert len(runs(server.runs_file)) == 2, "exactly one re-run"
        assert len(fake.requests_to("message/custom/send")) == 1


def test_a_stopped_redis_costs_no_delivery_its_deadline(tmp_path):
    with served(tmp_path, "redis") as server:
        wechat = WeChat(server.base_url)
        server.redis.send_signal(signal.SIGSTOP)
        try:
            fast = wechat.push(text_push("store is hung"))
            slow = wechat.push(text_push("sleep 6 too slow"))
        finally:
            server.redis.send_signal(signal.SIGCONT)
        assert fast.answer.content == "echo: store is hung"
        assert fast.answer.answered_at < DEADLINE + TOLERANCE
        [delivery] = slow.deliveries  # no holding while the store is skipped: success by the deadline
        assert delivery.body == b"success"
        assert near(delivery.answered_at, DEADLINE)


def test_a_held_sqlite_write_lock_costs_no_delivery_its_deadline(tmp_path):
    with served(tmp_path) as server:
        wechat = WeChat(server.base_url)
        with write_lock(tmp_path / "served.sqlite3"):
            pushes = [wechat.push(text_push(f"locked out {n}")) for n in range(3)]
        for n, push in enumerate(pushes):
            assert push.answer.content == f"echo: locked out {n}"
            assert push.answer.answered_at < DEADLINE + TOLERANCE


def test_fifty_held_slow_pushes_do_not_delay_a_fast_one(tmp_path):
    """The shipped gunicorn.conf.py: a held delivery costs a waiting thread, and there are enough."""
    with serve(tmp_path, WECHAT_PLUGINS="tests.plugins.slow", WECHAT_MESSAGE_MODE="compatible") as server:
        wechat = WeChat(server.base_url)
        slow = [
            threading.Thread(target=wechat.push, args=(text_push(f"sleep 8 slow {n}"), 1), daemon=True)
            for n in range(50)
        ]
        for thread in slow:
            thread.start()
        time.sleep(1.0)  # all fifty are held now
        started = time.monotonic()
        fast = wechat.push(text_push("quick"))
        assert fast.answer.content == "echo: quick"
        assert time.monotonic() - started < 1.0
        for thread in slow:
            thread.join(10)
        assert requests.get(f"{server.base_url}/healthz", timeout=5).status_code == 200


def test_sigterm_lets_a_held_delivery_go_at_once_and_the_run_finishes(tmp_path):
    """The stopping worker drops the delivery (WeChat delivers again, to a live worker) and drains its run."""
    with served(tmp_path) as server:
        stopped_at = []

        def stop_the_worker() -> None:
            wait_for(lambda: runs(server.runs_file), 5)
            time.sleep(1.0)
            stopped_at.append(time.monotonic())
            os.kill(runs(server.runs_file)[0][0], signal.SIGTERM)

        stopper = threading.Thread(target=stop_the_worker, daemon=True)
        started = time.monotonic()
        stopper.start()
        push = WeChat(server.base_url).push(text_push("sleep 4 drained"))
        stopper.join(5)
        first, second = push.deliveries
        assert first.failure == "dropped"
        assert second.sent_at < stopped_at[0] - started + 0.5, "let go at once, not after 5.5 s"
        assert near(second.answered_at, 4.0)
        assert second.content == "drained"
        assert len(runs(server.runs_file)) == 1


def test_a_run_still_going_at_shutdown_is_journalled_unfinished_not_dropped(tmp_path):
    """The graceful timeout (3 s here) ends before the handler (6 s): the journal says so."""
    import sqlite3

    with served(tmp_path, GUNICORN_GRACEFUL_TIMEOUT="3") as server:
        wechat = WeChat(server.base_url)
        pusher = threading.Thread(target=wechat.push, args=(text_push("sleep 6 cut short"), 1), daemon=True)
        pusher.start()
        wait_for(lambda: runs(server.runs_file), 5)
        pid = runs(server.runs_file)[0][0]
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text(), 5)
        pusher.join(10)
        with sqlite3.connect(tmp_path / "served.sqlite3") as db:
            [(status,)] = db.execute("SELECT status FROM pushes").fetchall()
        assert status == "unfinished"
