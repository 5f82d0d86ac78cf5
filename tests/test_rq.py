"""WECHAT_TASK_QUEUE=rq: the work after an answer runs in a real ``rq worker``, not in gunicorn.

gunicorn (2 workers) and the RQ worker share a real Redis on loopback; WeChat's
API is the fake one.  The handler itself still runs in gunicorn.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from rq.registry import FinishedJobRegistry

from app.testing import text_push
from app.testing.fakeapi import FakeWeChatAPI
from tests.conftest import TOKEN
from tests.servers import ROOT, serve, start_redis
from tests.wechat import WeChat

TOLERANCE = 0.3


def wait_for(condition, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def queued(tmp_path):
    redis_process, redis_url = start_redis(tmp_path)
    fake = FakeWeChatAPI().start()
    settings = {
        "WECHAT_TOKEN": TOKEN,
        "WECHAT_APP_ID": fake.app_id,
        "WECHAT_APP_SECRET": fake.app_secret,
        "WECHAT_API_BASE_URL": fake.base_url,
        "WECHAT_STORE_URL": redis_url,
        "WECHAT_TASK_QUEUE": "rq",
        "WECHAT_LATE_REPLY": "customer_service",
        "WECHAT_PLUGINS": "tests.plugins.slow",
        "SLOW_PLUGIN_RUNS": str(tmp_path / "runs.txt"),
        "SLOW_PLUGIN_HANDOFFS": str(tmp_path / "handoffs.txt"),
    }
    env = {key: value for key, value in os.environ.items() if not key.startswith(("WECHAT_", "GUNICORN_"))}
    worker = subprocess.Popen(
        [str(Path(sys.executable).with_name("rq")), "worker", "--url", redis_url, "--path", str(ROOT), "wechat"],
        cwd=tmp_path,
        env={**env, **settings},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        with serve(tmp_path, **settings) as server:
            server.fake, server.worker, server.redis_url, server.tmp = fake, worker, redis_url, tmp_path
            server.settings = settings
            yield server
    finally:
        worker.terminate()
        worker.wait(timeout=15)
        fake.stop()
        redis_process.kill()
        redis_process.wait()


def test_late_sends_hand_offs_and_long_texts_run_in_the_rq_worker(queued):
    fake, wechat = queued.fake, WeChat(queued.base_url)

    handed = wechat.push(text_push("handoff the moon", from_user="o_rq"))
    assert handed.answer.content == "working on it"
    wait_for(lambda: fake.requests_to("message/custom/send"), 20)
    assert fake.requests_to("message/custom/send")[0].json["text"] == {"content": "looked up: the moon"}
    [(pid, parent)] = [
        tuple(int(number) for number in line.split(" ")[:2])
        for line in (queued.tmp / "handoffs.txt").read_text().splitlines()
    ]
    handler_pids = {int(line.split(" ")[0]) for line in (queued.tmp / "runs.txt").read_text().splitlines()}
    assert pid not in handler_pids, "the hand-off did not run in a gunicorn worker"
    assert queued.worker.pid in (pid, parent), "it ran in the rq worker (or the work horse it forked)"

    started = time.monotonic()
    late = wechat.push(text_push("sleep 6 sent by the queue", from_user="o_rq"))
    assert late.answer.body == b"success"
    wait_for(lambda: len(fake.requests_to("message/custom/send")) == 2, 15)
    assert fake.requests_to("message/custom/send")[1].json["text"] == {"content": "sent by the queue"}
    assert time.monotonic() - started < 6 + 3  # the queue's worker picks it up at once

    wechat.push(text_push("long 300", from_user="o_rq"))
    wait_for(lambda: len(fake.requests_to("message/custom/send")) == 6, 15)

    finished = FinishedJobRegistry("wechat", connection=redis.Redis.from_url(queued.redis_url))
    wait_for(lambda: finished.count >= 3, 5)
    time.sleep(0.5)
    assert finished.count == 3, "three tasks, all through the queue"
