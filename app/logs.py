"""Log lines that do not flood: one line per kind of failure per interval, with a count.

A store outage or a stream of forged requests repeats the same failure on every
request; the log should say so once a minute, not once a request.
"""

from __future__ import annotations

import logging
import threading
import time

INTERVAL = 60.0


class Throttle:
    """Logs the first occurrence of each ``kind`` at once, then at most once per ``interval``.

    A line logged after others were held back says how many there were.
    """

    def __init__(self, interval: float = INTERVAL) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._kinds: dict[str, tuple[float, int]] = {}  # kind -> (when last logged, held back since)

    def log(self, logger: logging.Logger, level: int, kind: str, message: str, *args: object) -> bool:
        """Log ``message % args`` unless ``kind`` was logged within the interval; True if logged."""
        now = time.monotonic()
        with self._lock:
            logged_at, held = self._kinds.get(kind, (float("-inf"), 0))
            if now - logged_at < self.interval:
                self._kinds[kind] = (logged_at, held + 1)
                return False
            self._kinds[kind] = (now, 0)
        if held:
            message += f" (and {held} more like it in the last {self.interval:g}s)"
        logger.log(level, message, *args)
        return True
