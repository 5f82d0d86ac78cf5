"""Work after the answer: the rest of a long text, and work a receiver hands off.

In ``retry`` mode it is held for the follower, whose next messages take it; in
``customer_service`` mode it goes out through the API (the fake one, on loopback).
"""

from __future__ import annotations

import time

import pytest
import regex

from app.handoff import later
from app.signals import message_received
from app.testing import PushClient, build_push, text_push
from tests.conftest import make_app
from tests.plugins.slow import FAMILY

LONG = (FAMILY + "家") * 300  # 8,400 bytes of UTF-8, a grapheme of 25 bytes every 28


def held_count(app) -> int:
    return app.extensions["wechat"].store.db.execute("SELECT count(*) FROM held").fetchone()[0]


def wait_for(condition, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def whole_graphemes(text: str) -> bool:
    return all(cluster in (FAMILY, "家") for cluster in regex.findall(r"\X", text))


def customer_service_app(tmp_path, fake, **config):
    """The slow plugin's app, sending late work through the fake WeChat API."""
    return make_app(
        tmp_path,
        WECHAT_PLUGINS="tests.plugins.slow",
        WECHAT_LATE_REPLY="customer_service",
        WECHAT_API_BASE_URL=fake.base_url,
        WECHAT_APP_ID=fake.app_id,
        WECHAT_APP_SECRET=fake.app_secret,
        **config,
    )


def test_a_long_text_is_split_and_the_rest_held_for_the_next_messages(tmp_path):
    app = make_app(tmp_path, WECHAT_PLUGINS="tests.plugins.slow")
    settings = app.extensions["wechat"].settings
    client = PushClient(app)
    texts = [client.post(text_push("long 300", from_user="o_reader")).content]
    wait_for(lambda: held_count(app) > 0)
    while True:
        content = client.post(text_push("more please", from_user="o_reader")).content
        if content.startswith("echo: "):
            break
        texts.append(content)
    assert len(texts) == 5
    assert all(len(text.encode()) <= settings.text_limit for text in texts)
    assert all(text.endswith(settings.more_hint) for text in texts[:-1])
    bodies = [text.removesuffix(settings.more_hint) for text in texts[:-1]] + [texts[-1]]
    assert all(whole_graphemes(body) for body in bodies), "no grapheme is cut"
    assert "".join(bodies) == LONG


def test_a_long_text_goes_on_through_the_api_in_customer_service_mode(tmp_path, fake):
    app = customer_service_app(tmp_path, fake)
    first = PushClient(app).post(text_push("long 300", from_user="o_reader")).content
    wait_for(lambda: len(fake.requests_to("message/custom/send")) == 4)
    sent = [request.json for request in fake.requests_to("message/custom/send")]
    assert {message["touser"] for message in sent} == {"o_reader"}
    texts = [first] + [message["text"]["content"] for message in sent]
    assert all(len(text.encode()) <= 2048 and whole_graphemes(text) for text in texts)
    assert "".join(texts) == LONG
    assert held_count(app) == 0


def test_handed_off_work_is_held_for_the_next_message(tmp_path):
    app = make_app(tmp_path, WECHAT_PLUGINS="tests.plugins.slow")
    client = PushClient(app)
    assert client.post(text_push("handoff the weather", from_user="o_asker")).content == "working on it"
    wait_for(lambda: held_count(app) == 1)
    assert client.post(text_push("and?", from_user="o_asker")).content == "looked up: the weather"
    assert client.post(text_push("thanks", from_user="o_asker")).content == "echo: thanks"


def test_handed_off_work_is_sent_through_the_api_in_customer_service_mode(tmp_path, fake):
    app = customer_service_app(tmp_path, fake)
    assert PushClient(app).post(text_push("handoff the tide", from_user="o_asker")).content == "working on it"
    wait_for(lambda: fake.requests_to("message/custom/send"))
    [sent] = fake.requests_to("message/custom/send")
    assert sent.json == {"touser": "o_asker", "msgtype": "text", "text": {"content": "looked up: the tide"}}


def test_a_refused_send_is_held_instead(tmp_path, fake):
    app = customer_service_app(tmp_path, fake)
    fake.fail("message/custom/send", 45015)  # the follower wrote more than 48 hours ago
    client = PushClient(app)
    client.post(text_push("handoff the news", from_user="o_away"))
    wait_for(lambda: held_count(app) == 1)
    assert client.post(text_push("hello again", from_user="o_away")).content == "looked up: the news"


def test_later_refuses_what_another_process_could_not_run(tmp_path, caplog):
    app = make_app(tmp_path, WECHAT_PLUGINS="tests.plugins.slow")
    errors = []

    def hands_off_badly(sender, message, **extra):
        for function, args in ((lambda: "x", ()), ("tests.plugins.slow.look_up", (object(),))):
            try:
                later(function, *args)
            except (ValueError, TypeError) as exc:
                errors.append(type(exc).__name__)

    with message_received.connected_to(hands_off_badly):
        PushClient(app).post(text_push("try"))
    assert errors == ["ValueError", "TypeError"]
    with pytest.raises(RuntimeError):
        later("tests.plugins.slow.look_up", "outside a receiver")


def test_a_held_reply_nobody_takes_is_journalled_late_reply_failed(tmp_path, fake, monkeypatch):
    from app import tasks

    monkeypatch.setattr(tasks, "HOLD_FOR", 0.5)
    app = customer_service_app(tmp_path, fake)
    fake.fail("message/custom/send", 48001)  # no permission: held instead
    push = text_push("handoff nothing", from_user="o_gone")
    PushClient(app).post(push)
    store = app.extensions["wechat"].store
    from app.messages import parse

    key = parse(push).dedup_key
    wait_for(lambda: store.get_push(key).status == "late_reply_failed", 5)
    assert store.take_held_reply("o_gone") is None


def test_a_repeat_after_success_in_customer_service_mode_gets_success_not_the_reply_again(tmp_path, fake):
    """The reply goes through the API once; a repeated delivery must not carry it a second time."""
    app = customer_service_app(tmp_path, fake, WECHAT_REPLY_DEADLINE="1.0")  # the 1.5 s run is late
    client, xml = PushClient(app), text_push("sleep 1.5 done", from_user="o_once")
    assert client.post(xml).body == b"success"
    wait_for(lambda: fake.requests_to("message/custom/send"))
    assert client.post(xml).body == b"success"
    assert len(fake.requests_to("message/custom/send")) == 1


def test_a_put_off_outcome_that_fails_to_write_is_written_later(tmp_path, monkeypatch):
    app = make_app(tmp_path, WECHAT_PLUGINS="tests.plugins.slow")
    store = app.extensions["wechat"].store
    real, failures = store.finish_pushes, []

    def fails_once(outcomes):
        if not failures:
            failures.append(outcomes)
            raise OSError("disk I/O error")
        return real(outcomes)

    monkeypatch.setattr(store, "finish_pushes", fails_once)
    xml = text_push("written at last")
    client = PushClient(app)
    assert client.post(xml).content == "echo: written at last"
    from app.messages import parse

    key = parse(xml).dedup_key
    wait_for(lambda: store.get_push(key).status == "answered", 3)
    assert failures, "the first write failed"
    assert client.post(xml).content == "echo: written at last"


@pytest.mark.parametrize("hint", ["", "稍等，马上就好"])
def test_the_last_delivery_gets_the_hint_by_its_deadline_or_success_when_it_is_empty(tmp_path, hint):
    """Two deliveries of the push arrived already (on another worker, whose run is alive): this is the third."""
    app = make_app(tmp_path, WECHAT_REPLY_DEADLINE="1.0", WECHAT_LATE_REPLY_HINT=hint)
    store = app.extensions["wechat"].store
    xml = text_push("still going elsewhere")
    from app.messages import parse

    key = parse(xml).dedup_key
    for _ in range(2):
        store.claim_push(key, "text", xml, 60, "another-worker", 60)
    started = time.monotonic()
    answer = PushClient(app).post(xml)
    assert 1.0 <= time.monotonic() - started < 1.3
    if hint:
        assert answer.content == hint
    else:
        assert answer.body == b"success"
    assert store.get_push(key).late == "hint", "its reply, when ready, is held for the follower"


def test_an_event_does_not_take_a_held_reply_but_the_next_message_does(tmp_path):
    from app.testing import event_push

    app = make_app(tmp_path, WECHAT_PLUGINS="tests.plugins.slow")
    client = PushClient(app)
    client.post(text_push("handoff the time", from_user="o_evt"))
    wait_for(lambda: held_count(app) == 1)
    assert client.post(event_push("CLICK", {"EventKey": "K"}, from_user="o_evt")).body == b"success"
    assert held_count(app) == 1
    assert client.post(build_push("image", {"PicUrl": "u", "MediaId": "m", "MsgId": 7}, from_user="o_evt")).content == (
        "looked up: the time"
    ), "any message type takes it"
