"""A finish event completes the send job in the store of the app that received it, and in no other."""

from __future__ import annotations

from app import jobs
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
