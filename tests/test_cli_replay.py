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
