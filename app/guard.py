"""Store calls on the request path, bounded in time and skipped while the store is failing.

Each store call already gives up quickly (``WECHAT_STORE_TIMEOUT``: the SQLite busy
timeout, the Redis socket timeout).  After a failure the store is skipped for
``skip_for`` seconds, so that a hung store costs one short timeout every few
seconds, not one per call: every delivery meanwhile runs its own handlers and
is answered by its deadline.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from .logs import Throttle
from .metrics import Metrics

log = logging.getLogger(__name__)

T = TypeVar("T")


class StoreSkipped(Exception):
    """The store failed a moment ago and is being skipped, or failed now."""


class StoreGuard:
    def __init__(self, metrics: Metrics, throttle: Throttle, skip_for: float = 5.0) -> None:
        self.metrics = metrics
        self.throttle = throttle
        self.skip_for = skip_for
        self._skip_until = 0.0
        self._lock = threading.Lock()

    @property
    def skipping(self) -> bool:
        return time.monotonic() < self._skip_until

    def call(self, operation: str, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``function(*args, **kwargs)``, or :class:`StoreSkipped` if the store is skipped or fails."""
        if self.skipping:
            raise StoreSkipped(operation)
        try:
            return function(*args, **kwargs)
        except Exception as exc:
            self.failed(operation, exc)
            raise StoreSkipped(operation) from exc

    def failed(self, operation: str, exc: BaseException) -> None:
        """Count, log (one line per operation and minute) and start skipping the store."""
        with self._lock:
            self._skip_until = time.monotonic() + self.skip_for
        self.metrics.store_failures.labels(operation).inc()
        self.throttle.log(
            log,
            logging.ERROR,
            f"store {operation}",
            "store failed in %s (%s: %s); skipping it for %gs: pushes are handled without dedup or late replies",
            operation,
            type(exc).__name__,
            exc,
            self.skip_for,
        )
