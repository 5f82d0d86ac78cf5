"""A plugin for the clock tests: a handler as slow as the follower asks, that counts its runs.

A text ``sleep 7 done`` sleeps 7 s, then replies ``done``; any other text is
echoed as ``echo: TEXT``.  Each run appends ``PID MSGID TEXT`` to the file named
by ``SLOW_PLUGIN_RUNS``, so a test counts runs across worker processes.
"""

from __future__ import annotations

import os
import time

from app.signals import message_received


def record(message) -> None:
    path = os.environ.get("SLOW_PLUGIN_RUNS")
    if path:
        with open(path, "a") as runs:
            runs.write(f"{os.getpid()} {message.msg_id} {message.content}\n")


@message_received.connect_via("text")
def slow(sender, message, **extra):
    record(message)
    words = message.content.split(" ", 2)
    if words[0] == "sleep" and len(words) == 3:
        time.sleep(float(words[1]))
        return words[2]
    return f"echo: {message.content}"
