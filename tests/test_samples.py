"""The sample pushes shipped in the package, and a recorded push made new (``fresh_push``)."""

from __future__ import annotations

import time

import pytest
from lxml import etree

from app.signals import event_received, message_received
from app.testing import PushClient, fresh_push, sample, sample_names, sample_path, text_push
from app.testing.kit import WeChatTestClient
from tests.conftest import FIXTURES, make_app


def test_a_sample_of_every_recorded_type_ships_in_the_package():
    recorded = sorted(path.name.removesuffix(".xml") for path in FIXTURES.glob("*.xml"))
    assert sample_names() == recorded
    for name in recorded:
        assert sample(name) == (FIXTURES / f"{name}.xml").read_bytes(), name


@pytest.mark.parametrize(
    ("name", "file"),
    [
        ("text", "text.xml"),
        ("text.xml", "text.xml"),
        ("subscribe", "event_subscribe.xml"),
        ("MASSSENDJOBFINISH", "event_masssendjobfinish.xml"),
        ("event_click", "event_click.xml"),
    ],
)
def test_a_sample_is_found_by_its_file_or_event_name(name, file):
    assert sample_path(name).name == file
    assert sample(name) == (FIXTURES / file).read_bytes()


def test_an_unknown_sample_is_refused_with_the_names_there_are():
    with pytest.raises(LookupError) as refused:
        sample("txet")
    assert "'txet'" in str(refused.value) and "text" in str(refused.value) and "event_subscribe" in str(refused.value)


def fields(xml: bytes) -> dict[str, str | None]:
    return {element.tag: element.text for element in etree.fromstring(xml)}


def test_a_fresh_message_has_a_new_msg_id_and_nothing_else_changed():
    recorded = sample("text")
    first, second = fresh_push(recorded), fresh_push(recorded)
    assert len({fields(recorded)["MsgId"], fields(first)["MsgId"], fields(second)["MsgId"]}) == 3
    assert 10**18 <= int(fields(first)["MsgId"]) < 2**63
    without_id = [{k: v for k, v in fields(xml).items() if k != "MsgId"} for xml in (recorded, first)]
    assert without_id[0] == without_id[1]
    assert b"<![CDATA[" in first  # the text stays in its CDATA section


def test_a_fresh_event_has_a_new_create_time_and_keeps_its_msg_id():
    recorded = sample("masssendjobfinish")
    before = int(time.time())
    first, second = fresh_push(recorded), fresh_push(recorded)
    assert fields(first)["MsgID"] == fields(recorded)["MsgID"] == "2247498513"
    assert int(fields(first)["CreateTime"]) >= before
    assert fields(second)["CreateTime"] != fields(first)["CreateTime"]  # made new twice within a second
    assert etree.fromstring(first).findtext("ArticleUrlResult/ResultList/item/ArticleUrl") == etree.fromstring(
        recorded
    ).findtext("ArticleUrlResult/ResultList/item/ArticleUrl")
    assert "MsgId" not in fields(first)  # an event gets no MsgId


@pytest.mark.parametrize(
    "body",
    [b"not xml at all", b"<xml><ToUserName>x</ToUserName></xml>", b"<xml><Encrypt><![CDATA[abc]]></Encrypt></xml>"],
)
def test_what_is_not_a_push_is_left_as_it_is(body):
    assert fresh_push(body) == body


def test_every_sample_is_taken_in_plaintext_and_in_safe_mode(tmp_path):
    client = WeChatTestClient(make_app(tmp_path))
    for name in sample_names():
        for safe in (False, True):
            answer = client.post(name, safe=safe)
            assert answer.status == 200, (name, safe, answer.raw)
            assert answer.success or answer.xml is not None


def test_a_sample_posted_twice_runs_twice_and_the_same_push_twice_runs_once(tmp_path):
    """The client makes a sample or a file new each time; XML given as such is posted as it is."""
    texts, follows = [], []

    def count_text(sender, message, **extra):
        texts.append(message.msg_id)

    def count_follow(sender, event, **extra):
        follows.append(event.create_time)

    client = WeChatTestClient(make_app(tmp_path))
    with (
        message_received.connected_to(count_text, sender="text"),
        event_received.connected_to(count_follow, sender="subscribe"),
    ):
        for _ in range(2):
            assert client.post("text").status == 200
            assert client.post(FIXTURES / "text.xml").status == 200
            assert client.post("subscribe").status == 200
        push = text_push("once")
        assert client.post(push).content == client.post(push).content == "once"
    assert len(set(texts)) == 5
    assert len(set(follows)) == 2


def test_a_push_client_posts_a_fresh_sample_in_safe_mode(tmp_path):
    answer = PushClient(make_app(tmp_path), safe_mode=True).post(fresh_push(sample("image")))
    assert answer.raw.startswith(b"<xml><Encrypt>")
    assert answer.field("Image/MediaId") == etree.fromstring(sample("image")).findtext("MediaId").strip()
