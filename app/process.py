"""This process's id, known without a system call each time it is asked.

Connections, pools and leases belong to one process and are checked against its id
on every store call; glibc no longer caches ``getpid``, so each ``os.getpid()`` is a
system call (several microseconds on a virtual machine, several per push).  The id
is read once here and again in a forked child.
"""

from __future__ import annotations

import os

_pid = os.getpid()


def _forked() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_forked)


def pid() -> int:
    """``os.getpid()``, cached."""
    return _pid
