"""The keyword auto-reply plugin: rules from a TOML or JSON file, checked at start-up, read again on change."""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import time
from pathlib import Path

import pytest

from app import SettingsError
from app.testing import PushClient, event_push, text_push
from tests.conftest import make_app

README = Path(__file__).resolve().parent.parent / "README.md"
_followers = itertools.count()

RULES_TOML = """
[[rules]]
text = "help"
reply = "the help text"

[[rules]]
prefix = "weather "
reply = { type = "text", content = "forecasts are on the menu" }

[[rules]]
regex = '^[0-9]{6}$'
reply = { type = "image", media_id = "IMAGE_ID" }

[[rules]]
text = "help"
reply = "never: the first rule that matches answers"

[[rules]]
text = "song"
reply = { type = "music", thumb_media_id = "THUMB", music_url = "https://example.com/a.mp3", title = "A song" }

[[rules]]
text = "voice"
reply = { type = "voice", media_id = "VOICE_ID" }

[[rules]]
text = "video"
reply = { type = "video", media_id = "VIDEO_ID", title = "A video" }

[[rules]]
text = "agent"
reply = { type = "transfer_customer_service" }

[[rules]]
click = "NEWS"
reply = { type = "news", articles = [{ title = "One", url = "https://example.com/1" }, { title = "Two" }] }

[[rules]]
subscribe = "shop"
reply = "followed at the shop"

[[rules]]
subscribe = true
reply = "followed"

[[rules]]
scan = "shop"
reply = "scanned the shop"
"""


def event(name: str, **fields: object) -> bytes:
    return event_push(name, fields, from_user=f"o_auto_{next(_followers)}")


def autoreply_app(tmp_path: Path, rules: Path, plugins: str = "app.plugins.autoreply"):
    return make_app(tmp_path, WECHAT_PLUGINS=plugins, WECHAT_AUTOREPLY_RULES=str(rules))


@pytest.fixture
def rules_toml(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text(RULES_TOML)
    return path


def test_rules_answer_texts_menu_keys_follows_and_scans_with_any_reply_type(tmp_path, rules_toml):
    client = PushClient(autoreply_app(tmp_path, rules_toml))
    assert client.post(text_push("help")).content == "the help text"
    assert client.post(text_push("weather Beijing")).content == "forecasts are on the menu"
    image = client.post(text_push("123456"))
    assert (image.msg_type, image.field("Image/MediaId")) == ("image", "IMAGE_ID")
    song = client.post(text_push("song"))
    assert (song.msg_type, song.field("Music/ThumbMediaId"), song.field("Music/Title")) == ("music", "THUMB", "A song")
    assert client.post(text_push("voice")).field("Voice/MediaId") == "VOICE_ID"
    assert client.post(text_push("video")).field("Video/Title") == "A video"
    assert client.post(text_push("agent")).msg_type == "transfer_customer_service"
    news = client.post(event("CLICK", EventKey="NEWS"))
    assert [item.findtext("Title") for item in news.xml.iter("item")] == ["One", "Two"]
    assert client.post(event("subscribe", EventKey="qrscene_shop", Ticket="T")).content == "followed at the shop"
    assert client.post(event("SUBSCRIBE")).content == "followed"
    assert client.post(event("SCAN", EventKey="shop", Ticket="T")).content == "scanned the shop"
    others = (text_push("help!"), text_push("1234567"), event("CLICK", EventKey="OTHER"), event("scan", EventKey="x"))
    for other in others:
        assert client.post(other).success


def test_json_rules_work_as_toml_ones_and_the_next_plugin_answers_what_no_rule_matches(tmp_path):
    path = tmp_path / "rules.json"
    path.write_text(json.dumps({"rules": [{"text": "hi", "reply": {"type": "text", "content": "hello"}}]}))
    client = PushClient(autoreply_app(tmp_path, path, plugins="app.plugins.autoreply,app.plugins.echo"))
    assert client.post(text_push("hi")).content == "hello"
    assert client.post(text_push("other")).content == "other"


def test_without_the_plugin_loaded_the_rules_answer_nothing(tmp_path, rules_toml):
    client = PushClient(autoreply_app(tmp_path, rules_toml, plugins=""))
    assert client.post(text_push("help")).success


BAD_RULES = [
    ('[[rules]]\ntext = "a"\n', "rule 1: has no reply"),
    (
        '[[rules]]\ntext = "a"\nreply = "x"\n[[rules]]\ntext = "b"\nprefix = "c"\nreply = "x"\n',
        "rule 2: needs exactly one",
    ),
    ('[[rules]]\nregex = "("\nreply = "x"\n', "rule 1: regex '(' does not compile"),
    ('[[rules]]\ntext = "a"\nreply = { type = "gif" }\n', "rule 1: reply type 'gif' is not one of text, image"),
    ('[[rules]]\ntext = "a"\nreply = { type = "image" }\n', "rule 1: image reply needs 'media_id'"),
    ('[[rules]]\ntext = "a"\nreply = { type = "text", content = "x", colour = "red" }\n', "has no field 'colour'"),
    ('[[rules]]\ntext = ""\nreply = "x"\n', "rule 1: text must be a string that is not empty"),
    ('[[rules]]\nsubscribe = false\nreply = "x"\n', "rule 1: subscribe must be true or a scene"),
    ('[[rules]]\ntext = "a"\nreply = 5\n', "rule 1: reply must be a string or a table"),
    ('[[rules]]\ntxt = "a"\nreply = "x"\n', "rule 1: unknown key 'txt'"),
    ('[[rule]]\ntext = "a"\nreply = "x"\n', "unknown key 'rule'"),
    ("[[rules]]\ntext = 'a'\nreply = { type = 'news', articles = [{ title = 'a' }, { title = 'b' }] }\n", "shows 1"),
    ('[[rules]]\nclick = "K"\nreply = { type = "news", articles = [{ url = "u" }] }\n', "article needs 'title'"),
    ("text = \n", "not valid TOML"),
]


@pytest.mark.parametrize(("content", "expected"), BAD_RULES)
def test_a_bad_rule_stops_start_up_with_one_line_naming_the_file_and_the_rule(tmp_path, content, expected):
    path = tmp_path / "rules.toml"
    path.write_text(content)
    with pytest.raises(SettingsError) as raised:
        autoreply_app(tmp_path, path)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"WECHAT_AUTOREPLY_RULES {path}")
    assert expected in message


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("rules.json", "{not json", "not valid JSON"),
        ("rules.json", "[]", "must hold an object"),
        ("rules.yaml", "rules: []", "must end in .toml or .json"),
        ("missing.toml", None, "cannot be read"),
        ("latin1.toml", "text = 'caf\xe9'".encode("latin-1"), "not valid TOML"),
        ("deep.json", "[" * 100000, "not valid JSON"),
    ],
)
def test_a_bad_or_missing_rules_file_stops_start_up(tmp_path, name, content, expected):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(SettingsError, match=f"^WECHAT_AUTOREPLY_RULES {re.escape(str(path))}: {expected}"):
        autoreply_app(tmp_path, path)


def rewrite(path: Path, content: str) -> None:
    """Write the file and move its modification time on, as an editor saving it a moment later would."""
    path.write_text(content)
    later = time.time() + 5
    os.utime(path, (later, later))


def wait_for(client: PushClient, text: str, expected: str | None) -> str | None:
    """Post ``text`` until its reply is ``expected`` (the file is looked at once a second), for at most 3 s."""
    deadline = time.monotonic() + 3
    while True:
        content = client.post(text_push(text)).content
        if content == expected or time.monotonic() > deadline:
            return content
        time.sleep(0.2)


def test_the_rules_are_read_again_when_the_file_changes(tmp_path, rules_toml):
    client = PushClient(autoreply_app(tmp_path, rules_toml))
    assert client.post(text_push("help")).content == "the help text"
    rewrite(rules_toml, '[[rules]]\ntext = "help"\nreply = "new help"\n')
    assert wait_for(client, "help", "new help") == "new help"
    assert client.post(text_push("weather x")).success  # the old rules are gone


def test_a_bad_file_on_change_is_logged_once_and_the_rules_read_before_stay(tmp_path, rules_toml, caplog):
    client = PushClient(autoreply_app(tmp_path, rules_toml))
    with caplog.at_level(logging.ERROR, logger="app.plugins.autoreply"):
        rewrite(rules_toml, '[[rules]]\ntext = "help"\nreply = { type = "gif" }\n')
        time.sleep(1.1)
        for _ in range(3):
            assert client.post(text_push("help")).content == "the help text"
        time.sleep(1.1)
        assert client.post(text_push("help")).content == "the help text"
    errors = [record.getMessage() for record in caplog.records if record.name == "app.plugins.autoreply"]
    assert len(errors) == 1
    assert f"{rules_toml}, rule 1: reply type 'gif'" in errors[0] and "keeping the 12 rules" in errors[0]
    assert "\n" not in errors[0]
    rewrite(rules_toml, '[[rules]]\ntext = "help"\nreply = "fixed"\n')
    assert wait_for(client, "help", "fixed") == "fixed"


def test_a_rules_file_removed_keeps_the_rules_read_before(tmp_path, rules_toml):
    client = PushClient(autoreply_app(tmp_path, rules_toml))
    rules_toml.unlink()
    time.sleep(1.1)
    assert client.post(text_push("help")).content == "the help text"


def test_the_readmes_rules_example_is_a_valid_rules_file(tmp_path):
    section = README.read_text().split("### Keyword auto-replies", 1)[1]
    example = re.search(r"```toml\n(.*?)```", section, re.S).group(1)
    path = tmp_path / "rules.toml"
    path.write_text(example)
    client = PushClient(autoreply_app(tmp_path, path))
    assert client.post(text_push("help")).content == "Send 'weather CITY', or tap the menu."
    assert client.post(text_push("654321")).field("Image/MediaId") == "MEDIA_ID"
    assert client.post(event("click", EventKey="NEWS")).msg_type == "news"
    assert client.post(event("SCAN", EventKey="shop", Ticket="T")).content == "Welcome back to the shop"
