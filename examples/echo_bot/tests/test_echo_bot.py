"""The echo bot, tested the way WeChat talks to it: a push posted, its reply read, the API calls seen.

The fixtures come with wechat-callback (``wechat_client``, ``wechat_api``, ...); the plugin
they load is named in pyproject.toml (``wechat_plugins = "echo_bot"``).
"""

from pathlib import Path

import echo_bot
import pytest

PUSHES = Path(__file__).parent / "pushes"  # pushes recorded from the account, one file each


def test_a_text_is_said_back(wechat_client):
    assert wechat_client.text("hello").content == "You said: hello"


def test_in_safe_mode_the_push_and_the_reply_are_encrypted(wechat_client):
    answer = wechat_client.text("hello", safe=True)
    assert answer.raw.startswith(b"<xml><Encrypt>")
    assert answer.content == "You said: hello"


def test_a_new_follower_is_greeted(wechat_client):
    assert wechat_client.post("subscribe").content == echo_bot.GREETING


def test_a_recorded_push(wechat_client):
    assert wechat_client.post(PUSHES / "question.xml").content == "You said: 周末营业吗？"


def test_contact_us_goes_out_through_the_api(wechat_client, wechat_api):
    answer = wechat_client.post("click")  # the sample click is on MENU_CONTACT_US
    assert answer.success
    [sent] = wechat_api.wait_for_sends(1)
    assert sent["msgtype"] == "text"
    assert sent["text"] == {"content": echo_bot.CONTACT}


@pytest.mark.parametrize("push", ["image", "location", "unsubscribe", "view"])
def test_anything_else_gets_no_reply(wechat_client, wechat_api, push):
    assert wechat_client.post(push).success
    assert wechat_api.sent == []
