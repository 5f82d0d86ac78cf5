"""Plugins load from WECHAT_PLUGINS and entry points; the first reply in plugin order wins."""

from __future__ import annotations

import importlib
import logging
import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest

from app import SettingsError
from app.plugins import PluginStore
from app.signals import message_received
from app.testing import PushClient, build_push, event_push, signed_query, text_push
from tests.conftest import make_app, write_plugin

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


def test_receivers_get_the_client_and_a_store_of_the_plugins_own(tmp_path, plugin_dir):
    name = write_plugin(
        plugin_dir,
        """
        from app.signals import event_received
        got = {}

        @event_received.connect_via("click")
        def remember(sender, event, client, store, **extra):
            got.update(client=client, store=store, key=event.event_key)
            store.set("last_click", event.event_key, 60)
    """,
    )
    app = make_app(tmp_path, WECHAT_PLUGINS=name)
    PushClient(app).post(event_push("CLICK", {"EventKey": "MENU_A"}))
    state = app.extensions["wechat"]
    got = sys.modules[name].got
    assert (got["client"], got["key"]) == (state.client, "MENU_A")
    assert isinstance(got["store"], PluginStore)
    assert got["store"].get("last_click") == "MENU_A"
    assert state.store.get_value("plugin:last_click") == "MENU_A"


def test_a_plugins_store_cannot_reach_the_access_token_or_the_apps_records(tmp_path, plugin_dir):
    name = write_plugin(
        plugin_dir,
        """
        from app.signals import message_received
        tried = {}

        @message_received.connect_via("text")
        def snoop(sender, message, store, **extra):
            tried["read"] = store.get("access_token")
            tried["deleted"] = store.delete("access_token")
            tried["took_lock"] = store.add("access_token:lock", "mine", 60)
            store.set("access_token", "forged", 60)
            app_methods = ("get_value", "claim_push", "save_job", "list_jobs")
            tried["methods"] = [name for name in app_methods if hasattr(store, name)]
    """,
    )
    app = make_app(tmp_path, WECHAT_PLUGINS=name)
    state = app.extensions["wechat"]
    state.store.set_value("access_token", '{"token": "the real one"}', 600)
    state.store.set_value("access_token:lock", "a worker", 600)
    PushClient(app).post(text_push("hi"))
    assert sys.modules[name].tried == {"read": None, "deleted": False, "took_lock": True, "methods": []}
    assert state.store.get_value("access_token") == '{"token": "the real one"}'
    assert state.store.get_value("access_token:lock") == "a worker"


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


def write_module(folder, body: str, prefix: str = "module") -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    (folder / f"{name}.py").write_text(textwrap.dedent(body))
    return name


def test_a_receiver_a_helper_module_connects_while_a_plugin_is_imported_runs_only_where_that_plugin_does(
    tmp_path, plugin_dir
):
    helper = write_module(
        plugin_dir,
        """
        from app.signals import message_received

        def answer_with(word):
            @message_received.connect_via("text")
            def answer(sender, message, **extra):
                return word + ": " + message.content

            return answer
    """,
        prefix="helper",
    )
    plugin = write_plugin(plugin_dir, f"from {helper} import answer_with\n\nanswer = answer_with('helped')\n")
    assert sys.modules.get(plugin) is None
    loading = PushClient(make_app(tmp_path / "a", WECHAT_PLUGINS=plugin))
    other = PushClient(make_app(tmp_path / "b", WECHAT_PLUGINS=""))
    loading_again = PushClient(make_app(tmp_path / "c", WECHAT_PLUGINS=plugin))  # imported already: nothing reconnects
    assert sys.modules[plugin].answer.__module__ == helper
    assert loading.post(text_push("hi")).content == "helped: hi"
    assert other.post(text_push("hi")).body == b"success"
    assert loading_again.post(text_push("hi")).content == "helped: hi"


def test_receivers_run_in_plugin_order_then_connection_order_then_those_connected_at_run_time(tmp_path, plugin_dir):
    calls = write_module(plugin_dir, "seen = []\n", prefix="calls")
    first = write_plugin(
        plugin_dir,
        f"""
        from app.signals import message_received
        from {calls} import seen

        @message_received.connect_via("text")
        def a1(sender, **extra):
            seen.append("a1")

        def a2(sender, **extra):  # every sender
            seen.append("a2")

        message_received.connect(a2)

        @message_received.connect_via("text")
        def a3(sender, **extra):
            seen.append("a3")
    """,
    )
    second = write_plugin(
        plugin_dir,
        f"""
        from app.signals import message_received
        from {calls} import seen

        @message_received.connect_via("text")
        def b1(sender, **extra):
            seen.append("b1")
    """,
    )
    seen = __import__(calls).seen

    def late(sender, **extra):
        seen.append("late")

    forward = PushClient(make_app(tmp_path / "a", WECHAT_PLUGINS=f"{first},{second}"))
    backward = PushClient(make_app(tmp_path / "b", WECHAT_PLUGINS=f"{second},{first}"))
    with message_received.connected_to(late):
        forward.post(text_push("one"))
        assert seen == ["a1", "a2", "a3", "b1", "late"]
        seen.clear()
        backward.post(text_push("two"))
        assert seen == ["b1", "a1", "a2", "a3", "late"]
        seen.clear()
        forward.post(build_push("image", {"PicUrl": "u", "MediaId": "m", "MsgId": 7}))
        assert seen == ["a2", "late"]


def test_a_plugin_imported_before_an_app_loads_it_still_runs_there(tmp_path, plugin_dir):
    name = write_plugin(plugin_dir, ANSWERS_TEXT.format(word="early"))
    importlib.import_module(name)
    assert PushClient(make_app(tmp_path, WECHAT_PLUGINS=name)).post(text_push("hi")).content == "early: hi"


def test_what_a_module_that_is_no_plugin_connects_on_import_runs_in_no_app(tmp_path, plugin_dir):
    name = write_module(plugin_dir, ANSWERS_TEXT.format(word="stray"))
    importlib.import_module(name)
    assert PushClient(make_app(tmp_path / "a", WECHAT_PLUGINS="")).post(text_push("hi")).body == b"success"
    assert PushClient(make_app(tmp_path / "b")).post(text_push("hi")).content == "hi"  # the echo plugin's


def test_a_disconnected_plugin_receiver_stops_running(tmp_path, plugin_dir):
    name = write_plugin(plugin_dir, ANSWERS_TEXT.format(word="soon gone"))
    client = PushClient(make_app(tmp_path, WECHAT_PLUGINS=name))
    assert client.post(text_push("one")).content == "soon gone: one"
    message_received.disconnect(sys.modules[name].answer)
    assert client.post(text_push("two")).body == b"success"


def test_a_weakly_connected_receiver_its_plugin_drops_never_runs(tmp_path, plugin_dir):
    name = write_plugin(
        plugin_dir,
        """
        from app.signals import message_received

        message_received.connect(lambda sender, **extra: "dropped", sender="text")  # weak: collected at once
    """,
    )
    assert PushClient(make_app(tmp_path, WECHAT_PLUGINS=name)).post(text_push("hi")).body == b"success"


def test_an_event_name_in_upper_case_fires_like_its_lower_case(tmp_path, plugin_dir):
    """WeChat's own spelling (CLICK) in connect_via works: the sender is matched whatever its case."""
    name = write_plugin(
        plugin_dir,
        """
        from app.signals import event_received

        @event_received.connect_via("CLICK")
        def menu(sender, event, **extra):
            return "menu " + event.event_key
        """,
    )
    client = PushClient(make_app(tmp_path, WECHAT_PLUGINS=name))
    assert client.post(event_push("CLICK", {"EventKey": "NEWS"})).content == "menu NEWS"


# --- receivers take only what they name ------------------------------------------------------


def test_a_receiver_without_extra_takes_only_what_it_names(tmp_path, plugin_dir, caplog):
    name = write_plugin(
        plugin_dir,
        """
        from app.signals import event_received, message_received

        @message_received.connect_via("text")
        def plain(sender, message):
            return sender + ": " + message.content

        @event_received.connect_via("click")
        def no_sender(event, store):
            store.set("clicked", event.event_key, 60)
            return "clicked " + event.event_key

        @event_received.connect_via("subscribe")
        def with_default(event, unknown="kept"):
            return unknown
    """,
    )
    app = make_app(tmp_path, WECHAT_PLUGINS=name)
    client = PushClient(app)
    with caplog.at_level(logging.ERROR):
        assert client.post(text_push("hi")).content == "text: hi"
        assert client.post(event_push("CLICK", {"EventKey": "K"})).content == "clicked K"
        assert client.post(event_push("subscribe")).content == "kept"
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert app.extensions["wechat"].store.get_value("plugin:clicked") == "K"


@pytest.mark.parametrize(
    ("signature", "signal", "named"),
    [
        ("sender, message, user", "message_received", "'user'"),
        ("sender, message", "event_received", "'message'"),  # the event signal sends no message
        ("event, *, cache", "event_received", "'cache'"),
    ],
)
def test_a_receiver_naming_what_it_is_not_given_stops_start_up_with_one_line(
    tmp_path, plugin_dir, signature, signal, named
):
    name = write_plugin(
        plugin_dir,
        f"""
        from app.signals import {signal}

        @{signal}.connect_via("text")
        def wants({signature}):
            pass
    """,
    )
    with pytest.raises(SettingsError) as raised:
        make_app(tmp_path, WECHAT_PLUGINS=name)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"WECHAT_PLUGINS: receiver {name}.wants takes {named}, which {signal} does not give")


def test_a_receiver_connected_at_run_time_takes_only_what_it_names_too(tmp_path):
    client = PushClient(make_app(tmp_path, WECHAT_PLUGINS=""))

    def answer(message, settings):
        return f"{message.content} via {settings.callback_path}"

    with message_received.connected_to(answer, sender="text"):
        assert client.post(text_push("hi")).content == "hi via /wechat"


def test_a_receiver_connected_at_run_time_naming_what_it_is_not_given_is_logged(tmp_path, caplog):
    client = PushClient(make_app(tmp_path, WECHAT_PLUGINS="app.plugins.echo"))

    def wants(message, user):
        return "never"

    with message_received.connected_to(wants, sender="text"):
        assert client.post(text_push("hi")).content == "hi"
    assert any("takes 'user'" in str(record.exc_info[1]) for record in caplog.records if record.exc_info)


# --- where a plugin lives, and the development server ---------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_development_server_runs_a_plugin_from_pythonpath(tmp_path):
    """The README's way: ``flask --app wsgi run`` with the settings and PYTHONPATH in the environment."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (folder / "dev_plugin.py").write_text(
        "from app.routes import on_text\n\n\n@on_text('ping')\ndef ping(message):\n    return 'pong'\n"
    )
    port = free_port()
    root = Path(__file__).resolve().parent.parent
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith("WECHAT_")},
        "WECHAT_TOKEN": "dev-token",
        "WECHAT_PLUGINS": "dev_plugin",
        "WECHAT_STORE_URL": f"sqlite:///{tmp_path}/dev.sqlite3",
        "PYTHONPATH": str(folder),
    }
    flask = str(Path(sys.executable).parent / "flask")
    server = subprocess.Popen(
        [flask, "--app", "wsgi", "run", "--port", str(port)],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        query = signed_query("dev-token")
        url = f"http://127.0.0.1:{port}/wechat?{urllib.parse.urlencode(query)}"
        body = None
        for _ in range(100):  # up to 20 s for the server to start
            try:
                request = urllib.request.Request(url, data=text_push("ping"), method="POST")
                with urllib.request.urlopen(request, timeout=5) as answer:
                    body = answer.read()
                break
            except (ConnectionError, urllib.error.URLError):
                if server.poll() is not None:
                    break
                time.sleep(0.2)
        assert body is not None, server.stderr.read().decode() if server.poll() is not None else "no answer"
        assert b"<Content><![CDATA[pong]]></Content>" in body
    finally:
        server.terminate()
        server.wait(timeout=10)
