"""Send jobs: the client reports each accepted send to its hook, and a finish event
completes the job in the store of the app that received it, and in no other."""

from __future__ import annotations

import logging

import pytest

from app import jobs
from app.client import WeChatClient
from app.settings import Settings
from app.store.sqlite import SQLiteStore
from app.testing import PushClient, event_push
from tests.conftest import make_app


def test_a_finish_event_updates_the_job_only_in_its_own_apps_store(tmp_path):
    receiving, other = make_app(tmp_path / "a"), make_app(tmp_path / "b")
    stores = [app.extensions["wechat"].store for app in (receiving, other)]
    for store in stores:
        store.save_job(jobs.Job(msg_id="1001", kind=jobs.MASS, target="tag:2"))

    finish = event_push("MASSSENDJOBFINISH", {"MsgID": 1001, "Status": "send success", "SentCount": 5})
    assert PushClient(receiving).post(finish).body == b"success"

    done, untouched = (store.get_job(jobs.MASS, "1001") for store in stores)
    assert (done.status, done.finish_status, done.counts, done.target) == (
        "succeeded",
        "send success",
        {"sent": 5},
        "tag:2",
    )
    assert (untouched.status, untouched.finish_status, untouched.counts) == ("submitted", None, {})


def test_a_template_finish_event_is_tracked_without_any_plugin(tmp_path):
    app = make_app(tmp_path, WECHAT_PLUGINS="")
    PushClient(app).post(event_push("TEMPLATESENDJOBFINISH", {"MsgID": 77, "Status": "failed:user block"}))
    job = app.extensions["wechat"].store.get_job(jobs.TEMPLATE, "77")
    assert (job.status, job.finish_status) == ("failed", "failed:user block")


@pytest.fixture
def settings(tmp_path, fake):
    return Settings(
        signing_token="t",
        app_id=fake.app_id,
        app_secret=fake.app_secret,
        api_base_url=fake.base_url,
        store_url=f"sqlite:///{tmp_path}/s.db",
        read_timeout=5.0,
    )


def test_the_client_hands_each_accepted_send_to_its_hook(tmp_path, settings):
    sent: list[jobs.Job] = []
    token_store = SQLiteStore(str(tmp_path / "s.db"))
    client = WeChatClient(settings, token_store, backoff=0.01, on_send=sent.append)

    client.send_text("o_alice", "not a job")
    msg_id = client.mass_send_to_tag("text", "hello", 2)
    msgid = client.send_template("o_alice", "TPL_1", {"first": {"value": "x"}})

    assert [(job.kind, job.msg_id, job.target, job.status) for job in sent] == [
        (jobs.MASS, str(msg_id), "tag:2", jobs.SUBMITTED),
        (jobs.TEMPLATE, str(msgid), "openid:o_alice", jobs.SUBMITTED),
    ]
    assert sent[0].detail == {"msgtype": "text", "content": "hello", "msg_data_id": msg_id * 10 + 1}  # the fake's
    assert sent[1].detail == {"template_id": "TPL_1"}
    assert token_store.list_jobs() == []  # the store is the client's for the token only


def test_a_failing_hook_is_logged_and_the_send_still_counts(tmp_path, settings, caplog):
    def broken(job: jobs.Job) -> None:
        raise OSError("disk full")

    client = WeChatClient(settings, SQLiteStore(str(tmp_path / "s.db")), backoff=0.01, on_send=broken)
    with caplog.at_level(logging.ERROR):
        msg_id = client.mass_send_to_tag("text", "hello", 2)

    assert msg_id
    assert any(f"could not record mass job {msg_id}" in r.getMessage() for r in caplog.records)


def test_the_apps_client_records_its_sends_in_the_apps_store(tmp_path, fake):
    from tests.api_fixtures import make_app as make_api_app

    app = make_api_app(tmp_path, fake)
    msg_id = app.extensions["wechat"].client.mass_send_to_all("text", "hello")
    assert app.extensions["wechat"].store.get_job(jobs.MASS, str(msg_id)).target == "all"


@pytest.mark.parametrize(
    ("status", "word"),
    [
        ("send success", "succeeded"),
        ("sendsuccess", "succeeded"),  # the Send Message API page's own example
        ("success", "succeeded"),
        ("send fail", "failed"),
        ("err(30003)", "failed"),
        ("failed:user block", "failed"),
    ],
)
def test_a_finish_status_is_one_of_three_words(status, word):
    from app.jobs import status_of

    assert status_of(status) == word
    assert status_of(None) == "submitted"


def test_a_store_from_before_withdrawals_keeps_its_jobs_and_can_mark_one(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE jobs (kind TEXT NOT NULL, msg_id TEXT NOT NULL, target TEXT NOT NULL DEFAULT '', "
        "created_at REAL NOT NULL, status TEXT NOT NULL, finish_status TEXT, counts TEXT NOT NULL DEFAULT '{}', "
        "detail TEXT NOT NULL DEFAULT '{}', finished_at REAL, PRIMARY KEY (kind, msg_id))"
    )
    old.execute(
        "INSERT INTO jobs VALUES ('mass', '1000000001', 'tag:2', 1700000000, 'succeeded', 'send success', "
        '\'{"sent": 3}\', \'{"msgtype": "text"}\', 1700000100)'
    )
    old.commit()
    old.close()

    store = SQLiteStore(str(path))
    job = store.get_job(jobs.MASS, "1000000001")
    assert (job.status, job.finish_status, job.counts, job.detail) == (
        "succeeded",
        "send success",
        {"sent": 3},
        {"msgtype": "text"},
    )
    assert job.deleted_at is None

    assert store.mark_job_deleted(jobs.MASS, "1000000001", 1700000200.0, 2) is True
    assert store.mark_job_deleted(jobs.MASS, "1000000002", 1700000200.0) is False
    job = store.get_job(jobs.MASS, "1000000001")
    assert (job.status, job.deleted_at, job.deleted_article) == ("succeeded", 1700000200.0, 2)
    assert SQLiteStore(str(path)).list_jobs() == [job]  # a second start-up finds the columns there
