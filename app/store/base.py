"""What every store does.  Four kinds of state, each a few methods:

* pushes: the journal, one record per push, which is also the retry dedup and
  the lease of the run that handles it (see :class:`PushRecord`);
* held replies: late replies waiting for a follower's next message;
* values: short strings with an expiry, for the access token and its refresh lock;
* jobs: the mass and template sends and their finish results;
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ..jobs import Job

LEASE = 3.0  # a run's lease lapses this long after its claim or last renewal, unless renewed

# A push's status in the journal.  ``running``: its handlers are running (or their worker died
# and the lease lapsed); the others are final, but for ``unfinished`` (the worker stopped before
# the run ended), which may be run again like a lapsed run.
RUNNING, ANSWERED, HANDLER_FAILED = "running", "answered", "failed"  # failed: a receiver raised
ABANDONED, UNFINISHED, LATE_REPLY_FAILED = "abandoned", "unfinished", "late_reply_failed"
RECEIVED = "received"  # journals written before leases existed
PUSH_STATUSES = (HANDLER_FAILED, ABANDONED, UNFINISHED, LATE_REPLY_FAILED, ANSWERED, RUNNING)
MAX_ATTEMPTS = 2  # a push's handlers run at most twice: once, and once more if that run died


@dataclass(frozen=True)
class PushRecord:
    """A push in the journal."""

    key: str
    kind: str
    status: str
    reply: bytes | None
    received_at: float  # when its first delivery arrived (wall clock)
    deliveries: int  # how many deliveries of it have arrived, on any worker or host
    attempts: int  # how many runs of its handlers have started
    lease_until: float  # a running push whose lease is past has lost its run
    late: str | None = None  # how a reply that missed its delivery's deadline goes out
    body: bytes | None = None  # the push's XML, where asked for

    def can_take_over(self, now: float) -> bool:
        """Whether a new run may start: the last one died (or was stopped) and the push has a run left."""
        lost = (self.status == RUNNING and self.lease_until < now) or self.status == UNFINISHED
        return lost and self.attempts < MAX_ATTEMPTS


@dataclass(frozen=True)
class Claim:
    """What a delivery learns from claiming its push."""

    record: PushRecord
    runs: bool  # this delivery holds the lease now: it starts the run
    held: bool = True  # a held reply may be waiting for the follower named in the claim (look before running)


class StoreUnavailable(Exception):
    """The store cannot take a write now: the message says why, without any secret."""


def to_json(value: object) -> str:
    """How both stores keep a job's counts and details: compact JSON, Chinese as is."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class Store(Protocol):
    # --- pushes ---------------------------------------------------------------
    def claim_push(
        self, key: str, kind: str, body: bytes, ttl: int, owner: str, lease: float, openid: str | None = None
    ) -> Claim:
        """Count a delivery of the push under ``key``, journalling it if it is new.

        The claim runs (``owner`` holds the lease for ``lease`` seconds) when the push
        is new, or when :meth:`PushRecord.can_take_over`.  All in one atomic step.
        With ``openid`` (a follower's message), ``Claim.held`` may be False to say that
        no reply is held for them, which spares the request a look of its own.
        """

    def take_over(self, key: str, owner: str, lease: float) -> bool:
        """Take the lease of a push whose run was lost, as a claim would, without counting a delivery."""

    def renew_leases(self, keys: Sequence[str], owner: str, until: float) -> None:
        """Extend the leases ``owner`` holds on ``keys``."""

    def finish_push(self, key: str, status: str, reply: bytes | None) -> PushRecord | None:
        """Record how a running push was handled; the record as finished, or None if it was not running."""

    def finish_pushes(self, outcomes: Sequence[tuple[str, str, bytes | None]]) -> None:
        """Record several ``(key, status, reply)`` outcomes at once, each only if its push is still running."""

    def mark_late(self, key: str, how: str) -> bool:
        """Mark a running push's reply late (``how`` it goes out); False if the push is not running."""

    def get_push(self, key: str, with_body: bool = False) -> PushRecord | None:
        """The live record under ``key`` (with the push's XML when ``with_body``)."""

    def list_pushes(self, status: str | None = None, limit: int = 100) -> list[PushRecord]:
        """Live records, newest first (by ``received_at``), optionally only those with ``status``; no bodies."""

    def lapsed_runs(self, now: float, limit: int) -> list[PushRecord]:
        """Lost runs, with their bodies: running pushes whose lease is past ``now``, and unfinished ones."""

    def abandon(self, key: str) -> bool:
        """Journal a lost run (see :meth:`lapsed_runs`) as abandoned; False if it is not one."""

    def mark_unfinished(self, key: str, owner: str) -> bool:
        """At shutdown: journal the run ``owner`` still holds as unfinished; False if it ended or is another's."""

    def set_push_status(self, key: str, status: str) -> None:
        """Overwrite the status of a push (a stopped worker's unfinished run), and end its lease."""

    # --- held replies -----------------------------------------------------------
    def hold_reply(self, openid: str, reply: bytes, ttl: float, push: str = "") -> None:
        """Keep ``reply`` for ``openid``, after the ones already held.

        ``push`` is the key of the push the reply belongs to: its journal record is kept
        at least as long as the hold, so that an expired hold can be recorded on it.
        """

    def take_held_reply(self, openid: str) -> bytes | None:
        """Remove and return the oldest live reply held for ``openid``."""

    def expired_holds(self, now: float, limit: int) -> list[str]:
        """Remove held replies whose time ran out before the follower wrote; their pushes' keys."""

    def sweep_values(self, now: float, limit: int) -> int:
        """Remove up to ``limit`` values whose time ran out (a store whose values expire by themselves: 0)."""

    def checkpoint(self) -> None:
        """Upkeep a background thread does every second, off the request path (SQLite: its WAL)."""

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

    def mark_job_deleted(self, kind: str, msg_id: str, deleted_at: float, article_idx: int | None = None) -> bool:
        """Note that the job was withdrawn (its ``article_idx``, or all of it); False if no such job is recorded.

        Its status and finish result stay as they were.
        """

    def get_job(self, kind: str, msg_id: str) -> Job | None: ...

    def list_jobs(self, status: str | None = None, limit: int = 100) -> list[Job]:
        """Newest first, optionally only those with ``status``."""

    # --- health ---------------------------------------------------------------
    def check_writable(self, timeout: float, min_free_bytes: int = 0) -> None:
        """Write and remove a probe within ``timeout`` seconds, or raise :class:`StoreUnavailable`.

        A file store also fails the probe when its filesystem has less than ``min_free_bytes`` free.
        """

    def close(self) -> None: ...
