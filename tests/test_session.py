"""A follower's session: kept in the store between pushes, per follower, with an expiry; free when unused."""

from __future__ import annotations

import json
import logging
import textwrap
import time
import uuid

import pytest

from app.testing import PushClient, event_push, text_push
from tests.conftest import make_app, make_app_at

COUNTER = """
    from app.routes import on_text
    from app.signals import message_received

    @on_text("count")
    def count(session):
        session["count"] = session.get("count", 0) + 1
        return str(session["count"])

    @on_text("add")
    def add(session):
        items = session.setdefault("items", [])
        items.append(len(items))
        return json.dumps(items)

    @on_text("forget")
    def forget(session):
        session.clear()
        return "forgotten"

    @on_text("look")
    def look(message, session):
        return json.dumps(dict(session))

    @message_received.connect_via("text")
    def bad(message, session):
        if message.content == "bad":
            session["when"] = object()
            return "stored something JSON cannot hold"
"""


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    folder = tmp_path / "plugins"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    name = f"session_{uuid.uuid4().hex[:8]}"
    (folder / f"{name}.py").write_text("import json\n" + textwrap.dedent(COUNTER))
    return name


def say(client: PushClient, text: str, follower: str = "o_alice") -> str | None:
    return client.post(text_push(text, from_user=follower)).content


def test_a_session_lasts_from_one_push_to_the_next_for_that_follower_only(tmp_path, plugin):
    client = PushClient(make_app(tmp_path, WECHAT_PLUGINS=plugin))
    assert [say(client, "count") for _ in range(3)] == ["1", "2", "3"]
    assert say(client, "count", follower="o_bob") == "1"
    assert say(client, "count") == "4"


def test_every_worker_sees_the_same_session(tmp_path, plugin):
    """Two apps on one store file stand for two gunicorn workers."""
    store = f"{tmp_path}/shared.sqlite3"
    one = PushClient(make_app_at(store, WECHAT_PLUGINS=plugin))
    two = PushClient(make_app_at(store, WECHAT_PLUGINS=plugin))
    assert say(one, "count") == "1"
    assert say(two, "count") == "2"
    assert say(one, "count") == "3"


def test_the_session_is_json_in_the_store_out_of_a_plugin_stores_reach(tmp_path, plugin):
    app = make_app(tmp_path, WECHAT_PLUGINS=plugin)
    client = PushClient(app)
    say(client, "count")
    store = app.extensions["wechat"].store
    assert json.loads(store.get_value("session:o_alice")) == {"count": 1}
    assert store.get_value("plugin:session:o_alice") is None


def test_a_change_inside_a_nested_value_is_saved(tmp_path, plugin):
    client = PushClient(make_app(tmp_path, WECHAT_PLUGINS=plugin))
    assert say(client, "add") == "[0]"
    assert say(client, "add") == "[0, 1]"
    assert say(client, "look") == '{"items": [0, 1]}'


def test_an_emptied_session_is_deleted(tmp_path, plugin):
    app = make_app(tmp_path, WECHAT_PLUGINS=plugin)
    client = PushClient(app)
    say(client, "count")
    assert say(client, "forget") == "forgotten"
    assert app.extensions["wechat"].store.get_value("session:o_alice") is None
    assert say(client, "count") == "1"


def test_a_session_expires_its_ttl_after_it_last_changed(tmp_path, plugin):
    client = PushClient(make_app(tmp_path, WECHAT_PLUGINS=plugin, WECHAT_SESSION_TTL="1.0"))
    assert say(client, "count") == "1"
    time.sleep(0.5)
    assert say(client, "count") == "2"  # written again: another second from now
    time.sleep(0.6)  # 1.1 s after the first write
    assert say(client, "count") == "3"
    time.sleep(1.3)
    assert say(client, "count") == "1"


@pytest.mark.parametrize("value", ["0", "-5", "soon"])
def test_a_bad_session_ttl_stops_start_up(tmp_path, value):
    from app import SettingsError

    with pytest.raises(SettingsError, match="^WECHAT_SESSION_TTL "):
        make_app(tmp_path, WECHAT_SESSION_TTL=value)


class CountingStore:
    """Counts the app store's value calls (the store itself is the app's real SQLite store)."""

    def __init__(self, monkeypatch, store) -> None:
        self.calls: list[str] = []
        for method in ("get_value", "set_value", "delete_value"):
            original = getattr(store, method)
            monkeypatch.setattr(store, method, self._counting(method, original))

    def _counting(self, method, original):
        def call(key, *args, **kwargs):
            if key.startswith("session:"):
                self.calls.append(method)
            return original(key, *args, **kwargs)

        return call


def test_pushes_that_do_not_use_the_session_make_no_store_call_for_it(tmp_path, plugin, monkeypatch):
    app = make_app(tmp_path, WECHAT_PLUGINS=f"app.plugins.echo,{plugin}")
    counting = CountingStore(monkeypatch, app.extensions["wechat"].store)
    client = PushClient(app)
    assert say(client, "hello") == "hello"  # echo answers; the session receivers' routes do not match
    assert client.post(event_push("subscribe", from_user="o_new")).content
    assert counting.calls == []


def test_a_session_read_but_not_changed_is_not_written(tmp_path, plugin, monkeypatch):
    app = make_app(tmp_path, WECHAT_PLUGINS=plugin)
    client = PushClient(app)
    say(client, "count")
    counting = CountingStore(monkeypatch, app.extensions["wechat"].store)
    assert say(client, "look") == '{"count": 1}'
    assert counting.calls == ["get_value"]
    assert say(client, "count") == "2"
    assert counting.calls == ["get_value", "get_value", "set_value"]


def test_a_value_json_cannot_hold_is_logged_and_the_reply_still_goes(tmp_path, plugin, caplog):
    app = make_app(tmp_path, WECHAT_PLUGINS=plugin)
    client = PushClient(app)
    say(client, "count")
    with caplog.at_level(logging.ERROR):
        assert say(client, "bad") == "stored something JSON cannot hold"
    assert any("session was not saved: TypeError" in record.getMessage() for record in caplog.records)
    assert say(client, "count") == "2"  # the session as it was before


def test_a_session_the_store_holds_that_is_not_json_starts_afresh(tmp_path, plugin):
    app = make_app(tmp_path, WECHAT_PLUGINS=plugin)
    app.extensions["wechat"].store.set_value("session:o_alice", "not json", 60)
    assert say(PushClient(app), "count") == "1"


def test_a_session_grown_past_64_kib_is_logged_and_not_written(tmp_path, monkeypatch, caplog):
    folder = tmp_path / "plugins"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    (folder / "hoarder.py").write_text(
        textwrap.dedent(
            """
            from app.routes import on_text

            @on_text("hoard")
            def hoard(session):
                session["log"] = session.get("log", "") + "x" * 40000
                return str(len(session["log"]))
            """
        )
    )
    client = PushClient(make_app(tmp_path, WECHAT_PLUGINS="hoarder"))
    assert say(client, "hoard") == "40000"
    with caplog.at_level(logging.ERROR):
        assert say(client, "hoard") == "80000"  # the reply still goes
    assert any("more than 65536" in record.getMessage() for record in caplog.records)
    assert say(client, "hoard") == "80000"  # the session as last written
