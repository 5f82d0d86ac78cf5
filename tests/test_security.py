"""Tried as an attacker would: the message modes, ambiguous queries, and what a refusal gives away."""

from __future__ import annotations

import logging
import time
from urllib.parse import urlencode

import pytest

from app import SettingsError, crypto
from app.signals import message_received
from app.testing import PushClient, encrypt_push, event_push, signed_query, text_push
from tests.conftest import TOKEN, make_app


class Seen:
    def __init__(self) -> None:
        self.messages: list[object] = []

    def __call__(self, sender, message, **extra):
        self.messages.append(message)


def post(app, query: dict[str, str], body: bytes, path: str = "/wechat"):
    return app.test_client().post(f"{path}?{urlencode(query)}", data=body, content_type="text/xml")


def encrypted(app, xml: bytes, **query_options):
    envelope = app.extensions["wechat"].envelope
    return encrypt_push(xml, TOKEN, envelope, signed_query(TOKEN, **query_options))


def journalled(app) -> int:
    return app.extensions["wechat"].store.count_pushes()


# --- the message modes --------------------------------------------------------


@pytest.mark.parametrize("mode", [None, "safe"])
def test_safe_mode_refuses_a_signed_plaintext_push(tmp_path, mode):
    """The downgrade: a captured safe-mode query signs any plaintext body. Refused, by default too."""
    overrides = {"WECHAT_MESSAGE_MODE": mode} if mode else {"WECHAT_MESSAGE_MODE": None}
    app = make_app(tmp_path, **overrides)
    assert app.extensions["wechat"].settings.message_mode == "safe"
    seen = Seen()
    with message_received.connected_to(seen):
        for encrypt_type in (None, "raw"):
            query = signed_query(TOKEN, **({"encrypt_type": encrypt_type} if encrypt_type else {}))
            response = post(app, query, text_push("forged"))
            assert response.status_code == 403
            assert response.get_data() == b"forbidden\n"
        forged_finish = event_push("MASSSENDJOBFINISH", {"MsgID": 1000001, "Status": "send success"})
        assert post(app, signed_query(TOKEN), forged_finish).status_code == 403
    assert seen.messages == []
    assert journalled(app) == 0, "a refused push leaves nothing in the journal"
    assert app.extensions["wechat"].store.get_job("mass", "1000001") is None


def test_safe_mode_accepts_encrypted_pushes(tmp_path):
    app = make_app(tmp_path, WECHAT_MESSAGE_MODE="safe")
    assert PushClient(app, safe_mode=True).post(text_push("sealed")).content == "sealed"


def test_compatible_mode_accepts_both_kinds_for_the_switch_over(tmp_path):
    app = make_app(tmp_path, WECHAT_MESSAGE_MODE="compatible")
    assert PushClient(app).post(text_push("plain")).content == "plain"
    assert PushClient(app, safe_mode=True).post(text_push("sealed")).content == "sealed"


def test_plaintext_mode_refuses_an_encrypted_push(tmp_path):
    app = make_app(tmp_path, WECHAT_MESSAGE_MODE="plaintext")
    body, query = encrypted(app, text_push("sealed"))
    assert post(app, query, body).status_code == 403
    assert PushClient(app).post(text_push("plain")).content == "plain"


def test_without_a_key_the_default_is_plaintext(tmp_path):
    app = make_app(tmp_path, WECHAT_ENCODING_AES_KEY=None)
    assert app.extensions["wechat"].settings.message_mode == "plaintext"
    assert PushClient(app).post(text_push("plain")).content == "plain"


@pytest.mark.parametrize("encrypt_type", ["aes", "AES", "Aes"])
def test_aes_in_any_case_means_encrypted(tmp_path, encrypt_type):
    app = make_app(tmp_path, WECHAT_MESSAGE_MODE="safe")
    body, query = encrypted(app, text_push("sealed"))
    query["encrypt_type"] = encrypt_type
    response = post(app, query, body)
    assert response.status_code == 200
    assert b"<Encrypt>" in response.get_data()


@pytest.mark.parametrize("encrypt_type", ["rsa", "", "aes256", "none"])
def test_an_unknown_encrypt_type_is_400(tmp_path, encrypt_type):
    app = make_app(tmp_path)
    query = signed_query(TOKEN, encrypt_type=encrypt_type)
    assert post(app, query, text_push("x")).status_code == 400


@pytest.mark.parametrize("mode", ["compatible", "safe"])
def test_an_encrypted_mode_without_a_key_stops_start_up(tmp_path, mode):
    with pytest.raises(SettingsError) as caught:
        make_app(tmp_path, WECHAT_ENCODING_AES_KEY=None, WECHAT_MESSAGE_MODE=mode)
    assert "WECHAT_MESSAGE_MODE" in str(caught.value)
    assert "WECHAT_ENCODING_AES_KEY" in str(caught.value)


def test_an_unknown_mode_stops_start_up(tmp_path):
    with pytest.raises(SettingsError, match="WECHAT_MESSAGE_MODE"):
        make_app(tmp_path, WECHAT_MESSAGE_MODE="strict")


def test_start_up_logs_the_mode_in_one_line(tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        make_app(tmp_path, WECHAT_MESSAGE_MODE=None)
    lines = [r.getMessage() for r in caplog.records if "WECHAT_MESSAGE_MODE" in r.getMessage()]
    assert lines == ["WECHAT_MESSAGE_MODE=safe: only encrypted pushes are accepted"]


# --- ambiguous queries ----------------------------------------------------------


@pytest.mark.parametrize("name", ["signature", "timestamp", "nonce", "msg_signature", "encrypt_type", "echostr"])
def test_a_parameter_given_twice_is_400(tmp_path, name):
    app = make_app(tmp_path)
    query = signed_query(TOKEN, encrypt_type="raw", msg_signature="0" * 40, echostr="e")
    pairs = list(query.items()) + [(name, query[name])]  # even the same value twice
    response = app.test_client().post(f"/wechat?{urlencode(pairs)}", data=text_push("x"))
    assert response.status_code == 400


def test_a_bad_signature_then_a_good_one_is_400_not_200(tmp_path):
    app = make_app(tmp_path)
    good = signed_query(TOKEN)
    pairs = [("signature", "0" * 40), *good.items()]
    seen = Seen()
    with message_received.connected_to(seen):
        response = app.test_client().post(f"/wechat?{urlencode(pairs)}", data=text_push("x"))
    assert response.status_code == 400
    assert seen.messages == []


@pytest.mark.parametrize(
    "timestamp",
    ["{n:_}", "+{n}", " {n}", "{n} ", "-{n}", "{n}.0", "{wide}", "٣{n}", "0x{n:x}", ""],
    ids=[
        "underscores",
        "plus",
        "leading-space",
        "trailing-space",
        "minus",
        "decimal",
        "full-width",
        "arabic",
        "hex",
        "empty",
    ],
)
def test_a_timestamp_that_is_not_plain_ascii_digits_is_400(tmp_path, timestamp):
    """Python's int() reads several of these; the callback does not, even when they are signed."""
    app = make_app(tmp_path)
    now = int(time.time())
    wide = "".join(chr(0xFF10 + int(digit)) for digit in str(now))
    text = timestamp.format(n=now, wide=wide)
    nonce = "12345"
    query = {"signature": crypto.sign(TOKEN, text, nonce), "timestamp": text, "nonce": nonce}
    assert post(app, query, text_push("x")).status_code == 400


# --- what a refusal gives away ---------------------------------------------------


def test_a_wrong_signature_gets_the_same_answer_whatever_the_timestamp(tmp_path):
    """An unsigned request learns nothing about the server's clock (or its mode)."""
    app = make_app(tmp_path, WECHAT_MESSAGE_MODE="safe")
    now = int(time.time())
    answers = set()
    for timestamp in (now, now - 10_000, now + 10_000, 0, 10**19):
        for encrypt_type in (None, "aes"):
            query = {"signature": "0" * 40, "timestamp": str(timestamp), "nonce": "1"}
            if encrypt_type:
                query["encrypt_type"] = encrypt_type
            response = post(app, query, text_push("x"))
            answers.add((response.status_code, response.get_data(), tuple(sorted(response.headers.items()))))
    assert len(answers) == 1
    assert next(iter(answers))[:2] == (403, b"forbidden\n")


def test_a_stale_timestamp_with_a_good_signature_is_told_only_forbidden(tmp_path):
    app = make_app(tmp_path)
    response = post(app, signed_query(TOKEN, timestamp=int(time.time()) - 1000), text_push("x"))
    assert (response.status_code, response.get_data()) == (403, b"forbidden\n")


def test_checks_run_in_the_contracts_order(tmp_path):
    """query (400), signature (403), timestamp (403), mode (403), size (413), then the body."""
    app = make_app(tmp_path, WECHAT_MESSAGE_MODE="safe", WECHAT_MAX_BODY_BYTES="100")
    big = b"<xml>" + b"x" * 500 + b"</xml>"
    pairs = [("signature", "0" * 40), ("signature", "0" * 40), ("timestamp", "1"), ("nonce", "1")]
    assert app.test_client().post(f"/wechat?{urlencode(pairs)}", data=big).status_code == 400  # query first
    assert post(app, {"signature": "0" * 40, "timestamp": "1", "nonce": "1"}, big).status_code == 403
    assert post(app, signed_query(TOKEN), big).status_code == 403  # plaintext in safe: mode before size
    assert post(app, signed_query(TOKEN, encrypt_type="aes", msg_signature="0" * 40), big).status_code == 413
    assert post(app, signed_query(TOKEN, encrypt_type="aes", msg_signature="0" * 40), b"<x/>").status_code == 403


def test_the_echo_of_echostr_is_not_sniffed(tmp_path):
    app = make_app(tmp_path)
    response = app.test_client().get(f"/wechat?{urlencode(signed_query(TOKEN, echostr='<script>1</script>'))}")
    assert response.status_code == 200
    assert response.get_data() == b"<script>1</script>"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.mimetype == "text/plain"


def test_a_refused_request_logs_one_line_without_the_body(tmp_path, caplog):
    app = make_app(tmp_path)
    query = signed_query(TOKEN)
    query["signature"] = "0" * 40
    with caplog.at_level(logging.DEBUG):
        for _ in range(50):
            post(app, query, text_push("SECRET-BODY-MARKER"))
    lines = [r for r in caplog.records if r.name.startswith("app")]
    assert len(lines) == 1, "fifty identical refusals are one line until the interval passes"
    assert "SECRET-BODY-MARKER" not in lines[0].getMessage()
    assert lines[0].exc_info is None
    assert "403" in lines[0].getMessage()


def test_repeated_refusals_are_counted_in_the_next_line(tmp_path, caplog):
    app = make_app(tmp_path)
    app.extensions["wechat"].throttle.interval = 0.2
    query = signed_query(TOKEN)
    query["signature"] = "0" * 40
    with caplog.at_level(logging.WARNING):
        for _ in range(5):
            post(app, query, text_push("x"))
        time.sleep(0.25)
        post(app, query, text_push("x"))
    lines = [r.getMessage() for r in caplog.records if r.name == "app.pipeline"]
    assert len(lines) == 2
    assert "and 4 more like it" in lines[1]


def test_healthz_says_only_its_status(tmp_path):
    app = make_app(tmp_path)
    assert app.test_client().get("/healthz").get_json() == {"status": "ok"}
