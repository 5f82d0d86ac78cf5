"""/metrics after a known sequence of pushes, read with prometheus-client's own parser."""

from __future__ import annotations

import time

import pytest
import redis
import requests
from prometheus_client.parser import text_string_to_metric_families

from app.jobs import Job
from app.testing import PushClient, build_push, event_push, signed_query, text_push
from app.testing.fakeapi import FakeWeChatAPI
from tests.api_fixtures import make_app as make_api_app
from tests.conftest import TOKEN, make_app, make_app_at
from tests.servers import serve

OPENID = "oAbCdEfGhIjKlMnOpQrStUvWxYz0"  # 28 characters, as WeChat's


def scrape(app) -> str:
    response = app.test_client().get("/metrics")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the sample ``name`` with exactly ``labels``, or None when there is none."""
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return found.value
    return None


def post_unsigned(app) -> None:
    assert app.test_client().post("/wechat", data=text_push("x")).status_code == 400


def post_forged(app) -> None:
    query = signed_query(TOKEN)
    query["signature"] = "0" * 40
    response = app.test_client().post("/wechat?" + "&".join(f"{k}={v}" for k, v in query.items()), data=b"<xml/>")
    assert response.status_code == 403


def test_pushes_by_type_and_outcome_repeats_and_refusals(app):
    client = PushClient(app)
    first = text_push("hello", from_user=OPENID)
    assert client.post(first).content == "hello"
    assert client.post(text_push("again", from_user=OPENID)).content == "again"
    assert client.post(first).content == "hello"  # WeChat's repeat: answered from the first run
    assert client.post(event_push("subscribe", from_user=OPENID)).msg_type == "text"
    assert client.post(event_push("CLICK", {"EventKey": "menu"}, from_user=OPENID)).success
    assert client.post(event_push("SOMETHING_NEW", from_user=OPENID)).success
    assert client.post(build_push("hologram", {"MsgId": 77}, from_user=OPENID)).success  # a type WeChat may add
    post_unsigned(app)
    post_forged(app)

    text = scrape(app)
    assert sample(text, "wechat_pushes_total", type="text", outcome="reply") == 3
    assert sample(text, "wechat_pushes_total", type="event:subscribe", outcome="reply") == 1
    assert sample(text, "wechat_pushes_total", type="event:click", outcome="success") == 1
    assert sample(text, "wechat_pushes_total", type="event:other", outcome="success") == 1
    assert sample(text, "wechat_pushes_total", type="other", outcome="success") == 1
    assert sample(text, "wechat_dedup_hits_total") == 1
    assert sample(text, "wechat_push_duration_seconds_count") == 7
    assert 0 < sample(text, "wechat_push_duration_seconds_sum") < 7 * 4.5
    assert sample(text, "wechat_push_duration_seconds_bucket", le="+Inf") == 7
    assert sample(text, "wechat_handler_duration_seconds_count") == 6  # the repeat ran nothing
    assert sample(text, "wechat_refusals_total", status="400", reason="query") == 1
    assert sample(text, "wechat_refusals_total", status="403", reason="signature") == 1
    assert sample(text, "wechat_handler_failures_total") == 0
    assert sample(text, "wechat_internal_errors_total") == 0
    assert sample(text, "wechat_access_token_expires_in_seconds") == 0  # no token cached


def test_refusals_are_labelled_by_the_check_that_refused_them(tmp_path):
    app = make_app(tmp_path, WECHAT_MESSAGE_MODE="safe", WECHAT_MAX_BODY_BYTES="64")
    client = app.test_client()
    query = "&".join(f"{k}={v}" for k, v in signed_query(TOKEN).items())
    assert client.post(f"/wechat?{query}", data=text_push("x")).status_code == 403  # plaintext in safe mode
    stale = "&".join(f"{k}={v}" for k, v in signed_query(TOKEN, timestamp=int(time.time()) - 3600).items())
    assert client.post(f"/wechat?{stale}", data=text_push("x")).status_code == 403
    aes = f"{query}&encrypt_type=aes&msg_signature={'0' * 40}"
    assert client.post(f"/wechat?{aes}", data=b"<xml><Encrypt>x</Encrypt></xml>" * 4).status_code == 413
    assert client.put(f"/wechat?{query}").status_code == 405

    text = scrape(app)
    assert sample(text, "wechat_refusals_total", status="403", reason="mode") == 1
    assert sample(text, "wechat_refusals_total", status="403", reason="timestamp") == 1
    assert sample(text, "wechat_refusals_total", status="413", reason="size") == 1
    assert sample(text, "wechat_refusals_total", status="405", reason="method") == 1


def test_api_calls_by_endpoint_and_errcode_and_token_refreshes(tmp_path, fake):
    app = make_api_app(tmp_path, fake)
    client = app.extensions["wechat"].client
    client.send_text(OPENID, "one")
    client.send_text(OPENID, "two")
    fake.fail("/cgi-bin/message/custom/send", 45015)
    with pytest.raises(Exception, match="45015"):
        client.send_text(OPENID, "outside the 48 hours")
    fake.fail("/cgi-bin/message/custom/send", -1)  # system busy: retried, then sent
    client.send_text(OPENID, "busy, then sent")

    text = scrape(app)
    assert sample(text, "wechat_api_calls_total", endpoint="stable_token", errcode="0") == 1
    assert sample(text, "wechat_api_calls_total", endpoint="message/custom/send", errcode="0") == 3
    assert sample(text, "wechat_api_calls_total", endpoint="message/custom/send", errcode="45015") == 1
    assert sample(text, "wechat_api_calls_total", endpoint="message/custom/send", errcode="-1") == 1
    assert sample(text, "wechat_token_refreshes_total", outcome="fetched") == 1
    assert sample(text, "wechat_token_refreshes_total", outcome="failed") == 0
    assert 7000 < sample(text, "wechat_access_token_expires_in_seconds") <= 7200


def test_a_failed_token_fetch_and_an_unreachable_api_are_counted(tmp_path, fake):
    app = make_api_app(tmp_path, fake, WECHAT_APP_SECRET="wrong")
    with pytest.raises(Exception, match="40125|40001|secret"):
        app.extensions["wechat"].client.send_text(OPENID, "x")
    with FakeWeChatAPI() as gone:
        base_url = gone.base_url
    unreachable = make_api_app(tmp_path / "b", fake, WECHAT_API_BASE_URL=base_url)
    with pytest.raises(Exception, match="connection failed"):
        unreachable.extensions["wechat"].client.send_text(OPENID, "x")

    text = scrape(app)
    assert sample(text, "wechat_token_refreshes_total", outcome="failed") == 1
    assert sample(text, "wechat_token_refreshes_total", outcome="fetched") == 0
    errcodes = {
        s.labels["errcode"]
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "wechat_api_calls_total" and s.labels["endpoint"] == "stable_token"
    }
    assert errcodes and "0" not in errcodes
    other = scrape(unreachable)
    assert sample(other, "wechat_api_calls_total", endpoint="stable_token", errcode="transport") >= 1
    assert sample(other, "wechat_api_calls_total", endpoint="message/custom/send", errcode="transport") is None


def test_a_late_reply_in_customer_service_mode(tmp_path, fake):
    app = make_api_app(
        tmp_path,
        fake,
        WECHAT_PLUGINS="tests.plugins.slow",
        WECHAT_LATE_REPLY="customer_service",
        WECHAT_REPLY_DEADLINE="0.5",
    )
    answer = PushClient(app).post(text_push("sleep 1 done", from_user=OPENID))
    assert answer.success  # by the deadline; the reply goes through the API
    # The call is counted once the client has WeChat's answer, a moment after the fake API logs the request.
    deadline = time.monotonic() + 10
    text = scrape(app)
    while time.monotonic() < deadline and not sample(
        text, "wechat_api_calls_total", endpoint="message/custom/send", errcode="0"
    ):
        time.sleep(0.05)
        text = scrape(app)
    assert fake.requests_to("/cgi-bin/message/custom/send")
    assert sample(text, "wechat_late_replies_total", mode="customer_service", outcome="deferred") == 1
    assert sample(text, "wechat_pushes_total", type="text", outcome="success") == 1
    assert sample(text, "wechat_api_calls_total", endpoint="message/custom/send", errcode="0") == 1
    assert sample(text, "wechat_handler_duration_seconds_bucket", le="0.5") == 0
    assert sample(text, "wechat_handler_duration_seconds_bucket", le="5.0") == 1


def test_a_scrape_reads_one_key_from_the_store_however_many_jobs_it_holds(tmp_path, empty_redis):
    app = make_app_at(str(tmp_path / "unused.sqlite3"), WECHAT_STORE_URL=empty_redis)
    store = app.extensions["wechat"].store
    for n in range(3000):
        store.save_job(Job(msg_id=str(n), kind="mass", target="all"))
    server = redis.Redis.from_url(empty_redis)
    server.config_resetstat()
    started = time.monotonic()
    scrape(app)
    took = time.monotonic() - started
    commands = {name: stats["calls"] for name, stats in server.info("commandstats").items()}
    commands.pop("cmdstat_info", None)
    commands.pop("cmdstat_config|resetstat", None)
    assert commands == {"cmdstat_get": 1}, "the access token's expiry, nothing else"
    assert took < 1.0


def test_metrics_add_up_over_two_gunicorn_workers(tmp_path):
    pushes = 12
    with serve(tmp_path, GUNICORN_WORKERS="2") as served:
        url = f"{served.base_url}/wechat"
        for n in range(pushes):
            query = signed_query(TOKEN)
            body = text_push(f"hi {n}", from_user=OPENID)
            answer = requests.post(url, params=query, data=body, headers={"Connection": "close"}, timeout=10)
            assert answer.status_code == 200 and f"hi {n}".encode() in answer.content
        repeat = text_push("once", from_user=OPENID)
        for _ in range(2):
            assert requests.post(url, params=signed_query(TOKEN), data=repeat, timeout=10).status_code == 200
        assert requests.post(url, data=b"<xml/>", timeout=10).status_code == 400
        for _ in range(4):  # whichever worker answers the scrape, it counts every worker's pushes
            text = requests.get(f"{served.base_url}/metrics", headers={"Connection": "close"}, timeout=10).text
            assert sample(text, "wechat_pushes_total", type="text", outcome="reply") == pushes + 2
            assert sample(text, "wechat_dedup_hits_total") == 1
            assert sample(text, "wechat_push_duration_seconds_count") == pushes + 2
            assert sample(text, "wechat_handler_duration_seconds_count") == pushes + 1
            assert sample(text, "wechat_refusals_total", status="400", reason="query") == 1
