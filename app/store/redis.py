"""The Redis store, for more than one machine.  Same interface as the SQLite store.

Keys live under one prefix: ``push:<key>`` (a hash whose creation is the dedup
claim) with the sorted sets ``running`` (running pushes by lease expiry) and
``pushes`` (every push by arrival, for listing; capped at ``PUSH_INDEX_CAP``),
``held:<openid>`` (a list of held replies), ``kv:<key>`` (values with a TTL), and
``job:<kind>:<msg_id>`` (a hash) indexed by the sorted set ``jobs``.  Writes that
must check before they write are Lua scripts, so each is one atomic step.

Every call gives up after ``timeout`` seconds and is never retried by the client:
on the request path a hung Redis must cost one short timeout, not ten long ones.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import replace

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..jobs import Job
from .base import ABANDONED, UNFINISHED, Claim, PushRecord, StoreUnavailable, to_json
from .redis_scripts import (
    ABANDON,
    CLAIM,
    DELETE_IF,
    EXPIRED_HOLDS,
    FIELDS,
    FINISH,
    FORGET,
    HELD_EXPIRY,
    HOLD_MARGIN,
    MARK_LATE,
    PREFIX,
    PUSH_INDEX,
    RENEW,
    RUNNING_SET,
    SET_STATUS,
    TAKE_HELD,
    TAKE_OVER_ONLY,
    UPSERT_JOB,
)


class RedisStore:
    def __init__(self, url: str, timeout: float = 0.25) -> None:
        self.redis = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
        )
        self.redis.ping()
        self._claim = self.redis.register_script(CLAIM)
        self._take_over = self.redis.register_script(TAKE_OVER_ONLY)
        self._finish = self.redis.register_script(FINISH)
        self._mark_late = self.redis.register_script(MARK_LATE)
        self._renew = self.redis.register_script(RENEW)
        self._abandon = self.redis.register_script(ABANDON)
        self._forget = self.redis.register_script(FORGET)
        self._take_held = self.redis.register_script(TAKE_HELD)
        self._set_status = self.redis.register_script(SET_STATUS)
        self._expired_holds = self.redis.register_script(EXPIRED_HOLDS)
        self._delete_if = self.redis.register_script(DELETE_IF)
        self._upsert_job = self.redis.register_script(UPSERT_JOB)
        self._probe: tuple[float, redis.ConnectionPool] | None = None

    def close(self) -> None:
        self.redis.close()
        if self._probe is not None:
            self._probe[1].disconnect()

    # --- pushes ---------------------------------------------------------------

    def claim_push(
        self, key: str, kind: str, body: bytes, ttl: int, owner: str, lease: float, openid: str | None = None
    ) -> Claim:
        now = time.time()
        args = [key, kind, body, now, int(ttl), owner, now + lease]
        answer = self._claim(keys=[PREFIX + "push:" + key, RUNNING_SET, PUSH_INDEX], args=args)
        return Claim(_record(key, answer[1:]), runs=answer[0] == 1)

    def take_over(self, key: str, owner: str, lease: float) -> bool:
        now = time.time()
        args = [key, "", "", now, 0, owner, now + lease]
        return self._take_over(keys=[PREFIX + "push:" + key, RUNNING_SET], args=args) == 1

    def renew_leases(self, keys: Sequence[str], owner: str, until: float) -> None:
        if keys:
            self._renew(keys=[RUNNING_SET], args=[owner, until, *keys])

    def finish_push(self, key: str, status: str, reply: bytes | None) -> PushRecord | None:
        args = [key, status, reply or b"", "0" if reply is None else "1"]
        answer = self._finish(keys=[PREFIX + "push:" + key, RUNNING_SET], args=args)
        return None if not answer else _record(key, answer[1:])

    def finish_pushes(self, outcomes: Sequence[tuple[str, str, bytes | None]]) -> None:
        pipe = self.redis.pipeline(transaction=False)  # one round trip for them all
        for key, status, reply in outcomes:
            args = [key, status, reply or b"", "0" if reply is None else "1"]
            self._finish(keys=[PREFIX + "push:" + key, RUNNING_SET], args=args, client=pipe)
        pipe.execute()

    def mark_late(self, key: str, how: str) -> bool:
        return self._mark_late(keys=[PREFIX + "push:" + key], args=[how]) == 1

    def get_push(self, key: str, with_body: bool = False) -> PushRecord | None:
        values = self.redis.hmget(PREFIX + "push:" + key, *FIELDS, *(["body"] if with_body else []))
        if values[0] is None or values[1] is None:
            return None
        return replace(_record(key, values[: len(FIELDS)]), body=values[len(FIELDS)] if with_body else None)

    def list_pushes(self, status: str | None = None, limit: int = 100) -> list[PushRecord]:
        found: list[PushRecord] = []
        seen: set[bytes] = set()
        newest: float | str = "+inf"
        while len(found) < limit:
            # Pages by score, not rank: pushes claimed meanwhile go on top and do not shift the pages.
            page = self.redis.zrevrangebyscore(PUSH_INDEX, newest, "-inf", start=0, num=500, withscores=True)
            members = [member for member, _ in page if member not in seen]
            if not members:
                break
            seen.update(members)
            newest = page[-1][1]  # inclusive: members sharing the last score come again, and are skipped
            pipe = self.redis.pipeline(transaction=False)
            for member in members:
                pipe.hmget(PREFIX + "push:" + member.decode(), *FIELDS)
            gone = []
            for member, values in zip(members, pipe.execute(), strict=True):
                if values[1] is None:  # expired
                    gone.append(member)
                elif status is None or values[1].decode() == status:
                    found.append(_record(member.decode(), values))
            if gone:
                self._forget(keys=[PUSH_INDEX], args=gone)
        return found[:limit]

    def lapsed_runs(self, now: float, limit: int) -> list[PushRecord]:
        found = []
        for member in self.redis.zrangebyscore(RUNNING_SET, "-inf", f"({now}", start=0, num=limit):
            key = member.decode()
            values = self.redis.hmget(PREFIX + "push:" + key, *FIELDS, "body")
            if values[0] is None or values[1] is None:  # expired meanwhile
                self.redis.zrem(RUNNING_SET, member)
                continue
            found.append(replace(_record(key, values[:-1]), body=values[-1]))
        return found

    def abandon(self, key: str) -> bool:
        return self._abandon(keys=[PREFIX + "push:" + key, RUNNING_SET], args=[key, time.time(), ABANDONED]) == 1

    def mark_unfinished(self, key: str, owner: str) -> bool:
        keys = [PREFIX + "push:" + key, RUNNING_SET]
        return self._set_status(keys=keys, args=[key, UNFINISHED, "1", owner, "1"]) == 1

    def set_push_status(self, key: str, status: str) -> None:
        keys = [PREFIX + "push:" + key, RUNNING_SET]
        self._set_status(keys=keys, args=[key, status, "1" if status == UNFINISHED else "0", "", "0"])

    # --- held replies -----------------------------------------------------------

    def hold_reply(self, openid: str, reply: bytes, ttl: float, push: str = "") -> None:
        expires_at = time.time() + ttl
        member = "\x1f".join((f"{expires_at:.6f}", openid, push, secrets.token_hex(4)))
        name = PREFIX + "held:" + openid
        pipe = self.redis.pipeline()
        pipe.rpush(name, member.encode() + b"\x1e" + reply)
        pipe.expire(name, int(ttl) + 1)
        pipe.zadd(HELD_EXPIRY, {member: expires_at})
        if push:  # the journal record outlives the hold, to record what became of it
            pipe.expire(PREFIX + "push:" + push, int(ttl + HOLD_MARGIN), gt=True)
        pipe.execute()

    def take_held_reply(self, openid: str) -> bytes | None:
        return self._take_held(keys=[PREFIX + "held:" + openid, HELD_EXPIRY], args=[time.time()]) or None

    def expired_holds(self, now: float, limit: int) -> list[str]:
        members = self._expired_holds(keys=[HELD_EXPIRY], args=[now, limit])
        pushes = [member.decode().split("\x1f")[2] for member in members]
        return [push for push in pushes if push]

    def sweep_values(self, now: float, limit: int) -> int:
        return 0  # Redis expires them itself

    def checkpoint(self) -> None:
        pass  # Redis persists on its own schedule

    # --- values ---------------------------------------------------------------

    def get_value(self, key: str) -> str | None:
        value = self.redis.get(PREFIX + "kv:" + key)
        return None if value is None else value.decode()

    def set_value(self, key: str, value: str, ttl: float) -> None:
        self.redis.set(PREFIX + "kv:" + key, value, px=max(1, int(ttl * 1000)))

    def add_value(self, key: str, value: str, ttl: float) -> bool:
        return bool(self.redis.set(PREFIX + "kv:" + key, value, px=max(1, int(ttl * 1000)), nx=True))

    def delete_value(self, key: str, expected: str | None = None) -> bool:
        name = PREFIX + "kv:" + key
        if expected is None:
            return bool(self.redis.delete(name))
        return bool(self._delete_if(keys=[name], args=[expected]))

    # --- health ---------------------------------------------------------------

    def check_writable(self, timeout: float, min_free_bytes: int = 0) -> None:
        """A write on a connection of its own whose socket gives up after ``timeout``."""
        probe = redis.Redis(connection_pool=self._probe_pool(timeout))
        try:
            probe.set(PREFIX + "health:probe", "1", px=60_000)
        except redis.RedisError as exc:
            raise StoreUnavailable(f"Redis cannot write: {type(exc).__name__}: {exc}") from None

    def _probe_pool(self, timeout: float) -> redis.ConnectionPool:
        if self._probe is None or self._probe[0] != timeout:
            kwargs = {**self.redis.connection_pool.connection_kwargs, "socket_timeout": timeout}
            kwargs["socket_connect_timeout"] = timeout
            self._probe = (
                timeout,
                redis.ConnectionPool(
                    connection_class=self.redis.connection_pool.connection_class, max_connections=4, **kwargs
                ),
            )
        return self._probe[1]

    # --- jobs -----------------------------------------------------------------

    def mark_job_deleted(self, kind: str, msg_id: str, deleted_at: float, article_idx: int | None = None) -> bool:
        article = "" if article_idx is None else str(article_idx)
        key = PREFIX + f"job:{kind}:{msg_id}"
        return bool(self.redis.eval(MARK_JOB_DELETED, 1, key, deleted_at, article))

    def save_job(self, job: Job) -> None:
        self._write_job(
            job,
            always={"target": job.target, "created_at": job.created_at, "send_detail": to_json(job.detail)},
            if_absent={"status": job.status, "counts": to_json(job.counts)},
        )

    def finish_job(self, job: Job) -> None:
        self._write_job(
            job,
            always={
                "status": job.status,
                "finish_status": job.finish_status or "",
                "counts": to_json(job.counts),
                "finish_detail": to_json(job.detail),
                "finished_at": job.finished_at or time.time(),
            },
            if_absent={"target": job.target, "created_at": job.created_at},
        )

    def _write_job(self, job: Job, always: dict, if_absent: dict) -> None:
        sent = "created_at" in always  # the send's record knows when it was made; a finish only guesses
        args: list = [job.created_at, f"{job.kind}:{job.msg_id}", len(always), "1" if sent else "0"]
        for name, value in [*always.items(), *if_absent.items()]:
            args += [name, value]
        self._upsert_job(keys=[PREFIX + f"job:{job.kind}:{job.msg_id}", PREFIX + "jobs"], args=args)

    def get_job(self, kind: str, msg_id: str) -> Job | None:
        data = self.redis.hgetall(PREFIX + f"job:{kind}:{msg_id}")
        return _job(kind, msg_id, data) if data else None

    def list_jobs(self, status: str | None = None, limit: int = 100) -> list[Job]:
        found: list[Job] = []
        start = 0
        while len(found) < limit:
            members = self.redis.zrevrange(PREFIX + "jobs", start, start + 499)
            if not members:
                break
            start += len(members)
            for member in members:
                kind, _, msg_id = member.decode().partition(":")
                job = self.get_job(kind, msg_id)
                if job is not None and (status is None or job.status == status):
                    found.append(job)
                    if len(found) == limit:
                        break
        return found


# KEYS[1]=job hash; ARGV: deleted_at, deleted_article ("" for the whole send).  1 if the job exists.
MARK_JOB_DELETED = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'deleted_at', ARGV[1], 'deleted_article', ARGV[2])
return 1
"""


def _job(kind: str, msg_id: str, data: dict[bytes, bytes]) -> Job:
    text = {name.decode(): value.decode() for name, value in data.items()}
    detail = {**json.loads(text.get("send_detail") or "{}"), **json.loads(text.get("finish_detail") or "{}")}
    return Job(
        msg_id=msg_id,
        kind=kind,
        target=text.get("target", ""),
        created_at=float(text.get("created_at", 0)),
        status=text.get("status", "submitted"),
        finish_status=text.get("finish_status") or None,
        counts=json.loads(text.get("counts") or "{}"),
        detail=detail,
        finished_at=float(text["finished_at"]) if text.get("finished_at") else None,
        deleted_at=float(text["deleted_at"]) if text.get("deleted_at") else None,
        deleted_article=int(text["deleted_article"]) if text.get("deleted_article") else None,
    )


def _record(key: str, values: Sequence) -> PushRecord:
    kind, status, reply, received_at, deliveries, attempts, lease_until, late = values
    return PushRecord(
        key=key,
        kind=kind.decode(),
        status=status.decode(),
        reply=reply or None,
        received_at=float(received_at or 0),  # "or": a journal written before leases lacks these
        deliveries=int(deliveries or 1),
        attempts=int(attempts or 1),
        lease_until=float(lease_until or 0),
        late=late.decode() if late else None,
    )
