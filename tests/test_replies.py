"""Passive replies render to well-formed XML that carries any content exactly."""

from __future__ import annotations

import logging
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from app.replies import (
    Article,
    ImageReply,
    MusicReply,
    NewsReply,
    TextReply,
    TransferCustomerServiceReply,
    VideoReply,
    VoiceReply,
    as_reply,
    render,
)
from app.signals import event_received, message_received
from app.testing import event_push, text_push

XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def rendered(reply, **kwargs) -> etree._Element:
    return etree.fromstring(render(reply, "o_follower", "gh_account", 1_700_000_000, **kwargs))


def test_text_reply():
    root = rendered(TextReply("hello"))
    assert [c.tag for c in root] == ["ToUserName", "FromUserName", "CreateTime", "MsgType", "Content"]
    assert root.findtext("ToUserName") == "o_follower"
    assert root.findtext("FromUserName") == "gh_account"
    assert root.findtext("CreateTime") == "1700000000"
    assert root.findtext("MsgType") == "text"
    assert root.findtext("Content") == "hello"


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (ImageReply("img-1"), {"MsgType": "image", "Image/MediaId": "img-1"}),
        (VoiceReply("voice-1"), {"MsgType": "voice", "Voice/MediaId": "voice-1"}),
        (VideoReply("vid-1"), {"MsgType": "video", "Video/MediaId": "vid-1", "Video/Title": None}),
        (VideoReply("vid-1", "标题", "说明"), {"Video/Title": "标题", "Video/Description": "说明"}),
        (
            MusicReply("thumb-1", "http://m/a.mp3", "http://m/a-hq.mp3", "Song", "Desc"),
            {
                "MsgType": "music",
                "Music/ThumbMediaId": "thumb-1",
                "Music/MusicUrl": "http://m/a.mp3",
                "Music/HQMusicUrl": "http://m/a-hq.mp3",
                "Music/Title": "Song",
                "Music/Description": "Desc",
            },
        ),
        (TransferCustomerServiceReply(), {"MsgType": "transfer_customer_service", "TransInfo/KfAccount": None}),
        (TransferCustomerServiceReply("kf2001@gh_account"), {"TransInfo/KfAccount": "kf2001@gh_account"}),
    ],
)
def test_media_and_transfer_replies(reply, expected):
    root = rendered(reply)
    for path, value in expected.items():
        assert root.findtext(path) == value, path


def test_news_reply_lists_its_articles():
    articles = [Article(f"title {i}", f"desc {i}", f"https://example.com/{i}", f"https://img/{i}") for i in range(3)]
    root = rendered(NewsReply(articles))
    assert root.findtext("MsgType") == "news"
    assert root.findtext("ArticleCount") == "3"
    items = root.findall("Articles/item")
    assert [i.findtext("Title") for i in items] == ["title 0", "title 1", "title 2"]
    assert items[2].findtext("Url") == "https://example.com/2"
    assert items[2].findtext("PicUrl") == "https://img/2"


def test_news_reply_needs_an_article():
    with pytest.raises(ValueError):
        NewsReply([])


def test_news_reply_over_the_limit_is_truncated_with_a_logged_error(caplog):
    articles = [Article(f"t{i}") for i in range(10)]
    with caplog.at_level(logging.ERROR):
        root = rendered(NewsReply(articles))
    assert root.findtext("ArticleCount") == "8"
    assert len(root.findall("Articles/item")) == 8
    assert any("10 articles" in r.getMessage() for r in caplog.records)


def test_a_receiver_connected_later_does_not_override_the_first_reply(plain):
    def late(sender, message, **extra):
        return NewsReply([Article("late")])

    with message_received.connected_to(late, sender="text"):
        reply = plain.post(text_push("echo first"))
    assert reply.msg_type == "text"
    assert reply.content == "echo first"


def test_news_limits_depend_on_what_is_answered(tmp_path, caplog):
    from app.testing import PushClient
    from tests.conftest import make_app

    app = make_app(tmp_path, WECHAT_PLUGINS="")
    client = PushClient(app)

    def many(sender, **extra):
        return NewsReply([Article(f"a{i}") for i in range(9)])

    with message_received.connected_to(many), event_received.connected_to(many), caplog.at_level(logging.ERROR):
        to_message = client.post(text_push("hi"))
        to_event = client.post(event_push("CLICK", {"EventKey": "news"}))
    assert to_message.field("ArticleCount") == "1"
    assert to_event.field("ArticleCount") == "8"
    assert len([r for r in caplog.records if "articles" in r.getMessage()]) == 2


def test_special_characters_round_trip():
    content = "a ]]> b <c> & d \"e\" 'f' 😀 𝄞 中文 \t\n\r end"
    root = etree.fromstring(render(TextReply(content), "o_]]>", "gh_<&>", 1))
    assert root.findtext("Content") == content.replace("\r", "\n")  # XML normalises CR to LF
    assert root.findtext("ToUserName") == "o_]]>"
    assert root.findtext("FromUserName") == "gh_<&>"


def test_forbidden_control_characters_are_removed():
    root = etree.fromstring(render(TextReply("a\x00b\x01c\x1fd\ufffee\ud800f"), "o", "g", 1))
    assert root.findtext("Content") == "abcdef"


def test_str_is_a_text_reply_and_other_values_are_refused():
    assert as_reply("hi") == TextReply("hi")
    assert as_reply(None) is None
    with pytest.raises(TypeError):
        as_reply(42)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_any_unicode_text_reply_round_trips(content):
    root = etree.fromstring(render(TextReply(content), "o_follower", "gh_account", 1))
    expected = XML_FORBIDDEN.sub("", content).replace("\r\n", "\n").replace("\r", "\n")
    assert root.findtext("Content") == expected


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1).filter(lambda s: s.strip()))
def test_any_unicode_text_survives_the_echo_in_safe_mode(app, content):
    from app.testing import PushClient

    reply = PushClient(app, safe_mode=True).post(text_push(content))
    expected = XML_FORBIDDEN.sub("", content).replace("\r\n", "\n").replace("\r", "\n")
    if not expected.strip():
        assert reply.body == b"success"  # WeChat never sends an empty message; nothing to echo
        return
    assert reply.content == expected
