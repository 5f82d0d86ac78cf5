"""The watchdog answers a delivery at its deadline, once, unless the delivery's own thread answered first."""

from __future__ import annotations

import threading
import time

from app.watchdog import TICK, Watchdog

TOLERANCE = 0.3


class Fired:
    def __init__(self) -> None:
        self.at: list[float] = []
        self.event = threading.Event()

    def __call__(self) -> None:
        self.at.append(time.monotonic())
        self.event.set()


def test_a_watch_fires_at_its_time_and_only_once():
    watchdog, fired = Watchdog(), Fired()
    start = time.monotonic()
    watch = watchdog.watch(start + 0.5, fired)
    assert fired.event.wait(2)
    assert start + 0.5 <= fired.at[0] <= start + 0.5 + TOLERANCE
    assert not watch.take(), "the watchdog took it: the delivery's thread must not answer too"
    time.sleep(3 * TICK)
    assert len(fired.at) == 1


def test_a_watch_taken_by_the_delivery_never_fires():
    watchdog, fired = Watchdog(), Fired()
    watch = watchdog.watch(time.monotonic() + 0.2, fired)
    assert watch.take()
    assert not fired.event.wait(0.2 + 4 * TICK)


def test_watches_fire_in_time_order_whatever_order_they_came_in():
    watchdog = Watchdog()
    order: list[str] = []
    done = threading.Event()
    start = time.monotonic()
    watchdog.watch(start + 0.6, lambda: (order.append("late"), done.set()))
    watchdog.watch(start + 0.2, lambda: order.append("early"))
    assert done.wait(2)
    assert order == ["early", "late"]


def test_a_slow_answer_does_not_make_the_next_one_late():
    watchdog, fired = Watchdog(), Fired()
    start = time.monotonic()
    watchdog.watch(start + 0.1, lambda: time.sleep(1.0))  # an answer waiting on a hung store
    watchdog.watch(start + 0.2, fired)
    assert fired.event.wait(2)
    assert fired.at[0] <= start + 0.2 + TOLERANCE


def test_stopping_fires_the_early_watches_at_once_and_the_others_at_their_time():
    watchdog, early, on_time = Watchdog(), Fired(), Fired()
    start = time.monotonic()
    watchdog.watch(start + 5.0, early, early=True)
    watchdog.watch(start + 0.8, on_time)
    time.sleep(0.2)
    watchdog.stop_soon()
    assert early.event.wait(1)
    assert early.at[0] <= start + 0.2 + TOLERANCE
    assert not on_time.event.is_set()
    assert on_time.event.wait(2)
    assert start + 0.8 <= on_time.at[0] <= start + 0.8 + TOLERANCE


def test_an_idle_watchdog_wakes_for_a_new_watch():
    watchdog, first, second = Watchdog(), Fired(), Fired()
    watchdog.watch(time.monotonic() + 0.1, first)
    assert first.event.wait(1)
    time.sleep(0.3)  # nothing open: it sleeps
    start = time.monotonic()
    watchdog.watch(start + 0.2, second)
    assert second.event.wait(1)
    assert start + 0.2 <= second.at[0] <= start + 0.2 + TOLERANCE


def test_a_delivery_the_watchdog_answers_gets_that_answer_first_and_only_it(tmp_path, fake):
    """The handler ends just after the deadline while the watchdog is still answering (its store call
    is slow): the delivery's thread waits for that answer instead of letting the server write another."""
    from urllib.parse import urlencode

    from app import get_state
    from app.pipeline import Delivery
    from app.testing import signed_query, text_push
    from tests.conftest import TOKEN, make_app

    app = make_app(
        tmp_path,
        WECHAT_PLUGINS="tests.plugins.slow",
        WECHAT_LATE_REPLY="customer_service",
        WECHAT_REPLY_DEADLINE="0.5",
        WECHAT_API_BASE_URL=fake.base_url,
        WECHAT_APP_ID=fake.app_id,
        WECHAT_APP_SECRET=fake.app_secret,
    )
    state = get_state(app)
    mark_late = state.store.mark_late

    def slow_mark_late(*args):
        time.sleep(0.3)
        return mark_late(*args)

    state.store.mark_late = slow_mark_late
    events: list[tuple[str, object]] = []
    body = text_push("sleep 0.6 done")
    delivery = Delivery(
        method="POST",
        query_string=urlencode(signed_query(TOKEN)),
        read_body=lambda limit: body,
        answer_early=lambda answer: events.append(("early", answer.body)),
    )
    with app.app_context():
        answer = state.pipeline.handle(delivery)
    events.append(("returned", answer.sent))
    assert [kind for kind, _ in events] == ["early", "returned"], "the server would have written first"
    assert b"<Content><![CDATA[done]]></Content>" in events[0][1], "the run ended before the store said late"
    assert events[1][1] is True
