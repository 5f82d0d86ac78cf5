"""What the callback answers (verification, signatures, safe mode, bad bodies, replies, repeated pushes),
through the app's real request path."""

from __future__ import annotations

import logging
import threading
import time
from urllib.parse import urlencode

import flask
import pytest
from lxml import etree

from app import crypto
from app.messages import parse
from app.signals import event_received, message_received
from app.testing import PushClient, build_push, encrypt_push, event_push, signed_query, text_push
from tests.conftest import APP_ID, TOKEN, make_app


def url(query: dict[str, str], path: str = "/wechat") -> str:
    return f"{path}?{urlencode(query)}"


@pytest.fixture
def http(app):
    return app.test_client()


class Counter:
    """A receiver that counts the pushes it saw."""

    def __init__(self) -> None:
        self.seen = []

    def __call__(self, sender, **kwargs):
        self.seen.append(sender)


# --- URL verification ---------------------------------------------------------


def test_verification_echoes_echostr_exactly(http):
    response = http.get(url(signed_query(TOKEN, echostr="5837397520665436492")))
    assert response.status_code == 200
    assert response.get_data() == b"5837397520665436492"


def test_verification_with_wrong_signature_is_forbidden(http):
    query = signed_query("another-token", echostr="123")
    response = http.get(url(query))
    assert response.status_code == 403
    assert b"123" not in response.get_data()


def test_the_callback_is_answered_in_front_of_flask_and_every_other_path_is_flasks(app, http):
    """As the README says: Flask's request hooks run for /healthz and /metrics, not for the callback."""
    seen = []
    app.before_request(lambda: seen.append(flask.request.path))
    assert http.get(url(signed_query(TOKEN, echostr="e"))).get_data() == b"e"
    assert http.head(url(signed_query(TOKEN, echostr="e"))).get_data() == b""
    assert http.get("/healthz").status_code == 200
    assert http.get("/wechat/").status_code == 404
    assert seen == ["/healthz", "/wechat/"]


def test_a_callback_path_outside_ascii_is_answered(tmp_path):
    client = make_app(tmp_path, WECHAT_CALLBACK_PATH="/回调").test_client()
    assert client.get(url(signed_query(TOKEN, echostr="e"), "/回调")).get_data() == b"e"


def test_callback_path_is_configurable(tmp_path):
    app = make_app(tmp_path, WECHAT_CALLBACK_PATH="/hooks/wx")
    client = app.test_client()
    assert client.get(url(signed_query(TOKEN, echostr="e"), "/hooks/wx")).get_data() == b"e"
    assert client.get(url(signed_query(TOKEN, echostr="e"))).status_code == 404


@pytest.mark.parametrize("missing", ["signature", "timestamp", "nonce"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_missing_query_field_is_a_bad_request(http, missing, method):
    query = signed_query(TOKEN, echostr="e")
    del query[missing]
    response = http.open(url(query), method=method, data=text_push("hi"))
    assert response.status_code == 400


@pytest.mark.parametrize("skew", [-301, 301, -86400, 10**6])
def test_timestamp_outside_tolerance_is_forbidden(app, skew):
    counter = Counter()
    with message_received.connected_to(counter):
        reply = PushClient(app).post(text_push("late"), timestamp=int(time.time()) + skew)
    assert reply.status == 403
    assert counter.seen == []


def test_timestamp_tolerance_is_a_setting(tmp_path):
    app = make_app(tmp_path, WECHAT_TIMESTAMP_TOLERANCE="5")
    assert PushClient(app).post(text_push("a"), timestamp=int(time.time()) - 30).status == 403
    assert PushClient(app).post(text_push("b"), timestamp=int(time.time()) - 2).status == 200


def test_wrong_signature_is_forbidden_and_runs_no_handler(app, http, caplog):
    counter = Counter()
    query = signed_query(TOKEN)
    query["signature"] = crypto.sign("not-the-token", query["timestamp"], query["nonce"])
    with message_received.connected_to(counter), caplog.at_level(logging.WARNING):
        response = http.post(url(query), data=text_push("hi"))
    assert response.status_code == 403
    assert counter.seen == []
    assert [r for r in caplog.records if "signature does not match" in r.getMessage()]


# --- safe mode ------------------------------------------------------------------


def _safe_post(app, xml: bytes, **tamper):
    state = app.extensions["wechat"]
    body, query = encrypt_push(xml, TOKEN, state.envelope, signed_query(TOKEN))
    query.update(tamper)
    query = {k: v for k, v in query.items() if v is not None}
    return app.test_client().post(url(query), data=body)


@pytest.mark.parametrize("msg_signature", [None, "0" * 40, "zz"])
def test_safe_mode_with_wrong_or_missing_msg_signature_is_forbidden(app, msg_signature):
    counter = Counter()
    with message_received.connected_to(counter):
        response = _safe_post(app, text_push("secret"), msg_signature=msg_signature)
    assert response.status_code == 403
    assert counter.seen == []


def test_safe_mode_push_for_another_appid_is_forbidden(app):
    other = crypto.AESEnvelope(app.extensions["wechat"].settings.encoding_aes_key, "wx_someone_else")
    body, query = encrypt_push(text_push("hi"), TOKEN, other, signed_query(TOKEN))
    counter = Counter()
    with message_received.connected_to(counter):
        response = app.test_client().post(url(query), data=body)
    assert response.status_code == 403
    assert counter.seen == []


def test_safe_mode_push_under_another_key_is_forbidden(app):
    other = crypto.AESEnvelope("Z" * 43, APP_ID)
    body, query = encrypt_push(text_push("hi"), TOKEN, other, signed_query(TOKEN))
    assert app.test_client().post(url(query), data=body).status_code == 403


def test_safe_mode_push_without_aes_key_configured_is_forbidden(tmp_path):
    app = make_app(tmp_path, WECHAT_ENCODING_AES_KEY=None)
    envelope = crypto.AESEnvelope("a" * 43, APP_ID)
    body, query = encrypt_push(text_push("hi"), TOKEN, envelope, signed_query(TOKEN))
    assert app.test_client().post(url(query), data=body).status_code == 403


def test_safe_mode_reply_is_an_encrypted_signed_envelope(app, safe):
    reply = safe.post(text_push("你好, safe mode 😀"))
    assert reply.status == 200
    envelope = etree.fromstring(reply.raw)
    assert [child.tag for child in envelope] == ["Encrypt", "MsgSignature", "TimeStamp", "Nonce"]
    assert b"safe mode" not in reply.raw
    # PushClient checked MsgSignature and decrypted; the inside is the echo.
    assert reply.content == "你好, safe mode 😀"


def test_safe_mode_replies_use_fresh_nonces_and_prefixes(safe):
    first = etree.fromstring(safe.post(text_push("same")).raw)
    second = etree.fromstring(safe.post(text_push("same")).raw)
    assert first.findtext("Nonce") != second.findtext("Nonce")
    assert first.findtext("Encrypt") != second.findtext("Encrypt")


def test_compatible_mode_handlers_see_the_decrypted_copy(app):
    """Compatible mode sends plaintext fields beside Encrypt; only the authenticated copy counts."""
    state = app.extensions["wechat"]
    genuine = text_push("the real text")
    encrypted = state.envelope.encrypt(genuine)
    query = signed_query(TOKEN)
    msg_signature = crypto.sign(TOKEN, query["timestamp"], query["nonce"], encrypted)
    forged_plaintext = build_push("text", {"Content": "forged text", "MsgId": 1})
    body = forged_plaintext.replace(b"</xml>", f"<Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>".encode())
    seen = []
    with message_received.connected_to(lambda sender, message, **kw: seen.append(message.content)):
        response = app.test_client().post(
            url({**query, "encrypt_type": "aes", "msg_signature": msg_signature}), data=body
        )
    assert response.status_code == 200
    assert seen == ["the real text"]
    inside = crypto.AESEnvelope(state.settings.encoding_aes_key, APP_ID).decrypt(
        etree.fromstring(response.get_data()).findtext("Encrypt")
    )
    assert etree.fromstring(inside).findtext("Content") == "the real text"


# --- bad bodies -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not xml at all",
        b"<xml><ToUserName>unclosed</xml>",
        b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "boom">]><xml><ToUserName>&a;</ToUserName></xml>',
        b'<!DOCTYPE xml SYSTEM "http://127.0.0.1:9/evil.dtd"><xml/>',
        b"<xml><FromUserName>u</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType></xml>",
        b"<xml><ToUserName>a</ToUserName><CreateTime>1</CreateTime><MsgType>text</MsgType></xml>",
        b"<xml><ToUserName>a</ToUserName><FromUserName>u</FromUserName><MsgType>text</MsgType></xml>",
        b"<xml><ToUserName>a</ToUserName><FromUserName>u</FromUserName><CreateTime>1</CreateTime></xml>",
        b"<xml><ToUserName>a</ToUserName><FromUserName>u</FromUserName><CreateTime>soon</CreateTime>"
        b"<MsgType>text</MsgType></xml>",
        "<xml><ToUserName>caf\u00e9</ToUserName></xml>".encode("latin-1"),
    ],
    ids=[
        "empty",
        "text",
        "malformed",
        "entity",
        "external-dtd",
        "no-to",
        "no-from",
        "no-time",
        "no-type",
        "bad-time",
        "latin-1",
    ],
)
def test_bad_body_is_a_bad_request_with_one_log_line(app, http, caplog, body):
    counter = Counter()
    with message_received.connected_to(counter), caplog.at_level(logging.WARNING, logger="app.pipeline"):
        response = http.post(url(signed_query(TOKEN)), data=body)
    assert response.status_code == 400
    assert counter.seen == []
    refusals = [r for r in caplog.records if r.name == "app.pipeline"]
    assert len(refusals) == 1
    assert "400" in refusals[0].getMessage()


def test_body_over_the_limit_is_refused_with_413(tmp_path):
    app = make_app(tmp_path, WECHAT_MAX_BODY_BYTES="2048")
    http = app.test_client()
    assert http.post(url(signed_query(TOKEN)), data=text_push("x" * 1500)).status_code == 200
    response = http.post(url(signed_query(TOKEN)), data=text_push("x" * 3000))
    assert response.status_code == 413


def test_control_characters_in_user_text_are_dropped_not_refused(plain):
    xml = text_push("bell\x07 and escape\x1b stay out")
    reply = plain.post(xml)
    assert reply.status == 200
    assert reply.content == "bell and escape stay out"


# --- replies ----------------------------------------------------------------------------


def test_no_handler_reply_answers_success(plain):
    reply = plain.post(event_push("CLICK", {"EventKey": "MENU_1"}))
    assert reply.status == 200
    assert reply.body == b"success"


def test_reply_swaps_users_and_carries_the_time_of_the_reply(plain):
    before = int(time.time())
    reply = plain.post(text_push("hi", to_user="gh_account", from_user="o_follower", create_time=1_400_000_000))
    after = int(time.time())
    assert reply.field("ToUserName") == "o_follower"
    assert reply.field("FromUserName") == "gh_account"
    assert before <= int(reply.field("CreateTime")) <= after


def test_plaintext_reply_is_xml(app):
    response = app.test_client().post(url(signed_query(TOKEN)), data=text_push("hi"))
    assert response.mimetype == "application/xml"


def test_handler_that_raises_still_answers_success_and_logs_traceback(plain, caplog):
    def broken(sender, **kwargs):
        raise RuntimeError("plugin bug")

    with event_received.connected_to(broken, sender="click"), caplog.at_level(logging.ERROR):
        reply = plain.post(event_push("CLICK", {"EventKey": "k"}))
    assert reply.status == 200
    assert reply.body == b"success"
    failures = [r for r in caplog.records if r.exc_info and "plugin bug" in str(r.exc_info[1])]
    assert len(failures) == 1


def test_handler_that_raises_does_not_stop_the_echo(plain):
    def broken(sender, **kwargs):
        raise RuntimeError("plugin bug")

    with message_received.connected_to(broken, sender="text"):
        reply = plain.post(text_push("still echoed"))
    assert reply.content == "still echoed"


# --- retries ---------------------------------------------------------------------------


def test_repeated_message_runs_no_handler_and_gets_the_first_reply(plain):
    counter = Counter()
    xml = text_push("once")
    with message_received.connected_to(counter):
        first = plain.post(xml)
        second = plain.post(xml)
        third = plain.post(xml)
    assert counter.seen == ["text"]
    assert first.content == second.content == third.content == "once"


def test_repeated_safe_mode_message_gets_the_first_reply_encrypted_again(safe):
    xml = text_push("once, safely")
    first, second = safe.post(xml), safe.post(xml)
    assert second.content == first.content == "once, safely"
    assert second.raw != first.raw


def test_a_repeat_waits_for_a_live_run_elsewhere_and_carries_its_reply(app):
    """Another worker holds the push's lease: no handler runs here; its reply is answered once ready."""
    state = app.extensions["wechat"]
    xml = text_push("slow elsewhere")
    key = parse(xml).dedup_key
    state.store.claim_push(key, "text", xml, 60, "another-worker", 60)
    reply_xml = b"<xml><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[from there]]></Content></xml>"
    threading.Timer(1.0, state.store.finish_push, (key, "answered", reply_xml)).start()
    counter = Counter()
    started = time.monotonic()
    with message_received.connected_to(counter):
        reply = PushClient(app).post(xml)
    assert 1.0 <= time.monotonic() - started < 1.3
    assert reply.content == "from there"
    assert counter.seen == []


def test_a_repeat_of_a_live_run_that_is_not_ready_gets_no_answer(app):
    """Not the last delivery: held unanswered until WeChat has dropped it (5.5 s), then released."""
    state = app.extensions["wechat"]
    xml = text_push("slow")
    state.store.claim_push(parse(xml).dedup_key, "text", xml, 60, "another-worker", 60)
    counter = Counter()
    started = time.monotonic()
    with message_received.connected_to(counter):
        reply = PushClient(app).post(xml)
    assert 5.5 <= time.monotonic() - started < 5.8
    assert reply.status == 503  # the test client's stand-in for a dropped connection
    assert counter.seen == []


def test_repeated_event_is_deduplicated(plain):
    counter = Counter()
    xml = event_push("subscribe", create_time=1_700_000_000, from_user="o_fan")
    with event_received.connected_to(counter):
        plain.post(xml)
        repeat = plain.post(xml)
    assert counter.seen == ["subscribe"]
    assert "Thanks" in repeat.content


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ({"Event": "CLICK", "EventKey": "A"}, {"Event": "CLICK", "EventKey": "B"}),
        ({"Event": "MASSSENDJOBFINISH", "MsgID": 1001}, {"Event": "MASSSENDJOBFINISH", "MsgID": 1002}),
        ({"Event": "subscribe"}, {"Event": "unsubscribe"}),
    ],
)
def test_distinct_events_in_the_same_second_are_all_handled(plain, a, b):
    counter = Counter()
    with event_received.connected_to(counter):
        for fields in (a, b):
            event = fields.pop("Event")
            plain.post(event_push(event, fields, create_time=1_700_000_001, from_user="o_same"))
    assert len(counter.seen) == 2


def test_dedup_survives_a_restart(tmp_path):
    xml = text_push("before restart")
    counter = Counter()
    with message_received.connected_to(counter):
        PushClient(make_app(tmp_path)).post(xml)
        reply = PushClient(make_app(tmp_path)).post(xml)
    assert counter.seen == ["text"]
    assert reply.content == "before restart"


# A safe-mode push encrypted by WeChat's own sample code (token 123456, appid wx49f0ab532d5d035a).
OFFICIAL_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
OFFICIAL_ENVELOPE = (
    b"<xml><ToUserName><![CDATA[wx49f0ab532d5d035a]]></ToUserName>\n<Encrypt><![CDATA["
    b"RgqEoJj5A4EMYlLvWO1F86ioRjZfaex/gePD0gOXTxpsq5Yj4GNglrBb8I2BAJVODGajiFnXBu7mCPatfjsu6IHCrsTyeDXzF6Bv283dGymzxh6"
    b"ydJRvZsryDyZbLTE7rhnus50qGPMfp2wASFlzEgMW9z1ef/RD8XzaFYgm7iTdaXpXaG4+BiYyolBug/gYNx410cvkKR2/nPwBiT+P4hIiOAQqG"
    b"p/TywZBtDh1yCF2KOd0gpiMZ5jSw3e29mTvmUHzkVQiMS6td7vXUaWOMZnYZlF3So2SjHnwh4jYFxdgpkHHqIrH/54SNdshoQgWYEvccTKe7FS"
    b"709/5t6NMxuGhcUGAPOQipvWTT4dShyqio7mlsl5noTrb++x6En749zCpQVhDpbV6GDnTbcX2e8K9QaNWHp91eBdCRxthuL0=]]></Encrypt>\n"
    b"<AgentID><![CDATA[1]]></AgentID>\n</xml>"
)


def test_a_push_encrypted_by_wechats_sample_code_is_decrypted_and_answered(tmp_path):
    app = make_app(
        tmp_path,
        WECHAT_TOKEN="123456",
        WECHAT_APP_ID="wx49f0ab532d5d035a",
        WECHAT_ENCODING_AES_KEY=OFFICIAL_KEY,
        WECHAT_TIMESTAMP_TOLERANCE=str(10**10),  # the sample is from 2014
    )
    timestamp, nonce = "1411525903", "461056294"
    query = {
        "signature": crypto.sign("123456", timestamp, nonce),
        "timestamp": timestamp,
        "nonce": nonce,
        "encrypt_type": "aes",
        "msg_signature": "74d92dfeb87ba7c714f89d98870ae5eb62dff26d",
    }
    seen = []
    with message_received.connected_to(lambda sender, message, **kw: seen.append(message)):
        response = app.test_client().post(url(query), data=OFFICIAL_ENVELOPE)
    assert response.status_code == 200
    assert [(m.from_user, m.content, m.msg_id) for m in seen] == [("messense", "test", 4363689963896700987)]
    envelope = crypto.AESEnvelope(OFFICIAL_KEY, "wx49f0ab532d5d035a")
    from app.testing import open_reply

    reply = etree.fromstring(open_reply(response.get_data(), "123456", envelope))
    assert (reply.findtext("ToUserName"), reply.findtext("Content")) == ("messense", "test")


def test_a_failing_store_never_turns_into_a_500(app, caplog):
    """Store down: the push is still handled (a duplicate beats a lost message) and answered."""
    state = app.extensions["wechat"]

    class BrokenStore:
        def __getattr__(self, name):
            def fail(*args, **kwargs):
                raise OSError("disk I/O error")

            return fail

    broken = BrokenStore()
    for holder in (state, state.pipeline, state.pipeline.late, state.pipeline.runner):
        holder.store = broken
    with caplog.at_level(logging.ERROR):
        reply = PushClient(app).post(text_push("store is down"))
        refused = app.test_client().post("/wechat")  # a refusal is still a 400, counted or not
    assert reply.status == 200
    assert reply.content == "store is down"
    assert refused.status_code == 400
    store_lines = [r for r in caplog.records if "disk I/O error" in r.getMessage()]
    assert store_lines, "the store's failure is logged"
    assert all(r.exc_info is None for r in store_lines), "one line each, not a traceback per push"


def test_head_verification_is_answered_like_get(http):
    response = http.head(url(signed_query(TOKEN, echostr="123")))
    assert response.status_code == 200


def test_options_without_a_signature_is_a_bad_request(http):
    assert http.options("/wechat").status_code == 400


def test_safe_mode_envelope_without_encrypt_is_forbidden(app):
    query = {**signed_query(TOKEN), "encrypt_type": "aes", "msg_signature": "0" * 40}
    response = app.test_client().post(url(query), data=b"<xml><ToUserName>gh</ToUserName></xml>")
    assert response.status_code == 403


def test_a_small_body_limit_is_a_valid_setting(tmp_path):
    app = make_app(tmp_path, WECHAT_MAX_BODY_BYTES="100", WECHAT_TIMESTAMP_TOLERANCE="0")
    response = app.test_client().post(url(signed_query(TOKEN)), data=text_push("longer than one hundred bytes"))
    assert response.status_code == 413


def test_a_signed_request_with_another_method_is_not_allowed(http):
    assert http.put(url(signed_query(TOKEN)), data=text_push("x")).status_code == 405
