"""Plugins load from WECHAT_PLUGINS and entry points; the first reply in plugin order wins."""

from __future__ import annotations

import logging
import sys
import textwrap
import uuid

import pytest

from app import SettingsError
from app.testing import PushClient, event_push, text_push
from tests.conftest import make_app


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """A folder on sys.path where a test writes plugin modules."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    return folder


def write_plugin(folder, body: str) -> str:
    name = f"plugin_{uuid.uuid4().hex[:8]}"
    (folder / f"{name}.py").write_text(textwrap.dedent(body))
    return name


ANSWERS_TEXT = """
    from app.signals import message_received

    @message_received.connect_via("text")
    def answer(sender, message, **extra):
        return "{word}: " + message.content
"""


def test_first_reply_in_plugin_order_wins(tmp_path, plugin_dir):
    first = write_plugin(plugin_dir, ANSWERS_TEXT.format(word="first"))
    second = write_plugin(plugin_dir, ANSWERS_TEXT.format(word="second"))
    one = PushClient(make_app(tmp_path / "a", WECHAT_PLUGINS=f"{first},{second}"))
    two = PushClient(make_app(tmp_path / "b", WECHAT_PLUGINS=f"{second},{first}"))
    assert one.post(text_push("hi")).content == "first: hi"
    assert two.post(text_push("hi")).content == "second: hi"


def test_every_receiver_runs_even_after_a_reply(tmp_path, plugin_dir):
    counter = write_plugin(
        plugin_dir,
        """
        from app.signals import message_received
        seen = []

        @message_received.connect_via("text")
        def count(sender, message, **extra):
            seen.append(message.content)
    """,
    )
    client = PushClient(make_app(tmp_path, WECHAT_PLUGINS=f"app.plugins.echo,{counter}"))
    assert client.post(text_push("both")).content == "both"
    assert sys.modules[counter].seen == ["both"]


def test_a_plugin_runs_only_in_the_apps_that_load_it(tmp_path):
    with_echo = PushClient(make_app(tmp_path / "a", WECHAT_PLUGINS="app.plugins.echo"))
    without = PushClient(make_app(tmp_path / "b", WECHAT_PLUGINS=""))
    assert with_echo.post(text_push("hi")).content == "hi"
    assert without.post(text_push("hi")).body == b"success"


def test_receivers_get_the_client_and_the_store(tmp_path, plugin_dir):
    name = write_plugin(
        plugin_dir,
        """
        from app.signals import event_received
        got = {}

        @event_received.connect_via("click")
        def remember(sender, event, client, store, **extra):
            got.update(client=client, store=store, key=event.event_key)
    """,
    )
    app = make_app(tmp_path, WECHAT_PLUGINS=name)
    PushClient(app).post(event_push("CLICK", {"EventKey": "MENU_A"}))
    state = app.extensions["wechat"]
    assert sys.modules[name].got == {"client": state.client, "store": state.store, "key": "MENU_A"}


def test_event_names_match_in_lower_case(tmp_path, plugin_dir):
    name = write_plugin(
        plugin_dir,
        """
        from app.signals import event_received

        @event_received.connect_via("scan")
        def scanned(sender, event, **extra):
            return "scene " + event.event_key
    """,
    )
    client = PushClient(make_app(tmp_path, WECHAT_PLUGINS=name))
    assert client.post(event_push("SCAN", {"EventKey": "42", "Ticket": "T"})).content == "scene 42"


def test_a_plugin_returning_a_wrong_type_is_logged_and_answered_with_success(tmp_path, plugin_dir, caplog):
    name = write_plugin(
        plugin_dir,
        """
        from app.signals import message_received

        @message_received.connect_via("text")
        def wrong(sender, message, **extra):
            return {"content": "not a reply"}
    """,
    )
    client = PushClient(make_app(tmp_path, WECHAT_PLUGINS=name))
    with caplog.at_level(logging.ERROR):
        assert client.post(text_push("hi")).body == b"success"
    assert any("returned dict" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


def test_plugin_that_fails_to_import_stops_start_up(tmp_path, plugin_dir):
    name = write_plugin(plugin_dir, "raise RuntimeError('missing dependency')\n")
    with pytest.raises(SettingsError, match=f"WECHAT_PLUGINS: cannot import '{name}'.*missing dependency"):
        make_app(tmp_path, WECHAT_PLUGINS=name)


def test_entry_point_plugins_are_loaded(tmp_path, plugin_dir):
    module = write_plugin(plugin_dir, ANSWERS_TEXT.format(word="entry point"))
    dist = plugin_dir / "demo_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: demo-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[wechat_callback.plugins]\ndemo = {module}\n")
    client = PushClient(make_app(tmp_path, WECHAT_PLUGINS=""))
    assert client.post(text_push("hi")).content == "entry point: hi"


def test_importing_the_echo_plugin_does_not_load_it(tmp_path):
    from app.plugins.echo import GREETING  # noqa: F401  (a test may want the greeting text)

    client = PushClient(make_app(tmp_path, WECHAT_PLUGINS=""))
    assert client.post(text_push("hi")).body == b"success"


def test_a_package_plugin_owns_the_receivers_of_its_modules(tmp_path, plugin_dir):
    package = f"pkg_{uuid.uuid4().hex[:8]}"
    (plugin_dir / package).mkdir()
    (plugin_dir / package / "__init__.py").write_text("from . import handlers\n")
    (plugin_dir / package / "handlers.py").write_text(textwrap.dedent(ANSWERS_TEXT.format(word="package")))
    other = write_plugin(plugin_dir, ANSWERS_TEXT.format(word="module"))
    assert (
        PushClient(make_app(tmp_path / "a", WECHAT_PLUGINS=f"{package},{other}")).post(text_push("hi")).content
        == "package: hi"
    )
    assert (
        PushClient(make_app(tmp_path / "b", WECHAT_PLUGINS=f"{other},{package}")).post(text_push("hi")).content
        == "module: hi"
    )
    assert PushClient(make_app(tmp_path / "c", WECHAT_PLUGINS="")).post(text_push("hi")).body == b"success"
