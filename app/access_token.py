"""The access token's lifecycle: cached in the store, refreshed ahead of expiry,
one refresh at a time across threads, processes and hosts.

The cache holds one JSON value under ``access_token``.  A refresh takes the lock
``access_token:lock`` in the store, then reads the cache again: whoever waited
for the lock finds the token the holder fetched and makes no request of its own.
Each fetch, and each fetch that failed, is sent as :data:`app.metrics.token_refreshed`.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .metrics import token_refreshed
from .store import Store

log = logging.getLogger(__name__)

CACHE_KEY = "access_token"
LOCK_KEY = "access_token:lock"
REFRESH_AHEAD = 300  # seconds before expiry at which a new token is fetched
REFETCH_AFTER = 60  # within REFRESH_AHEAD, ask again at most this often
LAST_SECONDS = 5  # a token this close to expiry is never used
WAIT_STEP = 0.05


@dataclass(frozen=True)
class CachedToken:
    token: str
    expires_at: float
    fetched_at: float
    raw: str  # the stored JSON, so a failed token is dropped only if still the one cached

    @property
    def fresh(self) -> bool:
        """Usable without asking WeChat again.

        Inside the last REFRESH_AHEAD seconds WeChat's stable endpoint may hand back
        the same token, so a token fetched a moment ago stays usable until its last
        seconds instead of sending every call to the token endpoint.
        """
        now = time.time()
        if now < self.expires_at - REFRESH_AHEAD:
            return True
        return now < self.expires_at - LAST_SECONDS and now - self.fetched_at < REFETCH_AFTER


class TokenCache:
    """``fetch(force)`` asks WeChat for a token and returns ``(token, expires_in)``."""

    def __init__(self, store: Store, fetch: Callable[[bool], tuple[str, int]], fetch_timeout: float = 45.0) -> None:
        """``fetch_timeout`` bounds one fetch with its retries: the lock outlives it, and waiters wait that long."""
        self.store = store
        self.fetch = fetch
        self.lock_ttl = fetch_timeout + 5
        self.wait_timeout = fetch_timeout + 5
        self._thread_lock = threading.Lock()

    def cached(self) -> CachedToken | None:
        raw = self.store.get_value(CACHE_KEY)
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            return CachedToken(data["token"], float(data["expires_at"]), float(data["fetched_at"]), raw)
        except (ValueError, KeyError, TypeError):
            log.error("cached access token is unreadable; fetching a new one")
            return None

    def get(self) -> str:
        """A token that is valid for at least a few more minutes."""
        cached = self.cached()
        if cached is not None and cached.fresh:
            return cached.token
        return self.refresh()

    def invalidate(self, token: str) -> None:
        """Drop ``token`` from the cache, but only if it is still the one cached."""
        cached = self.cached()
        if cached is not None and cached.token == token:
            self.store.delete_value(CACHE_KEY, expected=cached.raw)

    def refresh(self, failed_token: str | None = None, force: bool = False, now: bool = False) -> str:
        """Fetch a new token, unless another thread or process just did.

        ``failed_token`` is one WeChat refused: a cached copy of it does not count
        as fresh.  WeChat is asked in force mode only if it hands the refused token
        back, as a forced refresh revokes the token everyone else holds and is
        limited to a few a day.  ``now`` always asks WeChat, ``force`` always asks
        in force mode.
        """

        def usable(cached: CachedToken | None) -> bool:
            fetch_anyway = force or now
            return not fetch_anyway and cached is not None and cached.fresh and cached.token != failed_token

        deadline = time.monotonic() + self.wait_timeout
        with self._thread_lock:
            owner = secrets.token_hex(8)
            while not self.store.add_value(LOCK_KEY, owner, self.lock_ttl):
                cached = self.cached()
                if usable(cached):
                    return cached.token
                if time.monotonic() > deadline:
                    raise TimeoutError("waited too long for another worker to refresh the access token")
                time.sleep(WAIT_STEP)
            try:
                cached = self.cached()
                if usable(cached):
                    return cached.token
                try:
                    token, expires_in = self.fetch(force)
                    if failed_token is not None and token == failed_token and not force:
                        token, expires_in = self.fetch(True)
                except Exception:
                    token_refreshed.send(self, outcome="failed")
                    raise
                token_refreshed.send(self, outcome="fetched")
                now = time.time()
                value = json.dumps({"token": token, "expires_at": now + expires_in, "fetched_at": now})
                self.store.set_value(CACHE_KEY, value, expires_in)
                log.info("fetched a new access token, valid for %ds", expires_in)
                return token
            finally:
                self.store.delete_value(LOCK_KEY, expected=owner)
