"""The SQLite store's jobs: the mass and template sends tracked until WeChat's finish push.

A part of :class:`app.store.sqlite.SQLiteStore` of its own, as the jobs share
nothing with the push journal but the file.
"""

from __future__ import annotations

import json
import sqlite3

from ..jobs import Job
from .base import to_json

JOBS_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    kind TEXT NOT NULL,
    msg_id TEXT NOT NULL,
    target TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    status TEXT NOT NULL,
    finish_status TEXT,
    counts TEXT NOT NULL DEFAULT '{}',
    detail TEXT NOT NULL DEFAULT '{}',
    finished_at REAL,
    PRIMARY KEY (kind, msg_id)
);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_at);
"""


class SQLiteJobs:
    """The job methods of :class:`app.store.sqlite.SQLiteStore`, which gives them ``db``."""

    db: sqlite3.Connection

    def mark_job_deleted(self, kind: str, msg_id: str, deleted_at: float, article_idx: int | None = None) -> bool:
        cursor = self.db.execute(
            "UPDATE jobs SET deleted_at = ?, deleted_article = ? WHERE kind = ? AND msg_id = ?",
            (deleted_at, article_idx, kind, msg_id),
        )
        return cursor.rowcount > 0

    def save_job(self, job: Job) -> None:
        self.db.execute(
            "INSERT INTO jobs (kind, msg_id, target, created_at, status, counts, detail) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (kind, msg_id) DO UPDATE SET target = excluded.target, created_at = excluded.created_at, "
            "detail = json_patch(jobs.detail, excluded.detail)",
            (job.kind, job.msg_id, job.target, job.created_at, job.status, to_json(job.counts), to_json(job.detail)),
        )

    def finish_job(self, job: Job) -> None:
        self.db.execute(
            "INSERT INTO jobs (kind, msg_id, target, created_at, status, finish_status, counts, detail, finished_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (kind, msg_id) DO UPDATE SET status = excluded.status, "
            "finish_status = excluded.finish_status, counts = excluded.counts, "
            "detail = json_patch(jobs.detail, excluded.detail), finished_at = excluded.finished_at",
            (*_job_key(job), job.status, job.finish_status, to_json(job.counts), to_json(job.detail), job.finished_at),
        )

    def get_job(self, kind: str, msg_id: str) -> Job | None:
        row = self.db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE kind = ? AND msg_id = ?", (kind, msg_id))
        return next((_job(found) for found in row), None)

    def list_jobs(self, status: str | None = None, limit: int = 100) -> list[Job]:
        where, args = ("", (limit,)) if status is None else ("WHERE status = ? ", (status, limit))
        rows = self.db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs {where}ORDER BY created_at DESC LIMIT ?", args)
        return [_job(row) for row in rows]


_JOB_COLUMNS = (
    "msg_id, kind, target, created_at, status, finish_status, counts, detail, finished_at, deleted_at, deleted_article"
)
# Columns added to ``jobs`` with ``mass delete``'s note; an older store gets them at start-up.
JOB_DELETE_COLUMNS = {"deleted_at": "REAL", "deleted_article": "INTEGER"}


def add_job_columns(connection: sqlite3.Connection) -> None:
    columns = {row[1] for row in connection.execute("PRAGMA table_info(jobs)")}
    for name, declaration in JOB_DELETE_COLUMNS.items():
        if name not in columns:
            connection.execute(f"ALTER TABLE jobs ADD COLUMN {name} {declaration}")


def _job_key(job: Job) -> tuple[str, str, str, float]:
    return job.kind, job.msg_id, job.target, job.created_at


def _job(row: tuple) -> Job:
    """A ``jobs`` row (in ``_JOB_COLUMNS`` order, which is :class:`Job`'s field order) as a Job."""
    return Job(*row[:6], json.loads(row[6]), json.loads(row[7]), *row[8:])  # type: ignore[misc]
