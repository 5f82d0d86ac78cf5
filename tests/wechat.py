"""WeChat's side of the callback, played faithfully for the tests of its clock.

A push is delivered up to three times.  Each delivery has a fresh timestamp and
nonce, and WeChat waits 5 s for its answer; a delivery that times out, is dropped
or is not a 200 is followed at once by the next.  The first 200 ends the push.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from urllib.parse import urlencode

import requests
from lxml import etree

from app.testing import signed_query
from tests.conftest import TOKEN

TIMEOUT = 5.0
DELIVERIES = 3


@dataclass
class Delivery:
    number: int
    sent_at: float  # seconds after the push's first delivery was sent
    answered_at: float | None = None  # when its answer came, on the same clock; None if none came
    status: int | None = None
    body: bytes | None = None
    failure: str | None = None  # "timeout", "dropped"

    @property
    def content(self) -> str | None:
        if self.status != 200 or not self.body or self.body == b"success":
            return None
        return etree.fromstring(self.body).findtext("Content")


@dataclass
class Push:
    deliveries: list[Delivery] = field(default_factory=list)

    @property
    def answer(self) -> Delivery | None:
        return next((delivery for delivery in self.deliveries if delivery.status == 200), None)


class WeChat:
    def __init__(self, base_url: str, path: str = "/wechat") -> None:
        self.url = base_url + path
        self.session = requests.Session()

    def push(self, xml: bytes, deliveries: int = DELIVERIES, on_sent=None) -> Push:
        """Deliver ``xml`` as WeChat does; ``on_sent(number)`` is called as each delivery goes out."""
        push = Push()
        started = time.monotonic()
        for number in range(1, deliveries + 1):
            delivery = Delivery(number, time.monotonic() - started)
            push.deliveries.append(delivery)
            if on_sent is not None:
                on_sent(number)
            try:
                response = requests.post(
                    f"{self.url}?{urlencode(signed_query(TOKEN))}",
                    data=xml,
                    headers={"Content-Type": "text/xml", "Connection": "close"},
                    timeout=(2.0, TIMEOUT),
                )
            except requests.Timeout:
                delivery.failure = "timeout"
                continue
            except requests.ConnectionError:
                delivery.failure = "dropped"
                continue
            delivery.answered_at = time.monotonic() - started
            delivery.status, delivery.body = response.status_code, response.content
            if response.status_code == 200:
                break
        return push
