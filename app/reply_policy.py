"""What a reply to a push looks like: addressed back to its sender, within WeChat's limits.

The one place that turns a handler's reply into the XML of a passive reply, so
that no caller swaps ``ToUserName`` and ``FromUserName`` by hand, forgets that a
news reply to a message may carry one article only, or sends a text longer than
WeChat shows (``WECHAT_TEXT_LIMIT`` bytes: the rest becomes more parts).
"""

from __future__ import annotations

import re

from .messages import Event, Push
from .replies import MAX_ARTICLES_FOR_EVENT, MAX_ARTICLES_FOR_MESSAGE, Reply, TextReply, render
from .settings import Settings
from .textsplit import split_text

_CREATE_TIME = re.compile(rb"<CreateTime>[0-9]+</CreateTime>")


def reply_xml(push: Push, reply: Reply, now: float) -> bytes:
    """``reply`` to ``push``: from the account the push was sent to, to the follower who sent it."""
    limit = MAX_ARTICLES_FOR_EVENT if isinstance(push, Event) else MAX_ARTICLES_FOR_MESSAGE
    return addressed_xml(reply, push.from_user, push.to_user, now, limit)


def addressed_xml(
    reply: Reply, follower: str, account: str, now: float, article_limit: int = MAX_ARTICLES_FOR_MESSAGE
) -> bytes:
    """``reply`` from ``account`` to ``follower`` (a held reply answers a message: one article)."""
    return render(reply, to_user=follower, from_user=account, create_time=int(now), article_limit=article_limit)


def text_xml(push: Push, text: str, now: float) -> bytes:
    return reply_xml(push, TextReply(text), now)


def restamped(xml: bytes, now: float) -> bytes:
    """A reply made earlier, with ``CreateTime`` the time it is sent."""
    return _CREATE_TIME.sub(b"<CreateTime>%d</CreateTime>" % int(now), xml, count=1)


def parts(reply: Reply, settings: Settings, held: bool) -> list[Reply]:
    """``reply`` in the parts WeChat takes: a long text split on grapheme boundaries, anything else whole.

    ``held``: the parts after the first wait for the follower's next messages, so each
    part that has a successor says so (``WECHAT_MORE_HINT``); parts that go out
    through the customer-service API follow on their own and need no hint.
    """
    if not isinstance(reply, TextReply) or len(reply.content.encode()) <= settings.text_limit:
        return [reply]
    hint = settings.more_hint if held else ""
    texts = split_text(reply.content, settings.text_limit, settings.text_max_parts, hint)
    return [TextReply(text + hint) for text in texts[:-1]] + [TextReply(texts[-1])]
