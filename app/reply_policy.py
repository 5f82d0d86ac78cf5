"""What a reply to a push looks like: addressed back to its sender, within WeChat's limits.

The one place that turns a handler's reply into the XML of a passive reply, so
that no caller swaps ``ToUserName`` and ``FromUserName`` by hand or forgets
that a news reply to a message may carry one article only.
"""

from __future__ import annotations

import re

from .messages import Event, Push
from .replies import MAX_ARTICLES_FOR_EVENT, MAX_ARTICLES_FOR_MESSAGE, Reply, TextReply, render

_CREATE_TIME = re.compile(rb"<CreateTime>[0-9]+</CreateTime>")


def reply_xml(push: Push, reply: Reply, now: float) -> bytes:
    """``reply`` to ``push``: from the account the push was sent to, to the follower who sent it."""
    limit = MAX_ARTICLES_FOR_EVENT if isinstance(push, Event) else MAX_ARTICLES_FOR_MESSAGE
    return render(reply, to_user=push.from_user, from_user=push.to_user, create_time=int(now), article_limit=limit)


def text_xml(push: Push, text: str, now: float) -> bytes:
    return reply_xml(push, TextReply(text), now)


def restamped(xml: bytes, now: float) -> bytes:
    """A reply made earlier, with ``CreateTime`` the time it is sent."""
    return _CREATE_TIME.sub(b"<CreateTime>%d</CreateTime>" % int(now), xml, count=1)
