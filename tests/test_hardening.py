"""Hostile and malformed input against the callback, as WeChat's callers could send it.

Everything here goes through the HTTP surface (the Flask test client, and at the end a
real gunicorn process) and checks what the caller sees: the status (200, 400, 403 or 413,
never 500), the reply body, the time it took, and whether a
handler ran (a counting receiver connected with blinker's ``connected_to``).
"""

from __future__ import annotations

import http.client
import http.server
import io
import itertools
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from lxml import etree

from app import create_app, crypto
from app.signals import event_received, message_received
from app.testing import PushClient, build_push, encrypt_push, event_push, open_reply, signed_query, text_push
from tests.servers import serve

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"

TOKEN = "hardening-token"
APP_ID = "wx49f0ab532d5d035a"
AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
PATH = "/wechat"
MAX_BODY = 262144  # the default WECHAT_MAX_BODY_BYTES

FAST = 1.0  # seconds: every hostile request must be answered within this

HYPOTHESIS = settings(
    max_examples=150,
    deadline=timedelta(seconds=1),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

_msg_ids = itertools.count(time.time_ns() // 1000)


# --- apps and helpers ---------------------------------------------------------------


def make_app(tmp_path_factory, **config):
    store = tmp_path_factory.mktemp("store") / "wechat.sqlite3"
    return create_app(
        {
            "WECHAT_TOKEN": TOKEN,
            "WECHAT_APP_ID": APP_ID,
            "WECHAT_ENCODING_AES_KEY": AES_KEY,
            "WECHAT_PLUGINS": "app.plugins.echo",
            "WECHAT_STORE_URL": f"sqlite:///{store}",
            "WECHAT_TIMESTAMP_TOLERANCE": "300",
            "WECHAT_MAX_BODY_BYTES": str(MAX_BODY),
            "WECHAT_MESSAGE_MODE": "compatible",  # both kinds of push; the modes have tests of their own
            **config,
        }
    )


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    app = make_app(tmp_path_factory)
    # These tests read each refusal's log line; repeated refusals are one line a minute by default.
    app.extensions["wechat"].throttle.interval = 0
    return app


@pytest.fixture(scope="module")
def client(app):
    return app.test_client()


@pytest.fixture(scope="module")
def envelope(app):
    return crypto.AESEnvelope(AES_KEY, APP_ID)


def post(client, body: bytes, query: dict[str, str] | None = None, **kwargs):
    """POST ``body`` signed as WeChat signs it (unless ``query`` is given)."""
    query = signed_query(TOKEN) if query is None else query
    return client.post(f"{PATH}?{urlencode(query)}", data=body, content_type="text/xml", **kwargs)


def post_safe(client, xml: bytes, envelope, **query_options):
    """``xml`` in a safe-mode envelope, signed with msg_signature."""
    body, query = encrypt_push(xml, TOKEN, envelope, signed_query(TOKEN, **query_options))
    return client.post(f"{PATH}?{urlencode(query)}", data=body, content_type="text/xml")


@contextmanager
def handlers_run() -> Iterator[list[str]]:
    """Count every handler call: a receiver on every message and event."""
    calls: list[str] = []

    def count(sender, **kwargs):
        calls.append(sender)

    with message_received.connected_to(count), event_received.connected_to(count):
        yield calls


def assert_answer(response, allowed=(200, 400)) -> None:
    """The status is one of ``allowed``; a 200 body is ``success`` or a well-formed reply."""
    assert response.status_code in allowed, (response.status_code, response.get_data()[:300])
    if response.status_code == 200:
        body = response.get_data()
        if body != b"success":
            assert response.mimetype == "application/xml"
            assert etree.fromstring(body).tag == "xml"


def assert_safe_answer(response, envelope, allowed=(200, 400)) -> None:
    assert response.status_code in allowed, (response.status_code, response.get_data()[:300])
    if response.status_code == 200:
        raw = response.get_data()
        if raw != b"success":
            assert etree.fromstring(raw).findtext("Encrypt")
            assert etree.fromstring(open_reply(raw, TOKEN, envelope)).tag == "xml"


def raw_cdata(text: str) -> str:
    """CDATA that keeps every character (the test kit's ``cdata`` drops forbidden ones)."""
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def text_xml(content: str, *, msg_id: int | None = None, create_time: int | None = None) -> bytes:
    """A text push carrying ``content`` byte for byte, whatever it contains."""
    return (
        "<xml><ToUserName><![CDATA[gh_test]]></ToUserName><FromUserName><![CDATA[o_test_user]]></FromUserName>"
        f"<CreateTime>{int(time.time()) if create_time is None else create_time}</CreateTime>"
        f"<MsgType><![CDATA[text]]></MsgType><Content>{raw_cdata(content)}</Content>"
        f"<MsgId>{next(_msg_ids) if msg_id is None else msg_id}</MsgId></xml>"
    ).encode()


def push_xml(msg_type: str, inner: str, *, create_time: str | None = None) -> bytes:
    created = str(int(time.time())) if create_time is None else create_time
    return (
        "<xml><ToUserName><![CDATA[gh_test]]></ToUserName>"
        f"<FromUserName><![CDATA[o_{next(_msg_ids)}]]></FromUserName>"
        f"<CreateTime>{created}</CreateTime><MsgType><![CDATA[{msg_type}]]></MsgType>{inner}</xml>"
    ).encode()


def assert_echo(client, content: str = "ping") -> None:
    """A normal push still gets its echo reply."""
    response = post(client, text_push(content))
    assert response.status_code == 200
    assert etree.fromstring(response.get_data()).findtext("Content") == content


# --- arbitrary and mutated bodies ------------------------------------------------------


@HYPOTHESIS
@given(body=st.binary(max_size=4000))
def test_arbitrary_bytes_get_400_or_a_well_formed_200(client, body):
    assert_answer(post(client, body))


@HYPOTHESIS
@given(body=st.text(max_size=2000))
def test_arbitrary_text_gets_400_or_a_well_formed_200(client, body):
    assert_answer(post(client, body.encode("utf-8", "surrogatepass")))


def _seed_pushes() -> list[bytes]:
    seeds = [
        text_push("你好 <&> ]]> world"),
        event_push("subscribe"),
        event_push("CLICK", {"EventKey": "menu_1"}),
        build_push(
            "location",
            {
                "Location_X": "23.134521",
                "Location_Y": "113.358803",
                "Scale": 20,
                "Label": "广州",
                "MsgId": next(_msg_ids),
            },
        ),
        build_push("link", {"Title": "t", "Description": "d", "Url": "http://example.com/", "MsgId": next(_msg_ids)}),
        build_push("image", {"PicUrl": "http://example.com/p.jpg", "MediaId": "media", "MsgId": next(_msg_ids)}),
        push_xml(
            "event",
            "<Event><![CDATA[pic_sysphoto]]></Event><EventKey>k</EventKey><SendPicsInfo><Count>1</Count>"
            "<PicList><item><PicMd5Sum>abc</PicMd5Sum></item></PicList></SendPicsInfo>",
        ),
        push_xml(
            "event",
            "<Event><![CDATA[MASSSENDJOBFINISH]]></Event><MsgID>1000001625</MsgID>"
            "<Status><![CDATA[send success]]></Status><TotalCount>100</TotalCount>"
            "<FilterCount>80</FilterCount><SentCount>75</SentCount><ErrorCount>5</ErrorCount>",
        ),
    ]
    seeds += [path.read_bytes() for path in sorted(FIXTURES.glob("*.xml"))]
    return seeds


SEEDS = _seed_pushes()
INTERESTING_BYTES = b"<>/&;!?[]-=\"' \t\n\r\x00\x01\x0b\x80\xc3\xe4\xef\xbb\xbf\xff0123456789aAxX"


@st.composite
def mutated_pushes(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        operation = draw(st.sampled_from(["replace", "insert", "delete", "duplicate"]))
        position = draw(st.integers(0, len(data)))
        byte = draw(st.one_of(st.sampled_from(INTERESTING_BYTES), st.integers(0, 255)))
        if operation == "replace" and position < len(data):
            data[position] = byte
        elif operation == "insert":
            data.insert(position, byte)
        elif operation == "delete" and position < len(data):
            end = position + draw(st.integers(1, 16))
            del data[position:end]
        elif operation == "duplicate" and position < len(data):
            end = position + draw(st.integers(1, 64))
            data[position:position] = data[position:end]
    return bytes(data)


@HYPOTHESIS
@given(body=mutated_pushes())
def test_mutated_pushes_get_400_or_a_well_formed_200(client, body):
    assert_answer(post(client, body))


@HYPOTHESIS
@given(xml=mutated_pushes())
def test_mutated_pushes_inside_a_valid_envelope(client, envelope, xml):
    assert_safe_answer(post_safe(client, xml, envelope), envelope)


@HYPOTHESIS
@given(body=mutated_pushes())
def test_mutated_envelopes_never_500(client, envelope, body):
    """Safe mode: arbitrary outer XML with a signature over whatever Encrypt it carries."""
    query = signed_query(TOKEN)
    try:
        encrypted = (etree.fromstring(body).findtext("Encrypt") or "").strip()
    except etree.XMLSyntaxError:
        encrypted = ""
    query.update(encrypt_type="aes", msg_signature=crypto.sign(TOKEN, query["timestamp"], query["nonce"], encrypted))
    assert_safe_answer(post(client, body, query), envelope, allowed=(200, 400, 403))


# --- wrong types, huge numbers, many attributes ------------------------------------------

# (id, build(value) -> body, bad values, a good value)
NUMERIC_FIELDS = [
    ("text CreateTime", lambda v: text_xml("x", create_time=v)),
    ("text MsgId", lambda v: text_xml("x", msg_id=v)),
    (
        "location Location_X",
        lambda v: push_xml(
            "location",
            f"<Location_X>{v}</Location_X><Location_Y>1.5</Location_Y>"
            f"<Scale>20</Scale><Label>l</Label><MsgId>{next(_msg_ids)}</MsgId>",
        ),
    ),
    (
        "location Location_Y",
        lambda v: push_xml(
            "location", f"<Location_X>1.5</Location_X><Location_Y>{v}</Location_Y><MsgId>{next(_msg_ids)}</MsgId>"
        ),
    ),
    (
        "location Scale",
        lambda v: push_xml("location", f"<Location_X>1</Location_X><Scale>{v}</Scale><MsgId>{next(_msg_ids)}</MsgId>"),
    ),
    (
        "LOCATION Latitude",
        lambda v: push_xml(
            "event",
            f"<Event>LOCATION</Event><Latitude>{v}</Latitude><Longitude>113.3</Longitude><Precision>119.3</Precision>",
        ),
    ),
    ("LOCATION Precision", lambda v: push_xml("event", f"<Event>LOCATION</Event><Precision>{v}</Precision>")),
    (
        "MASSSENDJOBFINISH MsgID",
        lambda v: push_xml("event", f"<Event>MASSSENDJOBFINISH</Event><MsgID>{v}</MsgID><Status>send success</Status>"),
    ),
    *[
        (
            f"MASSSENDJOBFINISH {name}",
            lambda v, name=name: push_xml(
                "event",
                f"<Event>MASSSENDJOBFINISH</Event><MsgID>{next(_msg_ids)}</MsgID><Status>send success</Status>"
                f"<TotalCount>10</TotalCount><{name}>{v}</{name}>",
            ),
        )
        for name in ("TotalCount", "FilterCount", "SentCount", "ErrorCount")
    ],
    (
        "MASSSENDJOBFINISH CheckState",
        lambda v: push_xml(
            "event",
            f"<Event>MASSSENDJOBFINISH</Event><MsgID>{next(_msg_ids)}</MsgID>"
            f"<CopyrightCheckResult><Count>0</Count><CheckState>{v}</CheckState></CopyrightCheckResult>",
        ),
    ),
    (
        "MASSSENDJOBFINISH item ArticleIdx",
        lambda v: push_xml(
            "event",
            f"<Event>MASSSENDJOBFINISH</Event><MsgID>{next(_msg_ids)}</MsgID><CopyrightCheckResult>"
            f"<ResultList><item><ArticleIdx>{v}</ArticleIdx><AuditState>2</AuditState></item></ResultList>"
            "</CopyrightCheckResult>",
        ),
    ),
    (
        "MASSSENDJOBFINISH ArticleUrlResult ArticleIdx",
        lambda v: push_xml(
            "event",
            f"<Event>MASSSENDJOBFINISH</Event><MsgID>{next(_msg_ids)}</MsgID><ArticleUrlResult>"
            f"<ResultList><item><ArticleIdx>{v}</ArticleIdx><ArticleUrl>u</ArticleUrl></item></ResultList>"
            "</ArticleUrlResult>",
        ),
    ),
    (
        "TEMPLATESENDJOBFINISH MsgID",
        lambda v: push_xml("event", f"<Event>TEMPLATESENDJOBFINISH</Event><MsgID>{v}</MsgID><Status>success</Status>"),
    ),
    (
        "pic_sysphoto Count",
        lambda v: push_xml(
            "event", f"<Event>pic_sysphoto</Event><EventKey>k</EventKey><SendPicsInfo><Count>{v}</Count></SendPicsInfo>"
        ),
    ),
    (
        "location_select Scale",
        lambda v: push_xml(
            "event",
            f"<Event>location_select</Event><EventKey>k</EventKey>"
            f"<SendLocationInfo><Location_X>1</Location_X>"
            f"<Scale>{v}</Scale></SendLocationInfo>",
        ),
    ),
    (
        "location_select Location_Y",
        lambda v: push_xml(
            "event",
            f"<Event>location_select</Event><EventKey>k</EventKey>"
            f"<SendLocationInfo><Location_Y>{v}</Location_Y>"
            "</SendLocationInfo>",
        ),
    ),
    (
        "subscribe_msg_popup_event PopupScene",
        lambda v: push_xml(
            "event",
            "<Event>subscribe_msg_popup_event</Event><SubscribeMsgPopupEvent><List><TemplateId>t</TemplateId>"
            f"<SubscribeStatusString>accept</SubscribeStatusString><PopupScene>{v}</PopupScene></List>"
            "</SubscribeMsgPopupEvent>",
        ),
    ),
    (
        "subscribe_msg_sent_event ErrorCode",
        lambda v: push_xml(
            "event",
            "<Event>subscribe_msg_sent_event</Event><SubscribeMsgSentEvent><List><TemplateId>t</TemplateId>"
            f"<MsgID>1</MsgID><ErrorCode>{v}</ErrorCode><ErrorStatus>success</ErrorStatus></List>"
            "</SubscribeMsgSentEvent>",
        ),
    ),
]

BAD_NUMBERS = ["abc", "12abc", "1 2", "--1", "0x10", "1,5", "[]", "<![CDATA[seven]]>", "&lt;1&gt;", "½", "一"]


OPTIONAL_NUMERIC_FIELDS = [(i, b) for i, b in NUMERIC_FIELDS if i != "text CreateTime"]


def test_wrong_type_in_create_time_is_400_and_no_handler_runs(client):
    build = dict(NUMERIC_FIELDS)["text CreateTime"]
    with handlers_run() as calls:
        for bad in [*BAD_NUMBERS, "1.5", "1e9", "nan", "inf", "\u22121"]:
            response = post(client, build(bad))
            assert response.status_code == 400, (bad, response.status_code, response.get_data()[:200])
        assert calls == []
        assert post(client, build("7")).status_code == 200  # the control: a number is handled
        assert len(calls) == 1


@pytest.mark.parametrize("build", [b for _, b in OPTIONAL_NUMERIC_FIELDS], ids=[i for i, _ in OPTIONAL_NUMERIC_FIELDS])
def test_wrong_type_in_an_optional_numeric_field_loses_nothing(client, build, caplog):
    """The push is still handled (WeChat would retry a 400 and the follower's message be lost);
    the unreadable field is left out with a warning."""
    with handlers_run() as calls, caplog.at_level("WARNING", logger="app.messages"):
        for bad in [*BAD_NUMBERS, "1.5", "1e9", "nan", "inf", "\u22121"]:
            response = post(client, build(bad))
            assert response.status_code == 200, (bad, response.status_code, response.get_data()[:200])
    assert calls  # handled (events built in the same second may be retries of each other)
    assert "is not a valid" in caplog.text


def test_a_nested_element_where_create_time_belongs_is_400(client):
    body = text_xml("x", create_time="<a>1</a>")  # type: ignore[arg-type]
    assert post(client, body).status_code == 400


@HYPOTHESIS
@given(field=st.sampled_from(NUMERIC_FIELDS), value=st.text(max_size=40))
def test_any_text_in_a_numeric_field_is_200_or_400(client, field, value):
    _, build = field
    value = value.replace("]]>", "")
    response = post(client, build(raw_cdata(value)))
    assert_answer(response)
    # a value that is present (not blank once controls are dropped) with no digit at all cannot be an integer
    present = XML_FORBIDDEN_CONTROLS.sub("", value).strip()
    if field[0] == "text CreateTime" and present and not any(c.isdigit() for c in present):
        assert response.status_code == 400, value  # the one required number
    elif field[0] != "text CreateTime":
        assert response.status_code == 200, value  # an optional number that does not read is left out


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(lambda: text_xml("big time", create_time=10**30), id="CreateTime-1e30"),
        pytest.param(lambda: text_xml("negative", create_time=-(10**30)), id="CreateTime-negative"),
        pytest.param(lambda: text_xml("big", create_time=10**400, msg_id=10**400), id="400-digit-numbers"),
    ],
)
def test_numbers_beyond_64_bits_are_a_clear_400(client, body, caplog):
    """No WeChat id or time has more than 20 digits; such a push is refused, not mis-read."""
    with caplog.at_level("WARNING", logger="app.pipeline"):
        response = post(client, body())
    assert response.status_code == 400
    assert "not a valid integer" in caplog.text


def test_the_largest_64_bit_ids_still_get_the_echo(client):
    xml = text_xml("big id", msg_id=2**64 - 1)
    response = post(client, xml)
    assert response.status_code == 200
    assert etree.fromstring(response.get_data()).findtext("Content") == "big id"


@pytest.mark.parametrize("digits", [400, 4300, 5000, 20000])
def test_numbers_with_thousands_of_digits_are_answered_fast(client, digits):
    number = "9" * digits
    bodies = [
        text_xml("x", create_time=number),  # type: ignore[arg-type]
        text_xml("x", msg_id=number),  # type: ignore[arg-type]
        dict(NUMERIC_FIELDS)["MASSSENDJOBFINISH TotalCount"](number),
        dict(NUMERIC_FIELDS)["MASSSENDJOBFINISH MsgID"](number),
        dict(NUMERIC_FIELDS)["location Location_X"](number),
        dict(NUMERIC_FIELDS)["LOCATION Latitude"]("1e" + number),
    ]
    for body in bodies:
        start = time.monotonic()
        response = post(client, body)
        assert time.monotonic() - start < FAST
        assert_answer(response)


def test_huge_counts_in_a_mass_send_finish_are_a_clear_400(client):
    body = push_xml(
        "event",
        f"<Event>MASSSENDJOBFINISH</Event><MsgID>{10**40}</MsgID><Status>send success</Status>"
        f"<TotalCount>{10**30}</TotalCount><FilterCount>{10**30}</FilterCount><SentCount>{-(10**30)}</SentCount>"
        f"<ErrorCount>{10**400}</ErrorCount>",
        create_time=str(10**400),
    )
    response = post(client, body)
    assert response.status_code == 400
    assert b"not a valid integer" in response.get_data()


def test_many_attributes_are_ignored(client):
    attributes = " ".join(f'a{i}="{i}"' for i in range(5000))
    content_attributes = " ".join(f'c{i}="&amp;{i}"' for i in range(1000))
    body = (
        text_xml("attributes")
        .replace(b"<xml>", f"<xml {attributes}>".encode())
        .replace(b"<Content>", f"<Content {content_attributes}>".encode())
    )
    assert len(body) < MAX_BODY
    start = time.monotonic()
    response = post(client, body)
    assert time.monotonic() - start < FAST
    assert response.status_code == 200
    assert etree.fromstring(response.get_data()).findtext("Content") == "attributes"


def test_duplicate_attribute_is_400(client):
    body = text_xml("dup").replace(b"<xml>", b'<xml a="1" a="2">')
    assert post(client, body).status_code == 400


def test_many_unknown_sibling_elements_are_answered_fast(client):
    filler = "".join(f"<X{i % 50}>v</X{i % 50}>" for i in range(20000))
    body = text_xml("siblings").replace(b"</xml>", filler.encode() + b"</xml>")
    assert len(body) < MAX_BODY
    start = time.monotonic()
    response = post(client, body)
    assert time.monotonic() - start < FAST
    assert response.status_code == 200
    assert etree.fromstring(response.get_data()).findtext("Content") == "siblings"


# --- encodings ------------------------------------------------------------------------


def _declared(encoding: str, text: str = "café 你好") -> str:
    return f'<?xml version="1.0" encoding="{encoding}"?>' + text_xml(text).decode("utf-8")


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(lambda: _declared("UTF-16").encode("utf-16"), id="utf-16-with-bom"),
        pytest.param(lambda: b"\xff\xfe" + _declared("UTF-16").encode("utf-16-le"), id="utf-16-le-bom"),
        pytest.param(lambda: b"\xfe\xff" + _declared("UTF-16").encode("utf-16-be"), id="utf-16-be-bom"),
        pytest.param(lambda: _declared("UTF-16").encode("utf-16-le"), id="utf-16-le-no-bom"),
        pytest.param(lambda: text_xml("x").decode().encode("utf-16"), id="utf-16-undeclared"),
        pytest.param(lambda: _declared("UTF-32").encode("utf-32"), id="utf-32"),
        pytest.param(lambda: _declared("ISO-8859-1", "café").encode("latin-1"), id="latin-1-declared-and-used"),
        pytest.param(lambda: _declared("GBK", "你好").encode("gbk"), id="gbk-declared-and-used"),
        pytest.param(lambda: text_xml("café").decode().encode("latin-1"), id="latin-1-undeclared"),
        pytest.param(lambda: text_xml("x") + b"\xc3", id="truncated-utf-8"),
        pytest.param(lambda: text_xml("ok").replace(b"ok", b"\xed\xb3\xbf"), id="utf-8-encoded-surrogate"),
        pytest.param(lambda: text_xml("ok").replace(b"ok", b"\xc0\xaf"), id="overlong-utf-8"),
    ],
)
def test_unusual_encodings_are_400(client, body):
    with handlers_run() as calls:
        response = post(client, body())
    assert response.status_code == 400, response.get_data()[:200]
    assert calls == []


def test_latin_1_declared_body_is_400_even_when_its_bytes_are_ascii(client):
    response = post(client, _declared("ISO-8859-1", "plain ascii").encode("ascii"))
    assert response.status_code == 400


def test_utf_8_with_bom_and_declaration_is_read(client):
    body = b"\xef\xbb\xbf" + _declared("UTF-8", "bom ok").encode("utf-8")
    response = post(client, body)
    assert response.status_code == 200
    assert etree.fromstring(response.get_data()).findtext("Content") == "bom ok"


# --- any text echoes back -----------------------------------------------------------------

XML_FORBIDDEN_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")


def expected_echo(content: str) -> str:
    """Forbidden controls are dropped; XML itself turns CR LF and lone CR into LF."""
    return XML_FORBIDDEN_CONTROLS.sub("", content).replace("\r\n", "\n").replace("\r", "\n")


@pytest.fixture(scope="module", params=["plaintext", "safe"])
def echo_client(request, app):
    return PushClient(app, safe_mode=request.param == "safe")


@HYPOTHESIS
@given(content=st.text(min_size=1, max_size=1500))
def test_any_text_echoes_back_exactly(echo_client, content):
    expected = expected_echo(content)
    # Leading/trailing whitespace and U+FFFE/U+FFFF have their own tests below.
    assume(expected and expected == expected.strip() and not set(expected) & {"\ufffe", "\uffff"})
    reply = echo_client.post(text_xml(content))
    assert reply.status == 200, reply.raw[:200]
    assert reply.msg_type == "text"
    assert reply.content == expected


@pytest.mark.parametrize(
    "content",
    [
        "]]>",
        "]]]]>",
        "<![CDATA[x]]>",
        "<xml>&amp;</xml>",
        "&lt;",
        "a\x00b\x1fc\x0bd",
        "\x01tab\tand\nnewline\x02",
        "emoji 😀🧑🏽‍💻",
        "RTL \u202eevil",
        "zero\u200bwidth",
        "ＦＵＬＬ",
        "next\u0085line\u00a0end",
        "x" * 2000,
        "你" * 600,
        "\U0010fffd",
        "🀄" * 100,
    ],
)
def test_awkward_text_echoes_back(echo_client, content):
    reply = echo_client.post(text_xml(content))
    assert reply.status == 200
    assert reply.content == expected_echo(content)


@pytest.mark.parametrize("content", ["  indented", "trailing  ", "\u3000全角空格", "line\n", "\u00a0nbsp"])
def test_surrounding_whitespace_echoes_back(echo_client, content):
    reply = echo_client.post(text_xml(content))
    assert reply.status == 200
    assert reply.content == content


@pytest.mark.parametrize("content", ["a\ufffeb", "\uffffend"])
def test_noncharacters_are_dropped_like_controls(echo_client, content):
    reply = echo_client.post(text_xml(content))
    assert reply.status == 200
    assert reply.content == content.replace("\ufffe", "").replace("\uffff", "")


# --- tampering --------------------------------------------------------------------------


def _substitutes(value: str, alphabet: str) -> Iterator[str]:
    """``value`` with each position replaced by a character of ``alphabet`` it does not already
    have (case-insensitively, since hex signatures compare lower-cased)."""
    for i, char in enumerate(value):
        for candidate in alphabet:
            if candidate.lower() != char.lower():
                yield value[:i] + candidate + value[i + 1 :]
                break
        # and one character from outside the usual alphabet
        yield value[:i] + "z" + value[i + 1 :] if char.lower() != "z" else value[:i] + "y" + value[i + 1 :]


HEX = "0123456789abcdef"
DIGITS = "0123456789"
BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _status_for_timestamp(timestamp: str) -> int:
    try:
        int(timestamp)
    except ValueError:
        return 400
    return 403


def test_tampered_plaintext_query_is_403_and_no_handler_runs(client):
    body = text_push("tamper me")
    query = signed_query(TOKEN)
    with handlers_run() as calls:
        for name, alphabet in (("signature", HEX), ("timestamp", DIGITS), ("nonce", DIGITS)):
            for tampered in _substitutes(query[name], alphabet):
                response = post(client, body, {**query, name: tampered})
                expected = _status_for_timestamp(tampered) if name == "timestamp" else 403
                assert response.status_code == expected, (name, tampered, response.get_data())
        for name in ("signature", "timestamp", "nonce"):
            assert post(client, body, {k: v for k, v in query.items() if k != name}).status_code == 400
        assert calls == []
        # the control: untampered, the very same push is handled (so it was not a duplicate above)
        response = post(client, body, query)
        assert response.status_code == 200
        assert etree.fromstring(response.get_data()).findtext("Content") == "tamper me"
        assert calls == ["text"]


def test_tampered_get_verification_is_403(client):
    query = signed_query(TOKEN, echostr="echo-1234")
    assert client.get(f"{PATH}?{urlencode(query)}").get_data() == b"echo-1234"
    for name, alphabet in (("signature", HEX), ("nonce", DIGITS)):
        for tampered in _substitutes(query[name], alphabet):
            response = client.get(f"{PATH}?{urlencode({**query, name: tampered})}")
            assert response.status_code == 403
            assert b"echo-1234" not in response.get_data()


def test_tampered_safe_mode_push_is_403_and_no_handler_runs(client, envelope):
    xml = text_push("secret")
    body, query = encrypt_push(xml, TOKEN, envelope, signed_query(TOKEN))
    encrypted = etree.fromstring(body).findtext("Encrypt")
    assert len(encrypted) > 100
    with handlers_run() as calls:
        for tampered in _substitutes(encrypted, BASE64):
            tampered_body = body.replace(encrypted.encode(), tampered.encode())
            response = post(client, tampered_body, query)
            assert response.status_code == 403, (tampered, response.get_data())
        for name, alphabet in (("msg_signature", HEX), ("signature", HEX), ("timestamp", DIGITS), ("nonce", DIGITS)):
            for tampered in _substitutes(query[name], alphabet):
                response = post(client, body, {**query, name: tampered})
                expected = _status_for_timestamp(tampered) if name == "timestamp" else 403
                assert response.status_code == expected, (name, tampered, response.get_data())
        assert post(client, body, {k: v for k, v in query.items() if k != "msg_signature"}).status_code == 403
        assert calls == []
        response = post(client, body, query)  # the control
        assert response.status_code == 200
        assert etree.fromstring(open_reply(response.get_data(), TOKEN, envelope)).findtext("Content") == "secret"
        assert calls == ["text"]


def test_push_for_another_appid_is_403(client):
    other = crypto.AESEnvelope(AES_KEY, "wx0000000000000000")
    with handlers_run() as calls:
        response = post_safe(client, text_push("not for you"), other)
        assert response.status_code == 403
        prefix = crypto.AESEnvelope(AES_KEY, APP_ID[:-1])
        assert post_safe(client, text_push("prefix appid"), prefix).status_code == 403
        other_key = crypto.AESEnvelope("B" * 43, APP_ID)
        assert post_safe(client, text_push("other key"), other_key).status_code == 403
    assert calls == []


@pytest.mark.parametrize(
    "encrypted",
    [
        pytest.param("bm90IGEgY2lwaGVydGV4dA==", id="short"),
        pytest.param("A" * 44, id="zeros"),
        pytest.param("QUJD" * 100, id="300-bytes"),
        pytest.param("not base64 at all", id="not-base64"),
    ],
)
def test_validly_signed_encrypt_that_does_not_decrypt_is_403(client, encrypted):
    query = signed_query(TOKEN)
    query.update(encrypt_type="aes", msg_signature=crypto.sign(TOKEN, query["timestamp"], query["nonce"], encrypted))
    body = f"<xml><ToUserName><![CDATA[gh_test]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    with handlers_run() as calls:
        assert post(client, body.encode(), query).status_code == 403
    assert calls == []


@pytest.fixture(scope="module")
def strict_app(tmp_path_factory):
    return make_app(tmp_path_factory, WECHAT_TIMESTAMP_TOLERANCE="60")


@pytest.mark.parametrize("skew", [-62, 65, -3600, 3600, -86400 * 365, 86400 * 365, -int(time.time())])
def test_timestamps_outside_the_tolerance_are_403(strict_app, skew):
    # a future skew gets a few seconds of margin: the clock moves on while the test runs
    client = strict_app.test_client()
    timestamp = int(time.time()) + skew
    with handlers_run() as calls:
        plain = post(client, text_push("stale"), signed_query(TOKEN, timestamp=timestamp))
        assert plain.status_code == 403
        safe = post_safe(client, text_push("stale"), crypto.AESEnvelope(AES_KEY, APP_ID), timestamp=timestamp)
        assert safe.status_code == 403
        verification = client.get(f"{PATH}?{urlencode(signed_query(TOKEN, timestamp=timestamp, echostr='e'))}")
        assert verification.status_code == 403
    assert calls == []


@pytest.mark.parametrize("skew", [-50, 50])
def test_timestamps_inside_the_tolerance_are_accepted(strict_app, skew):
    client = strict_app.test_client()
    timestamp = int(time.time()) + skew
    reply = PushClient(strict_app).post(text_push("fresh"), timestamp=timestamp)
    assert reply.status == 200 and reply.content == "fresh"
    reply = PushClient(strict_app, safe_mode=True).post(text_push("fresh safe"), timestamp=timestamp)
    assert reply.status == 200 and reply.content == "fresh safe"
    assert client.get(f"{PATH}?{urlencode(signed_query(TOKEN, timestamp=timestamp, echostr='e'))}").data == b"e"


@HYPOTHESIS
@given(
    signature=st.text(max_size=45),
    timestamp=st.one_of(st.text(max_size=30), st.integers(-(10**29), 10**29).map(str)),
    nonce=st.text(max_size=30),
    method=st.sampled_from(["GET", "POST"]),
)
def test_arbitrary_query_values_are_400_or_403(client, signature, timestamp, nonce, method):
    query = urlencode({"signature": signature, "timestamp": timestamp, "nonce": nonce, "echostr": "e"})
    response = client.open(f"{PATH}?{query}", method=method, data=text_push("q"), content_type="text/xml")
    assert response.status_code in (400, 403), response.get_data()[:200]


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_timestamp_beyond_float_range_is_403_not_500(client, method):
    query = urlencode({"signature": "0" * 40, "timestamp": "1" + "0" * 400, "nonce": "1", "echostr": "e"})
    response = client.open(f"{PATH}?{query}", method=method, data=text_push("q"), content_type="text/xml")
    assert response.status_code in (400, 403)


# --- hostile XML ---------------------------------------------------------------------------


class _Recorder(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self):  # noqa: N802
        type(self).hits.append(self.path)
        payload = b'<!ENTITY leaked "FETCHED-BY-THE-PARSER">'
        self.send_response(200)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def listener():
    """A local HTTP server that records every request an XML parser might make to it."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    _Recorder.hits = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


def _with_doctype(doctype: str, content: str = "hello") -> bytes:
    return (doctype + text_xml("PLACEHOLDER").decode().replace("<![CDATA[PLACEHOLDER]]>", content)).encode()


def _billion_laughs() -> bytes:
    entities = ['<!ENTITY lol0 "lol">'] + [f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)]
    return _with_doctype("<!DOCTYPE xml [" + "".join(entities) + "]>", "&lol9;")


def _quadratic_blowup() -> bytes:
    body = _with_doctype('<!DOCTYPE xml [<!ENTITY big "' + "B" * 200_000 + '">]>', "&big;" * 10_000)
    assert len(body) < MAX_BODY  # so it is the parser, not the size limit, that must refuse it
    return body


def _deep_nesting(depth: int = 10_000) -> bytes:
    return text_xml("deep").replace(b"</xml>", b"<n>" * depth + b"</n>" * depth + b"</xml>")


HOSTILE = {
    "xxe-file": lambda url: _with_doctype('<!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]>', "&x;"),
    "xxe-http": lambda url: _with_doctype(f'<!DOCTYPE xml [<!ENTITY x SYSTEM "{url}/xxe">]>', "&x;"),
    "xxe-http-in-attribute-free-text": lambda url: _with_doctype(
        f'<!DOCTYPE xml [<!ENTITY x SYSTEM "{url}/xxe2">]>', "before &x; after"
    ),
    "external-dtd": lambda url: _with_doctype(f'<!DOCTYPE xml SYSTEM "{url}/dtd">', "&leaked;"),
    "external-dtd-public": lambda url: _with_doctype(f'<!DOCTYPE xml PUBLIC "-//X//Y" "{url}/public">'),
    "parameter-entity-http": lambda url: _with_doctype(
        f'<!DOCTYPE xml [<!ENTITY % p SYSTEM "{url}/param"> %p;]>', "&leaked;"
    ),
    "parameter-entity-file": lambda url: _with_doctype(
        '<!DOCTYPE xml [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]>'
    ),
    "parameter-entity-internal": lambda url: _with_doctype(
        "<!DOCTYPE xml [<!ENTITY % p \"<!ENTITY inner 'EXPANDED'>\"> %p;]>", "&inner;"
    ),
    "billion-laughs": lambda url: _billion_laughs(),
    "quadratic-blowup": lambda url: _quadratic_blowup(),
    "internal-entity": lambda url: _with_doctype('<!DOCTYPE xml [<!ENTITY e "EXPANDED">]>', "&e;"),
    "doctype-alone": lambda url: _with_doctype("<!DOCTYPE xml>"),
    "nesting-10000": lambda url: _deep_nesting(),
    "nesting-10000-unclosed": lambda url: b"<xml>" + b"<n>" * 10_000,
    "undefined-entity": lambda url: _with_doctype("", "&undefined;"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_xml_is_400_fast_and_nothing_is_expanded_or_fetched(client, listener, name):
    body = HOSTILE[name](listener)
    with handlers_run() as calls:
        start = time.monotonic()
        response = post(client, body)
        elapsed = time.monotonic() - start
    assert response.status_code == 400, response.get_data()[:300]
    assert elapsed < FAST, elapsed
    answer = response.get_data()
    assert len(answer) < 1000
    for leaked in (b"root:", b"lollollol", b"BBBBBBBB", b"EXPANDED", b"FETCHED"):
        assert leaked not in answer
    assert calls == []
    assert _Recorder.hits == []
    assert_echo(client, f"after {name}")


@pytest.mark.parametrize(
    "name", ["xxe-file", "xxe-http", "external-dtd", "parameter-entity-http", "billion-laughs", "nesting-10000"]
)
def test_hostile_xml_inside_a_valid_envelope_is_400(client, envelope, listener, name):
    with handlers_run() as calls:
        start = time.monotonic()
        response = post_safe(client, HOSTILE[name](listener), envelope)
        assert time.monotonic() - start < FAST
    assert response.status_code == 400
    assert calls == []
    assert _Recorder.hits == []


@pytest.mark.parametrize("name", ["xxe-http", "billion-laughs", "nesting-10000"])
def test_hostile_outer_envelope_is_400(client, listener, name):
    """The safe-mode envelope itself is parsed as carefully as a plaintext push."""
    query = signed_query(TOKEN)
    body = HOSTILE[name](listener).replace(b"</xml>", b"<Encrypt>QUJD</Encrypt></xml>")
    query.update(encrypt_type="aes", msg_signature=crypto.sign(TOKEN, query["timestamp"], query["nonce"], "QUJD"))
    start = time.monotonic()
    response = post(client, body, query)
    assert time.monotonic() - start < FAST
    assert response.status_code == 400
    assert _Recorder.hits == []


def test_xinclude_is_not_processed(client, listener):
    body = text_xml("x").replace(
        b"<![CDATA[x]]>",
        f'<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="{listener}/xinclude" parse="text"/>'.encode(),
    )
    response = post(client, body)
    assert response.status_code in (200, 400)
    assert b"FETCHED" not in response.get_data()
    assert _Recorder.hits == []


class _CountingStream(io.BytesIO):
    """A request body that counts how much of it the server read."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.consumed = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.consumed += len(chunk)
        return chunk

    def readinto(self, buffer) -> int:
        count = super().readinto(buffer)
        self.consumed += count
        return count

    def readline(self, size: int | None = -1) -> bytes:
        line = super().readline(size)
        self.consumed += len(line)
        return line


FIVE_MB = 5 * 1024 * 1024


def test_five_megabytes_with_content_length_is_413_without_reading_it(client):
    stream = _CountingStream(b"<xml>" + b"a" * FIVE_MB + b"</xml>")
    with handlers_run() as calls:
        start = time.monotonic()
        response = client.post(f"{PATH}?{urlencode(signed_query(TOKEN))}", input_stream=stream, content_type="text/xml")
        elapsed = time.monotonic() - start
    assert response.status_code == 413
    assert elapsed < FAST
    assert stream.consumed <= MAX_BODY
    assert calls == []
    assert_echo(client, "after 5 MB")


def test_body_one_byte_over_the_limit_is_413(client):
    body = text_push("limit")
    body = body.replace(b"</xml>", b" " * (MAX_BODY + 1 - len(body)) + b"</xml>")
    assert len(body) == MAX_BODY + 1
    assert post(client, body).status_code == 413
    exact = body.replace(b" </xml>", b"</xml>")
    assert len(exact) == MAX_BODY
    assert post(client, exact).status_code == 200


def _post_chunked(client, data: bytes):
    """A body with Transfer-Encoding: chunked and no Content-Length, as a WSGI server hands it on."""
    stream = _CountingStream(data)
    response = client.post(
        f"{PATH}?{urlencode(signed_query(TOKEN))}",
        input_stream=stream,
        content_type="text/xml",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    return response, stream


def test_small_chunked_body_is_read(client):
    response, _ = _post_chunked(client, text_push("chunked"))
    assert response.status_code == 200
    assert etree.fromstring(response.get_data()).findtext("Content") == "chunked"


def test_five_megabytes_chunked_is_413(client):
    start = time.monotonic()
    response, stream = _post_chunked(client, b"<xml>" + b"a" * FIVE_MB + b"</xml>")
    assert time.monotonic() - start < FAST
    assert stream.consumed <= MAX_BODY + 1
    assert response.status_code == 413


def test_chunked_push_padded_past_the_limit_is_413_and_not_handled(client):
    with handlers_run() as calls:
        response, _ = _post_chunked(client, text_push("padded") + b" " * FIVE_MB)
    assert (response.status_code, calls) == (413, [])


# --- a real gunicorn ------------------------------------------------------------------------


def _children(pid: int) -> set[int]:
    children = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[1] == str(pid):
            children.add(int(entry))
    return children


def _http(port: int, method: str, target: str, body: bytes | None = None, timeout: float = 5.0):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, target, body=body, headers={"Content-Type": "text/xml"} if body else {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


class _Gunicorn:
    def __init__(self, process: subprocess.Popen, port: int) -> None:
        self.process, self.port = process, port

    def workers(self) -> set[int]:
        return _children(self.process.pid)

    def target(self, **extra: str) -> str:
        return f"{PATH}?{urlencode(signed_query(TOKEN, **extra))}"


@pytest.fixture(scope="module")
def gunicorn(tmp_path_factory):
    directory = tmp_path_factory.mktemp("gunicorn")
    overrides = {"WECHAT_TOKEN": TOKEN, "WECHAT_APP_ID": APP_ID, "WECHAT_ENCODING_AES_KEY": AES_KEY}
    with serve(directory, GUNICORN_WORKERS="1", **overrides) as served:
        yield _Gunicorn(served.process, served.port)


def _send_streaming(port: int, target: str, size: int, chunked: bool) -> tuple[int | None, float, bytes]:
    """Start sending ``size`` bytes and return (status, seconds to the status line, head of the answer)
    without waiting for the upload to finish."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
    head = (
        f"POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\n{framing}\r\nConnection: close\r\n\r\n"
    )
    stop = threading.Event()

    def upload():
        piece = b"<xml>" + b"a" * 65531
        sent = 0
        try:
            while sent < size and not stop.is_set():
                n = min(len(piece), size - sent)
                sock.sendall(f"{n:x}\r\n".encode() + piece[:n] + b"\r\n" if chunked else piece[:n])
                sent += n
            if chunked and not stop.is_set():
                sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass

    start = time.monotonic()
    sock.sendall(head.encode())
    uploader = threading.Thread(target=upload, daemon=True)
    uploader.start()
    received = b""
    status = None
    try:
        while b"\r\n" not in received and time.monotonic() - start < 10:
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                break
            except OSError:
                break
            if not chunk:
                break
            received += chunk
        elapsed = time.monotonic() - start
        if received.startswith(b"HTTP/1."):
            status = int(received.split(b" ", 2)[1])
    finally:
        stop.set()
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()
        uploader.join(5)
    return status, elapsed, received[:200]


def test_gunicorn_survives_hostile_requests(gunicorn):
    workers = gunicorn.workers()
    assert len(workers) == 1

    for name, body in (("billion-laughs", _billion_laughs()), ("nesting-10000", _deep_nesting())):
        start = time.monotonic()
        status, answer = _http(gunicorn.port, "POST", gunicorn.target(), body)
        assert time.monotonic() - start < FAST, name
        assert status == 400, (name, answer)
        assert b"lollol" not in answer

    status, elapsed, answer = _send_streaming(gunicorn.port, gunicorn.target(), FIVE_MB, chunked=False)
    assert status == 413, answer
    assert elapsed < FAST

    status, answer = _http(gunicorn.port, "POST", gunicorn.target(), text_push("still here"))
    assert status == 200, answer
    assert etree.fromstring(answer).findtext("Content") == "still here"
    assert _http(gunicorn.port, "GET", "/healthz")[0] == 200
    assert gunicorn.workers() == workers, "the worker was replaced"
    assert gunicorn.process.poll() is None


def test_gunicorn_verifies_and_refuses(gunicorn):
    status, answer = _http(gunicorn.port, "GET", gunicorn.target(echostr="hello-gunicorn"))
    assert (status, answer) == (200, b"hello-gunicorn")
    status, _ = _http(
        gunicorn.port, "POST", f"{PATH}?signature=00&timestamp={int(time.time())}&nonce=1", text_push("x")
    )
    assert status == 403


def test_gunicorn_five_megabytes_chunked_is_413(gunicorn):
    workers = gunicorn.workers()
    status, elapsed, answer = _send_streaming(gunicorn.port, gunicorn.target(), FIVE_MB, chunked=True)
    assert gunicorn.workers() == workers
    assert status == 413, answer
