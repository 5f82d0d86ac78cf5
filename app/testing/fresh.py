"""A recorded push made new: what sets it apart from the push it was recorded from.

The server recognises a repeat of a push (WeChat's own retries) by its ``MsgId``, or,
for an event, by its sender, ``CreateTime``, ``Event``, ``EventKey`` and ``MsgID``, and
answers a repeat from its journal without running a handler.  Posting the same
recorded file twice would therefore show the first reply again, even after the plugin
changed.  :func:`fresh_push` gives a message a new ``MsgId`` and an event a new
``CreateTime``; everything else, an event's ``MsgID`` (the mass send a
MASSSENDJOBFINISH reports on) included, stays as recorded: the same elements, text
and CDATA sections.
"""

from __future__ import annotations

import secrets
import threading
import time

from lxml import etree

from ..xmlsafe import PushError, parse_xml

__all__ = ["fresh_push", "new_msg_id"]

_lock = threading.Lock()
_times_given: dict[tuple[str, ...], int] = {}  # an event's identity -> the last CreateTime given it, still current


def new_msg_id() -> int:
    """A random 19-digit ``MsgId``, as WeChat's are 64-bit numbers; two never meet in practice."""
    return 10**18 + secrets.randbelow(8 * 10**18)


def _new_create_time(identity: tuple[str, ...]) -> int:
    """Now, in seconds; or, for an event made new twice within a second here, a second after the last."""
    with _lock:
        now = int(time.time())
        for stale in [key for key, given in _times_given.items() if given < now]:
            del _times_given[stale]
        given = _times_given[identity] = max(now, _times_given.get(identity, 0) + 1)
        return given


def fresh_push(xml: bytes) -> bytes:
    """``xml`` as a new push: a message with a fresh ``MsgId``, an event with a fresh ``CreateTime``.

    A body that is not a push (not XML, no ``MsgType``, an encrypted envelope) is
    returned unchanged, for the server to answer as it would.
    """
    try:
        root = parse_xml(xml)
    except PushError:
        return xml
    msg_type = (root.findtext("MsgType") or "").strip()
    if not msg_type:
        return xml
    if msg_type == "event":
        identity = tuple(root.findtext(tag) or "" for tag in ("FromUserName", "Event", "EventKey", "MsgID", "MsgId"))
        _set(root, "CreateTime", _new_create_time(identity))
    else:
        _set(root, "MsgId", new_msg_id())
    return etree.tostring(root, encoding="utf-8")


def _set(root: etree._Element, tag: str, value: int) -> None:
    """Give the top-level ``<tag>`` the text ``value``, adding the element if the push lacks it."""
    element = root.find(tag)
    if element is None:
        element = etree.SubElement(root, tag)
        element.tail = "\n"
    element.text = str(value)
