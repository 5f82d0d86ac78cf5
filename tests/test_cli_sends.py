"""``wechat send ...`` for every customer-service message type, with ``--kf-account``, against the fake WeChat API."""

from __future__ import annotations

import json

import pytest

from tests.api_fixtures import make_app

ALICE = "oABCD1xYz9Kq3mT7wVb2RsLpN4eG"
SEND = "message/custom/send"
KF = {"customservice": {"kf_account": "kf2001@gh_test"}}


@pytest.fixture
def wechat(tmp_path, fake):
    runner = make_app(tmp_path, fake).test_cli_runner()
    return lambda *args: runner.invoke(args=["wechat", *args])


def only(requests):
    assert len(requests) == 1, requests
    return requests[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["mpnews", ALICE, "NEWS_1"], {"msgtype": "mpnews", "mpnews": {"media_id": "NEWS_1"}}),
        (["mpnewsarticle", ALICE, "ART_1"], {"msgtype": "mpnewsarticle", "mpnewsarticle": {"article_id": "ART_1"}}),
        (
            [
                "msgmenu",
                ALICE,
                "--head",
                "满意吗？",
                "--item",
                "101",
                "满意",
                "--item",
                "102",
                "不满意",
                "--tail",
                "谢谢",
            ],
            {
                "msgtype": "msgmenu",
                "msgmenu": {
                    "head_content": "满意吗？",
                    "list": [{"id": "101", "content": "满意"}, {"id": "102", "content": "不满意"}],
                    "tail_content": "谢谢",
                },
            },
        ),
        (["wxcard", ALICE, "CARD_1"], {"msgtype": "wxcard", "wxcard": {"card_id": "CARD_1"}}),
        (
            ["miniprogrampage", ALICE, "wxmini", "pages/a?b=1", "THUMB_1", "--title", "小程序"],
            {
                "msgtype": "miniprogrampage",
                "miniprogrampage": {
                    "title": "小程序",
                    "appid": "wxmini",
                    "pagepath": "pages/a?b=1",
                    "thumb_media_id": "THUMB_1",
                },
            },
        ),
        (
            ["link", ALICE, "标题", "https://e.example/a", "https://e.example/a.jpg", "--description", "描述"],
            {
                "msgtype": "link",
                "link": {
                    "title": "标题",
                    "description": "描述",
                    "url": "https://e.example/a",
                    "thumb_url": "https://e.example/a.jpg",
                },
            },
        ),
    ],
    ids=["mpnews", "mpnewsarticle", "msgmenu", "wxcard", "miniprogrampage", "link"],
)
def test_each_new_type_with_and_without_a_kf_account(fake, wechat, args, expected):
    output = wechat("send", *args).output
    assert f"sent {args[0]} to {ALICE}\n" == output

    output = wechat("send", *args, "--kf-account", "kf2001@gh_test").output
    assert f"sent {args[0]} to {ALICE} as kf2001@gh_test\n" == output

    plain, as_kf = fake.requests_to(SEND)
    assert plain.json == {"touser": ALICE, **expected}
    assert as_kf.json == {"touser": ALICE, **expected, **KF}


@pytest.mark.parametrize(
    "args",
    [
        ["text", ALICE, "hi"],
        ["image", ALICE, "M"],
        ["voice", ALICE, "M"],
        ["video", ALICE, "M", "T"],
        ["music", ALICE, "https://m.example/a.mp3", "https://m.example/b.mp3", "T"],
    ],
    ids=["text", "image", "voice", "video", "music"],
)
def test_the_older_types_take_a_kf_account_too(fake, wechat, args):
    result = wechat("send", *args, "--kf-account", "kf2001@gh_test")

    assert result.exit_code == 0, result.output
    assert only(fake.requests_to(SEND)).json["customservice"] == {"kf_account": "kf2001@gh_test"}


def test_a_news_article_without_a_title(fake, wechat, tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps([{"description": "只有描述", "url": "https://e.example/n"}]), encoding="utf-8")

    assert wechat("send", "news", ALICE, str(path)).exit_code == 0

    article = {"description": "只有描述", "url": "https://e.example/n"}
    assert only(fake.requests_to(SEND)).json["news"] == {"articles": [article]}


def test_a_menu_needs_an_item(fake, wechat):
    result = wechat("send", "msgmenu", ALICE, "--head", "h")

    assert result.exit_code == 2 and "--item" in result.output
    assert fake.requests == []


def test_typing_and_its_cancel(fake, wechat):
    assert wechat("send", "typing", ALICE).output == f"sent typing to {ALICE}\n"
    assert wechat("send", "typing", ALICE, "--cancel").output == f"cancelled typing to {ALICE}\n"

    commands = [request.json for request in fake.requests_to("message/custom/typing")]
    assert commands == [{"touser": ALICE, "command": "Typing"}, {"touser": ALICE, "command": "CancelTyping"}]


def test_a_refused_card_shows_the_errcode(fake, wechat):
    fake.fail(SEND, 45015)

    result = wechat("send", "wxcard", ALICE, "CARD_1")

    assert result.exit_code == 1
    assert "errcode 45015" in result.output and "Traceback" not in result.output
