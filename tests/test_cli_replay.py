"""`flask --app wsgi wechat replay`: a recorded push, signed as WeChat would, and its reply."""

from __future__ import annotations

from lxml import etree

from tests.conftest import FIXTURES, make_app
from tests.servers import serve


def test_replay_posts_to_the_local_app_and_prints_the_reply(tmp_path):
    app = make_app(tmp_path)
    result = app.test_cli_runner().invoke(args=["wechat", "replay", str(FIXTURES / "text.xml")])
    assert result.exit_code == 0, result.output
    reply = etree.fromstring(result.output.strip().encode())
    assert reply.findtext("MsgType") == "text"
    assert reply.findtext("Content") == etree.parse(str(FIXTURES / "text.xml")).findtext("Content").strip()


def test_replay_encrypted_prints_the_decrypted_reply(tmp_path):
    app = make_app(tmp_path)
    result = app.test_cli_runner().invoke(args=["wechat", "replay", "--encrypt", str(FIXTURES / "image.xml")])
    assert result.exit_code == 0, result.output
    reply = etree.fromstring(result.output.strip().encode())
    assert reply.findtext("MsgType") == "image"
    assert reply.findtext("Image/MediaId") == etree.parse(str(FIXTURES / "image.xml")).findtext("MediaId").strip()


def test_replay_of_an_event_without_reply_prints_success(tmp_path):
    app = make_app(tmp_path)
    result = app.test_cli_runner().invoke(args=["wechat", "replay", str(FIXTURES / "event_click.xml")])
    assert result.exit_code == 0
    assert result.output.strip() == "success"


def test_replay_to_a_running_server(tmp_path):
    with serve(tmp_path) as served:
        base_url = served.base_url
        app = make_app(tmp_path / "cli")
        for extra in ([], ["--encrypt"]):
            result = app.test_cli_runner().invoke(
                args=["wechat", "replay", *extra, "--url", f"{base_url}/wechat", str(FIXTURES / "voice.xml")]
            )
            assert result.exit_code == 0, result.output
            assert etree.fromstring(result.output.strip().encode()).findtext("MsgType") == "voice"


def test_replay_reports_a_refusal_with_a_non_zero_exit(tmp_path):
    app = make_app(tmp_path)
    bad = tmp_path / "bad.xml"
    bad.write_text("<xml><ToUserName>only this</ToUserName></xml>")
    result = app.test_cli_runner().invoke(args=["wechat", "replay", str(bad)])
    assert result.exit_code != 0
    assert "400" in result.output


def test_replay_in_safe_mode_encrypts_without_being_asked(tmp_path):
    """Safe mode refuses plaintext, so replay encrypts the push as WeChat would."""
    app = make_app(tmp_path, WECHAT_MESSAGE_MODE="safe")
    result = app.test_cli_runner().invoke(args=["wechat", "replay", str(FIXTURES / "text.xml")])
    assert result.exit_code == 0, result.output
    assert etree.fromstring(result.output.strip().encode()).findtext("MsgType") == "text"


def test_a_repeat_answered_from_the_journal_carries_the_time_it_is_sent(tmp_path):
    import time

    from app.testing import PushClient, text_push

    app = make_app(tmp_path)
    client, xml = PushClient(app), text_push("again")
    first = int(client.post(xml).field("CreateTime"))
    time.sleep(1.1)
    assert int(client.post(xml).field("CreateTime")) > first
