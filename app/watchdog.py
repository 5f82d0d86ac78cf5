"""Answers a delivery at its deadline while its handlers still run on the delivery's own thread.

Under gunicorn a push's handlers run on the thread that took the delivery: no hand-off
to a pool and back, which costs two thread switches a push.  That thread cannot answer
while a handler is running, so one watchdog thread per process does, through the
socket, when a delivery's time is up (:class:`Watch`).  Whoever takes a watch first,
the delivery's thread with its reply or the watchdog at the deadline, answers; the
other does not.

The watchdog wakes for the earliest open watch, and at least every ``TICK`` while any is
open (for a stopping process's early ones); it sleeps otherwise.  Only
slow pushes reach their deadline; each is answered on a thread of its own, since the
answer may wait on the store (marking the reply late).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

from .process import pid as current_pid

log = logging.getLogger(__name__)

TICK = 0.05  # how late an early watch of a stopping process may fire


class Watch:
    """One delivery's deadline: ``fire`` runs on the watchdog's thread unless the delivery is answered first."""

    __slots__ = ("when", "fire", "early", "fired", "_lock", "_taken")

    def __init__(self, when: float, fire: Callable[[], None], early: bool) -> None:
        self.when = when
        self.fire = fire
        self.early = early  # fired at once when the process starts stopping
        self.fired = threading.Event()  # set once ``fire`` has returned (or raised)
        self._lock = threading.Lock()
        self._taken = False

    def take(self) -> bool:
        """Whether the caller is the one to answer the delivery (True once only)."""
        with self._lock:
            if self._taken:
                return False
            self._taken = True
            return True

    @property
    def taken(self) -> bool:
        return self._taken


class Watchdog:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Watch]] = []
        self._count = itertools.count()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._pid = 0

    def watch(self, when: float, fire: Callable[[], None], early: bool = False) -> Watch:
        """Call ``fire`` at ``when`` (monotonic clock) unless the watch is taken first."""
        watch = Watch(when, fire, early)
        with self._lock:
            if self._pid != current_pid():  # first use in this process: threads do not survive a fork
                self._heap, self._wake, self._pid = [], threading.Event(), current_pid()
                threading.Thread(target=self._serve, args=(self._wake,), name="wechat-watchdog", daemon=True).start()
            heapq.heappush(self._heap, (when, next(self._count), watch))
            if len(self._heap) == 1:
                self._wake.set()
        return watch

    def stop_soon(self) -> None:
        """The process is stopping: fire the watches that asked to be fired early, at the next tick.

        Safe to call from a signal handler: it takes no lock.
        """
        self._stopping = True

    def _serve(self, wake: threading.Event) -> None:
        pid = self._pid
        while self._pid == pid:
            now = time.monotonic()
            due = []
            with self._lock:
                heap = self._heap
                while heap and (heap[0][0] <= now or heap[0][2].taken):
                    due.append(heapq.heappop(heap)[2])
                if self._stopping:
                    due.extend(w for _, _, w in heap if w.early)
                    heap[:] = [entry for entry in heap if not entry[2].early]
                    heapq.heapify(heap)
                pause = min(TICK, heap[0][0] - now) if heap else None
                if pause is None:
                    wake.clear()
            for watch in due:
                if watch.take():  # a thread each: answering may wait on the store, and the next is due too
                    threading.Thread(target=_fire, args=(watch,), name="wechat-deadline", daemon=True).start()
            if pause is None:
                wake.wait()
            else:
                time.sleep(max(0.0, pause))


def _fire(watch: Watch) -> None:
    try:
        watch.fire()
    except Exception:
        log.exception("answering a delivery at its deadline failed")
    finally:
        watch.fired.set()
