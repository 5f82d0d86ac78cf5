"""`flask --app wsgi wechat replay`: a recorded push, signed as WeChat would, and its reply."""

from __future__ import annotations

import shutil
import textwrap
import time

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


# --- a recorded push taken as new, or as a retry -------------------------------------

BOT = """
from app.signals import event_received, message_received

VERSION = {version!r}


@message_received.connect_via("text")
def answer(sender, message, **extra):
    return f"{{VERSION}}: {{message.content}}"


@event_received.connect_via("masssendjobfinish")
def finished(sender, event, **extra):
    with open({runs!r}, "a") as runs:
        runs.write(f"{{VERSION}} {{event.fields['MsgID']}} {{event.create_time}}\\n")
"""


def served_bot(tmp_path, version: str):
    """The app under gunicorn with the plugin ``bot`` at ``version``, on the same store each time."""
    plugins = tmp_path / "plugins"
    plugins.mkdir(exist_ok=True)
    (plugins / "bot.py").write_text(textwrap.dedent(BOT.format(version=version, runs=str(tmp_path / "runs.txt"))))
    return serve(tmp_path, WECHAT_PLUGINS="bot", PYTHONPATH=str(plugins))


def replay(tmp_path, base_url: str, *args: str):
    app = make_app(tmp_path / "cli")
    return app.test_cli_runner().invoke(args=["wechat", "replay", "--url", f"{base_url}/wechat", *args])


def content_of(result) -> str:
    assert result.exit_code == 0, result.output
    return etree.fromstring(result.stdout.strip().encode()).findtext("Content")


def test_after_a_plugin_changes_a_replay_gets_the_new_reply_and_a_retry_the_old(tmp_path):
    text = str(FIXTURES / "text.xml")
    recorded = etree.parse(text).findtext("Content").strip()
    with served_bot(tmp_path, "v1") as served:
        assert content_of(replay(tmp_path, served.base_url, text)) == f"v1: {recorded}"
        assert content_of(replay(tmp_path, served.base_url, "--as-retry", text)) == f"v1: {recorded}"
    with served_bot(tmp_path, "v2") as served:
        assert content_of(replay(tmp_path, served.base_url, text)) == f"v2: {recorded}"
        assert content_of(replay(tmp_path, served.base_url, text)) == f"v2: {recorded}"
        # As recorded, the push is the one the server answered before: its first reply, from the journal.
        assert content_of(replay(tmp_path, served.base_url, "--as-retry", text)) == f"v1: {recorded}"


def test_a_replayed_event_gets_a_new_create_time_and_keeps_its_msg_id(tmp_path):
    event = str(FIXTURES / "event_masssendjobfinish.xml")
    started = int(time.time())
    with served_bot(tmp_path, "v1") as served:
        for args in ([event], [event], ["--as-retry", event], ["--as-retry", event]):
            result = replay(tmp_path, served.base_url, *args)
            assert result.exit_code == 0, result.output
            assert result.stdout.strip() == "success"
    runs = [line.split() for line in (tmp_path / "runs.txt").read_text().splitlines()]
    assert len(runs) == 3  # the second replay as recorded is a retry of the first: no handler runs
    assert {msg_id for _, msg_id, _ in runs} == {"2247498513"}
    new, again, as_recorded = (int(create_time) for _, _, create_time in runs)
    assert started <= new < again
    assert as_recorded == 1719302415


# --- a folder --------------------------------------------------------------------------


def test_a_folder_is_replayed_file_by_file_and_a_failure_does_not_stop_the_rest(tmp_path):
    folder = tmp_path / "pushes"
    folder.mkdir()
    for name in ("text.xml", "image.xml", "event_click.xml", "link.xml"):
        shutil.copy(FIXTURES / name, folder / name)
    (folder / "broken.xml").write_text("<xml><ToUserName>only this</ToUserName></xml>")
    (folder / "notes.txt").write_text("not a push")
    with serve(tmp_path) as served:
        result = replay(tmp_path, served.base_url, str(folder))
    assert result.exit_code != 0
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["broken.xml", "event_click.xml", "image.xml", "link.xml", "text.xml"]
    status = {line.split()[0]: line.split()[1] for line in lines}
    assert status == {
        "broken.xml": "400",
        "event_click.xml": "200",
        "image.xml": "200",
        "link.xml": "200",
        "text.xml": "200",
    }
    broken, click, image, link, text = lines
    assert "FAILED" in broken
    assert click.split()[2:] == ["success"]
    media_id = etree.parse(str(FIXTURES / "image.xml")).findtext("MediaId").strip()
    assert image.split()[2:] == ["image:", media_id]
    assert link.split()[2:5] == ["news:", "1", "article(s),"]
    content = etree.parse(str(FIXTURES / "text.xml")).findtext("Content").strip()
    assert text.split(None, 2)[2] == f"text: {content}"
    assert "replaying" in result.stderr  # the progress bar
    assert "1 of 5 pushes failed" in result.stderr


def test_a_folder_replayed_encrypted_when_all_goes_well_exits_zero(tmp_path):
    app = make_app(tmp_path)
    folder = tmp_path / "pushes"
    folder.mkdir()
    for name in ("voice.xml", "event_subscribe.xml"):
        shutil.copy(FIXTURES / name, folder / name)
    result = app.test_cli_runner().invoke(args=["wechat", "replay", "--encrypt", str(folder)])
    assert result.exit_code == 0, result.output
    [subscribe, voice] = result.stdout.splitlines()
    assert subscribe.split()[:3] == ["event_subscribe.xml", "200", "text:"]
    assert voice.split()[:3] == ["voice.xml", "200", "voice:"]


def test_a_folder_without_pushes_is_refused(tmp_path):
    app = make_app(tmp_path)
    (tmp_path / "empty").mkdir()
    result = app.test_cli_runner().invoke(args=["wechat", "replay", str(tmp_path / "empty")])
    assert result.exit_code != 0
    assert "no *.xml file" in result.output
