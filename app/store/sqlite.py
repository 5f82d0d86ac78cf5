"""The embedded store: one SQLite file in WAL mode, shared by every worker process.

Each thread of each process opens its own connection (a connection never crosses a
fork).  Every statement runs in autocommit, and a write that must see a consistent
row (the upserts) is a single statement, so workers never hold a lock for long.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace

from ..process import pid as current_pid
from .base import ABANDONED, LEASE, RUNNING, UNFINISHED, Claim, PushRecord, StoreUnavailable
from .sqlite_jobs import JOBS_SCHEMA, SQLiteJobs, add_job_columns

SCHEMA = """
CREATE TABLE IF NOT EXISTS pushes (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    body BLOB,
    received_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    status TEXT NOT NULL,
    reply BLOB
);
CREATE TABLE IF NOT EXISTS held (
    id INTEGER PRIMARY KEY,
    openid TEXT NOT NULL,
    reply BLOB NOT NULL,
    expires_at REAL NOT NULL,
    push TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS held_by_openid ON held (openid, id);
CREATE INDEX IF NOT EXISTS held_by_expiry ON held (expires_at);
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS kv_by_expiry ON kv (expires_at);
"""

# Columns added to ``pushes`` with leases; an older journal gets them at start-up.
LEASE_COLUMNS = {
    "deliveries": "INTEGER NOT NULL DEFAULT 1",
    "attempts": "INTEGER NOT NULL DEFAULT 1",
    "owner": "TEXT",
    "lease_until": "REAL NOT NULL DEFAULT 0",
    "late": "TEXT",
}
# Finding lost runs.  A run whose lease was renewed (it has been going a second or more) and an
# unfinished one are in the index pushes_renewed, so the lease thread's look every second reads them
# and nothing else.  A claim is not in it (its lease_until is received_at + LEASE, to the bit), so the
# claim on every push's path writes two B-tree pages, not three: fast runs finish before their first
# renewal and never enter it.  A run that dies before its first renewal is found by reading the claims
# made since the last look instead (see _unrenewed_lapsed).  A query uses the index only when its WHERE
# holds these conditions as written here (literals, not bound parameters).
LIVE = f"(status = '{UNFINISHED}' OR (status = '{RUNNING}' AND lease_until > received_at + {LEASE}))"
UNRENEWED = f"status = '{RUNNING}' AND lease_until <= received_at + {LEASE}"
LIVE_INDEX = f"CREATE INDEX IF NOT EXISTS pushes_renewed ON pushes (lease_until) WHERE {LIVE}"
FIRST_LOOK = 100_000  # a process's first look for unrenewed lost runs reads this many claims back at most
SCHEMA_TIMEOUT = 10.0  # how long start-up waits for another process setting up the schema
BATCH_TIMEOUT = 5.0  # how long a batch of put-off outcomes waits for the lock
HOLD_MARGIN = 3600.0  # a push outlives its held reply by this much, to record what became of it
_RECORD = "key, kind, status, reply, received_at, deliveries, attempts, lease_until, late"
_NEW_COLUMNS = "key, kind, body, received_at, expires_at, status, deliveries, attempts, owner, lease_until"
_NEW_VALUES = "?, ?, ?, ?, ?, ?, 1, 1, ?, ?"
_HELD_FOR = " RETURNING (SELECT 1 FROM held WHERE openid = ? AND expires_at > ? LIMIT 1)"

# Expired pushes are swept every SWEEP_EVERY claims, looking at the SWEEP_OLDEST oldest rows
# only, so no request pays for a long delete.  Every push lives as long, and a row is only
# ever inserted (never moved to a new expiry), so rowid order is expiry order: the expired
# rows are always the oldest ones, and no index on the expiry is needed (one less to write).
SWEEP_EVERY = 256
SWEEP_OLDEST = 2048


class SQLiteStore(SQLiteJobs):
    def __init__(self, path: str, busy_timeout: float = 0.25) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._claims = 0
        self._looked_to: int | None = None  # rowid: unrenewed runs claimed up to it are settled or lapsed
        self._look_lock = threading.Lock()
        self._checkpointer = 0  # the process whose background thread checkpoints the WAL
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        # Workers start together: the schema is set up under the write lock, waiting for it longer
        # than a request would, so that each sees what the one before it did.
        connection = self._connect(timeout=max(busy_timeout, SCHEMA_TIMEOUT))
        try:
            connection.execute("BEGIN IMMEDIATE")
            for statement in (SCHEMA + JOBS_SCHEMA).split(";"):
                if statement.strip():
                    connection.execute(statement)
            columns = {row[1] for row in connection.execute("PRAGMA table_info(pushes)")}
            for name, declaration in LEASE_COLUMNS.items():
                if name not in columns:
                    connection.execute(f"ALTER TABLE pushes ADD COLUMN {name} {declaration}")
            connection.execute("DROP INDEX IF EXISTS pushes_live")  # the index of every running push, before
            connection.execute(LIVE_INDEX)
            add_job_columns(connection)
            connection.execute("COMMIT")
        finally:
            connection.close()

    def _connect(self, timeout: float | None = None) -> sqlite3.Connection:
        connection = sqlite3.connect(
            self.path,
            timeout=self.busy_timeout if timeout is None else timeout,
            isolation_level=None,
            check_same_thread=False,
        )
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        return connection

    @property
    def db(self) -> sqlite3.Connection:
        local = self._local
        if getattr(local, "pid", None) != current_pid():
            local.connection = self._connect()
            local.pid = current_pid()
            local.checkpoints = True
        if local.checkpoints and self._checkpointer == local.pid:  # see checkpoint()
            local.connection.execute("PRAGMA wal_autocheckpoint=0")
            local.checkpoints = False
        return local.connection

    def checkpoint(self) -> None:
        """Copy the WAL into the database file, from a background thread that calls this every second.

        Otherwise SQLite does it in whichever write crosses 1,000 WAL pages: a request
        every few hundred would pay for the copy and its fsync (tens of ms).  From the
        first call on, this process's new connections leave it to this.
        """
        self._checkpointer = current_pid()
        self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def close(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None and self._local.pid == current_pid():
            connection.close()
        self._local = threading.local()

    # --- pushes ---------------------------------------------------------------

    def claim_push(
        self, key: str, kind: str, body: bytes, ttl: int, owner: str, lease: float, openid: str | None = None
    ) -> Claim:
        now = time.time()
        self._claims += 1
        if self._claims % SWEEP_EVERY == 0:
            # Never the newest row: rowids must never go back, or a look for lost runs (which
            # remembers how far it read) would miss claims given a rowid it has passed.
            self.db.execute(
                "DELETE FROM pushes WHERE rowid IN (SELECT rowid FROM pushes ORDER BY rowid LIMIT ?) "
                "AND expires_at < ? AND rowid < (SELECT max(rowid) FROM pushes)",
                (SWEEP_OLDEST, now),
            )
        new = PushRecord(key, kind, RUNNING, None, now, 1, 1, now + lease)
        insert = f"INSERT INTO pushes ({_NEW_COLUMNS}) VALUES ({_NEW_VALUES}) ON CONFLICT (key) DO NOTHING"
        values = (key, kind, body, now, now + ttl, RUNNING, owner, now + lease)
        # The common case, a new push, in one statement, which also says whether a reply is held for
        # the follower (nearly always not): no second statement for that.
        # (fetchall: the statement, and so its write, is done only once its rows are all read)
        inserted = self.db.execute(insert + _HELD_FOR, (*values, openid, now)).fetchall()
        if inserted:
            return Claim(new, runs=True, held=inserted[0][0] is not None)
        with self._transaction() as db:
            row = db.execute(f"SELECT {_RECORD}, expires_at FROM pushes WHERE key = ?", (key,)).fetchone()
            if row is None or row[-1] < now:  # expired and not swept yet: a new push, as the newest row
                newest = db.execute("SELECT max(rowid) FROM pushes").fetchone()[0]
                db.execute("DELETE FROM pushes WHERE key = ?", (key,))
                db.execute(
                    f"INSERT INTO pushes (rowid, {_NEW_COLUMNS}) VALUES (?, {_NEW_VALUES})", (newest + 1, *values)
                )
                return Claim(new, runs=True)
            record = _record(row[:-1])
            record = replace(record, deliveries=record.deliveries + 1)
            if record.can_take_over(now):
                record = replace(record, status=RUNNING, attempts=record.attempts + 1, lease_until=now + lease)
                db.execute(
                    "UPDATE pushes SET deliveries = ?, status = ?, attempts = ?, owner = ?, lease_until = ? "
                    "WHERE key = ?",
                    (record.deliveries, RUNNING, record.attempts, owner, record.lease_until, key),
                )
                return Claim(record, runs=True)
            db.execute("UPDATE pushes SET deliveries = ? WHERE key = ?", (record.deliveries, key))
            return Claim(record, runs=False)

    def take_over(self, key: str, owner: str, lease: float) -> bool:
        now = time.time()
        with self._transaction() as db:
            row = db.execute(f"SELECT {_RECORD} FROM pushes WHERE key = ?", (key,)).fetchone()
            if row is None or not _record(row).can_take_over(now):
                return False
            db.execute(
                "UPDATE pushes SET status = ?, attempts = attempts + 1, owner = ?, lease_until = ? WHERE key = ?",
                (RUNNING, owner, now + lease, key),
            )
            return True

    def renew_leases(self, keys: Sequence[str], owner: str, until: float) -> None:
        # A renewed lease is never shorter than the first (a clock stepped back must not take a
        # renewed run out of the index of renewed runs: see LIVE).
        self.db.executemany(
            f"UPDATE pushes SET lease_until = max(?, received_at + {LEASE} + 0.001) "
            "WHERE key = ? AND owner = ? AND status = ?",
            [(until, key, owner, RUNNING) for key in keys],
        )

    def finish_push(self, key: str, status: str, reply: bytes | None) -> PushRecord | None:
        row = self.db.execute(
            f"UPDATE pushes SET status = ?, reply = ? WHERE key = ? AND status = ? RETURNING {_RECORD}",
            (status, reply, key, RUNNING),
        ).fetchone()
        return None if row is None else _record(row)

    def finish_pushes(self, outcomes: Sequence[tuple[str, str, bytes | None]]) -> None:
        # Off the request path, so it may wait for the lock longer than a request would.
        db = self.db
        db.execute(f"PRAGMA busy_timeout = {int(BATCH_TIMEOUT * 1000)}")
        try:
            with self._transaction() as db:  # one transaction for them all: the point of putting them off
                db.executemany(
                    "UPDATE pushes SET status = ?, reply = ? WHERE key = ? AND status = ?",
                    [(status, reply, key, RUNNING) for key, status, reply in outcomes],
                )
        finally:
            db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")

    def mark_late(self, key: str, how: str) -> bool:
        cursor = self.db.execute("UPDATE pushes SET late = ? WHERE key = ? AND status = ?", (how, key, RUNNING))
        return cursor.rowcount == 1

    def get_push(self, key: str, with_body: bool = False) -> PushRecord | None:
        row = self.db.execute(
            f"SELECT {_RECORD}, {'body' if with_body else 'NULL'} FROM pushes WHERE key = ? AND expires_at >= ?",
            (key, time.time()),
        ).fetchone()
        return None if row is None else replace(_record(row[:-1]), body=row[-1])

    def list_pushes(self, status: str | None = None, limit: int = 100) -> list[PushRecord]:
        # No index for this: every claim would pay to write it, for an operator's command.  A row
        # is only ever inserted, so the newest rowids are the newest pushes: the inner query walks
        # the table backwards and stops at ``limit`` matches (with a status filter, at worst it
        # reads the journal of a TTL), and the outer one orders those few by received_at, which
        # two workers' inserts can leave a few milliseconds out of rowid order.
        where, values = "expires_at >= ?", [time.time()]
        if status is not None:
            where, values = where + " AND status = ?", [*values, status]
        rows = self.db.execute(
            f"SELECT * FROM (SELECT {_RECORD} FROM pushes WHERE {where} ORDER BY rowid DESC LIMIT ?) "
            "ORDER BY received_at DESC",
            (*values, limit),
        )
        return [_record(row) for row in rows]

    def lapsed_runs(self, now: float, limit: int) -> list[PushRecord]:  # every second: see LIVE
        rows = self.db.execute(
            f"SELECT {_RECORD}, body FROM pushes WHERE {LIVE} AND lease_until < ? ORDER BY lease_until LIMIT ?",
            (now, limit),
        ).fetchall()
        found = [replace(_record(row[:-1]), body=row[-1]) for row in rows]
        return found + self._unrenewed_lapsed(now, limit - len(found))

    def _unrenewed_lapsed(self, now: float, limit: int) -> list[PushRecord]:
        """Lapsed runs that were never renewed, read from the claims made since the last look.

        Each look starts at the oldest claim it cannot yet settle: a run still inside its
        first lease, or one that lapsed and is still running (its re-run or abandonment
        settles it).  Those are the last second's claims, and the few of dead workers; so
        a look reads about the pushes of a second, however big the journal.
        """
        with self._look_lock:
            db = self.db
            top = db.execute("SELECT max(rowid) FROM pushes").fetchone()[0] or 0
            start = self._looked_to
            if start is None or start > top:  # this process's first look, or the journal was emptied
                start = max(0, top - FIRST_LOOK)
            unsettled = f"rowid > ? AND rowid <= ? AND {UNRENEWED}"
            oldest = db.execute(f"SELECT min(rowid) FROM pushes WHERE {unsettled}", (start, top)).fetchone()[0]
            self._looked_to = top if oldest is None else oldest - 1
            if oldest is None or limit <= 0:
                return []
            rows = db.execute(
                f"SELECT {_RECORD}, body FROM pushes WHERE {unsettled} AND lease_until < ? ORDER BY rowid LIMIT ?",
                (oldest - 1, top, now, limit),
            )
            return [replace(_record(row[:-1]), body=row[-1]) for row in rows]

    def abandon(self, key: str) -> bool:
        cursor = self.db.execute(
            "UPDATE pushes SET status = ? WHERE key = ? AND status IN (?, ?) AND lease_until < ?",
            (ABANDONED, key, RUNNING, UNFINISHED, time.time()),
        )
        return cursor.rowcount == 1

    def mark_unfinished(self, key: str, owner: str) -> bool:
        cursor = self.db.execute(
            "UPDATE pushes SET status = ?, lease_until = 0 WHERE key = ? AND status = ? AND owner = ?",
            (UNFINISHED, key, RUNNING, owner),
        )
        return cursor.rowcount == 1

    def set_push_status(self, key: str, status: str) -> None:
        self.db.execute("UPDATE pushes SET status = ?, lease_until = 0 WHERE key = ?", (status, key))

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that takes the lock at once, so that what it reads stays true."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # never leave this thread's connection holding the write lock
                db.execute("ROLLBACK")
            raise

    # --- held replies -----------------------------------------------------------

    def hold_reply(self, openid: str, reply: bytes, ttl: float, push: str = "") -> None:
        expires_at = time.time() + ttl
        with self._transaction() as db:
            db.execute(
                "INSERT INTO held (openid, reply, expires_at, push) VALUES (?, ?, ?, ?)",
                (openid, reply, expires_at, push),
            )
            if push:
                db.execute(
                    "UPDATE pushes SET expires_at = max(expires_at, ?) WHERE key = ?", (expires_at + HOLD_MARGIN, push)
                )

    def take_held_reply(self, openid: str) -> bytes | None:
        now = time.time()
        while True:  # a plain read first: nearly every follower has nothing held, and a read takes no lock
            row = self.db.execute(
                "SELECT id, reply FROM held WHERE openid = ? AND expires_at > ? ORDER BY id LIMIT 1", (openid, now)
            ).fetchone()
            if row is None:
                return None
            if self.db.execute("DELETE FROM held WHERE id = ?", (row[0],)).rowcount == 1:
                return row[1]

    def count_pushes(self) -> int:
        return self.db.execute("SELECT count(*) FROM pushes").fetchone()[0]

    def expired_holds(self, now: float, limit: int) -> list[str]:
        rows = self.db.execute(
            "DELETE FROM held WHERE id IN (SELECT id FROM held WHERE expires_at <= ? LIMIT ?) RETURNING push",
            (now, limit),
        ).fetchall()
        return [row[0] for row in rows if row[0]]

    def sweep_values(self, now: float, limit: int) -> int:
        # Plugin values and sessions are set once per follower and may never be read again.
        return self.db.execute(
            "DELETE FROM kv WHERE key IN (SELECT key FROM kv WHERE expires_at <= ? LIMIT ?)", (now, limit)
        ).rowcount

    # --- values ---------------------------------------------------------------

    def get_value(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM kv WHERE key = ? AND expires_at > ?", (key, time.time())).fetchone()
        return None if row is None else row[0]

    def set_value(self, key: str, value: str, ttl: float) -> None:
        self.db.execute(
            "INSERT INTO kv (key, value, expires_at) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at",
            (key, value, time.time() + ttl),
        )

    def add_value(self, key: str, value: str, ttl: float) -> bool:
        now = time.time()
        cursor = self.db.execute(
            "INSERT INTO kv (key, value, expires_at) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at "
            "WHERE kv.expires_at <= ?",
            (key, value, now + ttl, now),
        )
        return cursor.rowcount == 1

    def delete_value(self, key: str, expected: str | None = None) -> bool:
        if expected is None:
            cursor = self.db.execute("DELETE FROM kv WHERE key = ?", (key,))
        else:
            cursor = self.db.execute("DELETE FROM kv WHERE key = ? AND value = ?", (key, expected))
        return cursor.rowcount == 1

    # --- health ---------------------------------------------------------------

    def check_writable(self, timeout: float, min_free_bytes: int = 0) -> None:
        """A write transaction on a connection of its own, that waits for the lock no longer than ``timeout``.

        SQLite can go on reusing WAL pages on a full disk, so a probe that writes is not
        enough: the filesystem's free space is checked too.
        """
        directory = os.path.dirname(os.path.abspath(self.path))
        try:
            stats = os.statvfs(directory)
        except OSError as exc:
            raise StoreUnavailable(f"cannot read the free space of {directory}: {exc.strerror}") from None
        free = stats.f_bavail * stats.f_frsize
        if free < min_free_bytes:
            raise StoreUnavailable(f"{directory} has {free} bytes free, less than {min_free_bytes}")
        try:
            connection = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
            try:
                connection.execute("BEGIN IMMEDIATE")
                connection.execute(
                    "INSERT INTO kv (key, value, expires_at) VALUES ('health:probe', '1', 0) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
                )
                connection.execute("DELETE FROM kv WHERE key = 'health:probe'")
                connection.execute("COMMIT")
            finally:
                connection.close()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite cannot write {self.path}: {exc}") from None


def _record(row: tuple) -> PushRecord:
    key, kind, status, reply, received_at, deliveries, attempts, lease_until, late = row
    return PushRecord(key, kind, status, reply, received_at, deliveries, attempts, lease_until, late)
