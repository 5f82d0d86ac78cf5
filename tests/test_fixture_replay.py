"""Every recorded push replayed through the app, in plaintext and in safe mode:
handlers get the typed push, and the echo plugin answers each as :func:`expected_reply` says."""

from __future__ import annotations

import pytest

from app.messages import parse
from app.plugins.echo import GREETING
from app.signals import event_received, message_received
from app.testing import PushClient
from tests.conftest import FIXTURES, fixture

ALL_FIXTURES = sorted(path.name for path in FIXTURES.glob("*.xml"))


def expected_reply(name: str, push) -> dict[str, str] | None:
    """What the echo plugin answers, as reply fields; None for ``success``."""
    kind = name.removesuffix(".xml")
    if kind == "text":
        return {"MsgType": "text", "Content": push.content}
    if kind == "image":
        return {"MsgType": "image", "Image/MediaId": push.media_id}
    if kind == "voice":
        return {"MsgType": "voice", "Voice/MediaId": push.media_id}
    if kind in ("video", "shortvideo"):
        return {"MsgType": "video", "Video/MediaId": push.media_id}
    if kind == "location":
        f = push.fields
        return {"MsgType": "text", "Content": f"{f['Location_X']},{f['Location_Y']} {f['Label']}"}
    if kind == "link":
        return {
            "MsgType": "news",
            "ArticleCount": "1",
            "Articles/item/Title": push.title,
            "Articles/item/Description": push.description,
            "Articles/item/Url": push.url,
        }
    if kind in ("event_subscribe", "event_subscribe_qrscene"):
        return {"MsgType": "text", "Content": GREETING}
    return None


def test_every_message_and_event_type_has_a_fixture():
    from app.messages import EVENT_TYPES, MESSAGE_TYPES

    parsed = [parse(fixture(name)) for name in ALL_FIXTURES]
    assert set(MESSAGE_TYPES) <= {p.msg_type for p in parsed}
    assert set(EVENT_TYPES) <= {p.name for p in parsed if p.msg_type == "event"}


@pytest.mark.parametrize("safe_mode", [False, True], ids=["plaintext", "safe"])
@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_replayed_fixture_is_parsed_dispatched_and_answered(app, name, safe_mode):
    xml = fixture(name)
    expected_push = parse(xml)
    seen = []

    def capture(sender, **kwargs):
        seen.append((sender, kwargs.get("message") or kwargs.get("event")))

    with message_received.connected_to(capture), event_received.connected_to(capture):
        reply = PushClient(app, safe_mode=safe_mode).post(xml)

    assert reply.status == 200
    assert len(seen) == 1
    sender, push = seen[0]
    assert type(push) is type(expected_push)
    assert push == expected_push
    assert sender == (expected_push.name if expected_push.msg_type == "event" else expected_push.msg_type)

    expected = expected_reply(name, expected_push)
    if expected is None:
        assert reply.body == b"success"
        return
    assert reply.field("ToUserName") == expected_push.from_user
    assert reply.field("FromUserName") == expected_push.to_user
    for path, value in expected.items():
        assert reply.field(path) == value, path
