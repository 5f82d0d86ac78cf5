"""What every store does.  Three kinds of state, each a few methods:

* pushes: the retry dedup and the journal in one record per push;
* values: short strings with an expiry, for the access token and its refresh lock;
* jobs: the mass and template sends and their finish results;
"""

from __future__ import annotations

import json
from typing import Protocol

from ..jobs import Job

RECEIVED, ANSWERED, FAILED = "received", "answered", "failed"


class StoreUnavailable(Exception):
    """The store cannot take a write now: the message says why, without any secret."""


def to_json(value: object) -> str:
    """How both stores keep a job's counts and details: compact JSON, Chinese as is."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class Store(Protocol):
    # --- pushes ---------------------------------------------------------------
    def claim_push(self, key: str, kind: str, body: bytes, ttl: int) -> bool:
        """Journal a push under ``key``; False if a live record already has that key."""

    def finish_push(self, key: str, status: str, reply: bytes | None) -> None:
        """Record how the push was handled and the reply it got."""

    def push_outcome(self, key: str) -> tuple[str, bytes | None] | None:
        """``(status, reply)`` of the push under ``key``, or None if there is none."""

    # --- values ---------------------------------------------------------------
    def get_value(self, key: str) -> str | None:
        """The live value under ``key``."""

    def set_value(self, key: str, value: str, ttl: float) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds."""

    def add_value(self, key: str, value: str, ttl: float) -> bool:
        """Store ``value`` only if ``key`` holds no live value; True if it did."""

    def delete_value(self, key: str, expected: str | None = None) -> bool:
        """Delete ``key`` (only if it still holds ``expected``, when given)."""

    # --- jobs -----------------------------------------------------------------
    def save_job(self, job: Job) -> None:
        """Record a send; keeps a finish result that arrived first."""

    def finish_job(self, job: Job) -> None:
        """Record a finish result; keeps what the send recorded."""

    def get_job(self, kind: str, msg_id: str) -> Job | None: ...

    def list_jobs(self, status: str | None = None, limit: int = 100) -> list[Job]:
        """Newest first, optionally only those with ``status``."""

    # --- health ---------------------------------------------------------------
    def check_writable(self, timeout: float, min_free_bytes: int = 0) -> None:
        """Write and remove a probe within ``timeout`` seconds, or raise :class:`StoreUnavailable`.

        A file store also fails the probe when its filesystem has less than ``min_free_bytes`` free.
        """

    def close(self) -> None: ...
