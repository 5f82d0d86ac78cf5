"""A follower's session: a small dict a plugin keeps between one push and the next.

Every receiver may take ``session``::

    @on_text("weather")
    def ask_city(session):
        session["waiting_for"] = "city"
        return "Which city?"

    @message_received.connect_via("text")
    def city(message, session):
        if session.pop("waiting_for", None) == "city":
            return forecast(message.content)

It is kept in the store (the value ``session:<openid>``, JSON) for
``WECHAT_SESSION_TTL`` seconds after it last changed, and shared by every
worker.  It is made only for a receiver that names it, and costs no store call
until it is read: the first read is one, and it is written back once, after every
receiver has run, only if its JSON changed (so a change inside a nested list
counts too).  An emptied session is deleted; one over 64 KiB of JSON is not
written (the error is logged).  Two pushes of one follower handled at once each
see the session as it was before both; the one that ends last is kept.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .store import Store

log = logging.getLogger(__name__)

KEY_PREFIX = "session:"
MAX_BYTES = 65536  # a session is a few small values; a larger one is a plugin's bug, kept out of the store


class Session(MutableMapping[str, Any]):
    """The session of the follower ``openid``; read from ``store`` on first use."""

    __slots__ = ("_store", "_openid", "_ttl", "_data", "_saved")

    def __init__(self, store: Store, openid: str, ttl: float) -> None:  # on every push: kept to the least
        self._store = store
        self._openid = openid
        self._ttl = ttl
        self._data: dict[str, Any] | None = None
        self._saved: str | None = None  # the JSON in the store, as read or last written

    @property
    def loaded(self) -> bool:
        """Whether a receiver has used the session (and so whether :meth:`save` has anything to do)."""
        return self._data is not None

    def _load(self) -> dict[str, Any]:
        if self._data is None:
            text = self._store.get_value(KEY_PREFIX + self._openid)
            data: Any = {}
            if text is not None:
                try:
                    data = json.loads(text)
                except ValueError:
                    data = None
                if not isinstance(data, dict):
                    log.warning("a follower's session in the store is not a JSON object; starting it afresh")
                    data = {}
            self._saved = text
            self._data = data
        return self._data

    def __getitem__(self, key: str) -> Any:
        return self._load()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._load()[key] = value

    def __delitem__(self, key: str) -> None:
        del self._load()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())

    def __repr__(self) -> str:
        return f"<Session {self._data if self._data is not None else '(not read)'}>"

    def save(self) -> bool:
        """Write the session back if it changed since it was read; True if the store was written.

        Raises ``TypeError`` for a value JSON cannot hold, ``ValueError`` for a session
        over :data:`MAX_BYTES` of JSON (nothing is written then).
        """
        if self._data is None:
            return False
        if not self._data:
            if self._saved is None:
                return False
            self._store.delete_value(KEY_PREFIX + self._openid)
            self._saved = None
            return True
        text = json.dumps(self._data, ensure_ascii=False, separators=(",", ":"))
        if text == self._saved:
            return False
        if len(text) > MAX_BYTES // 4 and len(text.encode()) > MAX_BYTES:
            raise ValueError(f"it is {len(text.encode())} bytes of JSON, more than {MAX_BYTES}")
        self._store.set_value(KEY_PREFIX + self._openid, text, self._ttl)
        self._saved = text
        return True
