"""The route decorators answer the pushes they match, over the real callback, in plugin order."""

from __future__ import annotations

import itertools
import re
import sys
from pathlib import Path

import pytest

from app import SettingsError
from app.testing import PushClient, build_push, event_push, text_push
from tests.conftest import make_app, write_plugin

README = Path(__file__).resolve().parent.parent / "README.md"
_followers = itertools.count()


def event(name: str, **fields: object) -> bytes:
    """An event from a follower of its own, so that no two are one repeated push."""
    return event_push(name, fields, from_user=f"o_route_{next(_followers)}")


TEXT_ROUTES = """
    from app.routes import on_text

    @on_text("help")
    def help(message):
        return "exact"

    @on_text(prefix="weather ")
    def weather(message):
        return "weather in " + message.content.removeprefix("weather ")

    @on_text(regex=r"^order (\\d{6})$")
    def order(match):
        return "order " + match[1]
"""


def test_text_routes_answer_an_exact_text_a_prefix_and_a_regex_and_nothing_else(tmp_path, plugin_dir):
    client = PushClient(make_app(tmp_path, WECHAT_PLUGINS=write_plugin(plugin_dir, TEXT_ROUTES)))
    assert client.post(text_push("help")).content == "exact"
    assert client.post(text_push("weather Beijing")).content == "weather in Beijing"
    assert client.post(text_push("order 123456")).content == "order 123456"
    for other in ("help me", "Help", "the weather ", "order 12345", "order 1234567"):
        assert client.post(text_push(other)).success, other


def test_a_route_that_does_not_match_lets_the_next_plugin_answer(tmp_path, plugin_dir):
    routes = write_plugin(plugin_dir, TEXT_ROUTES)
    client = PushClient(make_app(tmp_path, WECHAT_PLUGINS=f"{routes},app.plugins.echo"))
    assert client.post(text_push("help")).content == "exact"  # the first plugin's reply wins
    assert client.post(text_push("anything else")).content == "anything else"  # the echo plugin's


def test_a_later_plugins_route_loses_to_an_earlier_reply(tmp_path, plugin_dir):
    routes = write_plugin(plugin_dir, TEXT_ROUTES)
    client = PushClient(make_app(tmp_path, WECHAT_PLUGINS=f"app.plugins.echo,{routes}"))
    assert client.post(text_push("help")).content == "help"


MENU_AND_SCENES = """
    from app.routes import on_click, on_event, on_scan, on_subscribe

    @on_click("NEWS")
    def news(event):
        return "news"

    @on_subscribe(scene="shop")
    def from_shop(event):
        return "followed at the shop"

    @on_subscribe()
    def followed(event):
        return "followed"

    @on_scan(scene="shop")
    def scanned_shop(event):
        return "scanned the shop"

    @on_scan()
    def scanned(event):
        return "scanned " + event.event_key

    @on_event("VIEW", key="https://example.com/a")
    def viewed(event):
        return "viewed a"
"""


def test_menu_keys_and_qr_scenes_route_whatever_the_case_of_the_event_name(tmp_path, plugin_dir):
    client = PushClient(make_app(tmp_path, WECHAT_PLUGINS=write_plugin(plugin_dir, MENU_AND_SCENES)))
    for name in ("CLICK", "click", "Click"):
        assert client.post(event(name, EventKey="NEWS")).content == "news"
    assert client.post(event("CLICK", EventKey="OTHER")).success
    assert client.post(event("subscribe", EventKey="qrscene_shop", Ticket="T")).content == "followed at the shop"
    assert client.post(event("SUBSCRIBE", EventKey="qrscene_park", Ticket="T")).content == "followed"
    assert client.post(event("subscribe")).content == "followed"
    assert client.post(event("SCAN", EventKey="shop", Ticket="T")).content == "scanned the shop"
    assert client.post(event("scan", EventKey="park", Ticket="T")).content == "scanned park"
    assert client.post(event("view", EventKey="https://example.com/a")).content == "viewed a"
    assert client.post(event("VIEW", EventKey="https://example.com/b")).success


def test_routes_run_only_in_the_apps_that_load_their_plugin(tmp_path, plugin_dir):
    name = write_plugin(plugin_dir, MENU_AND_SCENES)
    PushClient(make_app(tmp_path / "a", WECHAT_PLUGINS=name))
    other = PushClient(make_app(tmp_path / "b", WECHAT_PLUGINS=""))
    assert other.post(event("CLICK", EventKey="NEWS")).success


def test_a_route_function_takes_only_what_it_names_and_stays_callable(tmp_path, plugin_dir):
    name = write_plugin(
        plugin_dir,
        """
        from app.routes import on_click, on_text
        seen = {}

        @on_text("who")
        def who(sender, message, client, store, settings):
            seen.update(sender=sender, client=client, store=store, settings=settings)
            return message.from_user

        @on_click("ALL")
        def everything(event, **extra):
            seen["extra"] = sorted(extra)
            return "all"

        def unit_tested():
            return who("text", type("M", (), {"from_user": "me"})(), None, None, None)
    """,
    )
    app = make_app(tmp_path, WECHAT_PLUGINS=name)
    client = PushClient(app)
    state = app.extensions["wechat"]
    assert client.post(text_push("who", from_user="o_who")).content == "o_who"
    seen = sys.modules[name].seen
    assert (seen["sender"], seen["client"], seen["settings"]) == ("text", state.client, state.settings)
    assert client.post(event("CLICK", EventKey="ALL")).content == "all"
    assert seen["extra"] == ["client", "settings", "store"]  # the session only for a function that names it
    assert sys.modules[name].unit_tested() == "me"


def test_a_route_naming_what_it_is_not_given_stops_start_up_with_one_line(tmp_path, plugin_dir):
    name = write_plugin(
        plugin_dir,
        """
        from app.routes import on_text

        @on_text("hi")
        def greet(message, user):
            return "hi " + user
    """,
    )
    with pytest.raises(SettingsError) as raised:
        make_app(tmp_path, WECHAT_PLUGINS=name)
    message = str(raised.value)
    assert "\n" not in message
    assert f"{name}.greet takes 'user'" in message
    assert message.startswith(f"WECHAT_PLUGINS: cannot import '{name}'")


@pytest.mark.parametrize(
    "call",
    ['on_text("a", prefix="b")', "on_text()", 'on_text(regex="(")'],
)
def test_a_route_given_a_wrong_match_stops_start_up(tmp_path, plugin_dir, call):
    name = write_plugin(plugin_dir, f"from app.routes import on_text\n\n\n@{call}\ndef f(message):\n    pass\n")
    with pytest.raises(SettingsError, match=f"cannot import '{name}'"):
        make_app(tmp_path, WECHAT_PLUGINS=name)


def test_a_route_that_raises_is_logged_under_its_own_name_and_the_others_still_answer(tmp_path, plugin_dir, caplog):
    name = write_plugin(
        plugin_dir,
        """
        from app.routes import on_text

        @on_text("boom")
        def explode(message):
            raise RuntimeError("bang")
    """,
    )
    client = PushClient(make_app(tmp_path, WECHAT_PLUGINS=f"{name},app.plugins.echo"))
    assert client.post(text_push("boom")).content == "boom"
    assert any(f"handler {name}.explode failed" in record.getMessage() for record in caplog.records)


def test_the_readmes_plugin_example_answers_as_it_says(tmp_path, plugin_dir):
    text = README.read_text()
    example = re.search(r"```python\n# my_plugin\.py\n(.*?)```", text, re.S).group(1)
    name = write_plugin(plugin_dir, example)
    client = PushClient(make_app(tmp_path, WECHAT_PLUGINS=name))
    assert client.post(text_push("help")).content.startswith("Send 'weather CITY'")
    assert client.post(text_push("weather Paris")).content == "Looking up Paris..."
    assert client.post(text_push("order 123456")).content == "Order 123456 is on its way."
    news = client.post(event("CLICK", EventKey="NEWS"))
    assert (news.msg_type, news.field("Articles/item/Title")) == ("news", "This week")
    assert client.post(event("subscribe", EventKey="qrscene_shop", Ticket="T")).content == "Welcome to the shop!"
    assert client.post(event("SCAN", EventKey="shop", Ticket="T")).content == "Welcome to the shop!"
    image = build_push("image", {"PicUrl": "https://example.com/p.jpg", "MediaId": "m", "MsgId": 7001})
    assert client.post(image).content == "Nice picture!"
