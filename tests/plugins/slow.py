"""A plugin for the clock tests: a handler as slow as the follower asks, that counts its runs.

* ``sleep 7 done`` sleeps 7 s, then replies ``done``;
* ``handoff QUESTION`` replies ``working on it`` and hands :func:`look_up` off;
* ``long N`` replies N times a family emoji and a Chinese character (11 + 3 bytes);
* any other text is echoed as ``echo: TEXT``.

Each run appends ``PID MSGID TEXT`` to the file named by ``SLOW_PLUGIN_RUNS``, and
each hand-off ``PID PARENT_PID QUESTION`` to ``SLOW_PLUGIN_HANDOFFS``, so a test counts
runs across processes.
"""

from __future__ import annotations

import os
import time

from app.handoff import later
from app.signals import message_received

FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"  # one grapheme of 25 bytes


def record(message) -> None:
    path = os.environ.get("SLOW_PLUGIN_RUNS")
    if path:
        with open(path, "a") as runs:
            runs.write(f"{os.getpid()} {message.msg_id} {message.content}\n")


@message_received.connect_via("text")
def slow(sender, message, **extra):
    record(message)
    words = message.content.split(" ", 2)
    if words[0] == "handoff":
        later(look_up, message.content.partition(" ")[2])
        return "working on it"
    if words[0] == "long":
        return (FAMILY + "家") * int(words[1])
    if words[0] == "sleep" and len(words) == 3:
        time.sleep(float(words[1]))
        return words[2]
    return f"echo: {message.content}"


def look_up(question: str) -> str:
    path = os.environ.get("SLOW_PLUGIN_HANDOFFS")
    if path:
        with open(path, "a") as handoffs:
            handoffs.write(f"{os.getpid()} {os.getppid()} {question}\n")
    return f"looked up: {question}"
