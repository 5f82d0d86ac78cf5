"""The Redis store, for more than one machine.  Same interface as the SQLite store.

Keys live under one prefix: ``push:<key>`` (a hash whose creation is the dedup
claim), ``kv:<key>`` (values with a TTL), and ``job:<kind>:<msg_id>`` (a hash)
indexed by the sorted set ``jobs``.  Writes that must check before they write are
Lua scripts, so each is one atomic step.
"""

from __future__ import annotations

import json
import time

import redis

from ..jobs import Job
from .base import RECEIVED, StoreUnavailable, to_json

PREFIX = "wechat:"

# KEYS[1]=push hash; ARGV: kind, body, received_at, ttl, status.  1 if claimed.
_CLAIM = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'kind', ARGV[1], 'body', ARGV[2], 'received_at', ARGV[3], 'status', ARGV[5])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""

# KEYS[1]=key; ARGV[1]=expected value.  1 if deleted.
_DELETE_IF = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS[1]=job hash, KEYS[2]=index; ARGV: created_at, index member, N, "1" when created_at is
# the send's own (else the index keeps the position it has), then field/value pairs: the
# first N pairs are set, the rest only where the field is missing.
_UPSERT_JOB = """
local always = tonumber(ARGV[3])
local pair = 0
for i = 5, #ARGV, 2 do
  if pair < always then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  else
    redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1])
  end
  pair = pair + 1
end
if ARGV[4] == '1' then
  redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2])
else
  redis.call('ZADD', KEYS[2], 'NX', ARGV[1], ARGV[2])
end
return 1
"""


class RedisStore:
    def __init__(self, url: str) -> None:
        self.redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self.redis.ping()
        self._claim = self.redis.register_script(_CLAIM)
        self._delete_if = self.redis.register_script(_DELETE_IF)
        self._upsert_job = self.redis.register_script(_UPSERT_JOB)
        self._probe: tuple[float, redis.ConnectionPool] | None = None

    def close(self) -> None:
        self.redis.close()
        if self._probe is not None:
            self._probe[1].disconnect()

    # --- pushes ---------------------------------------------------------------

    def claim_push(self, key: str, kind: str, body: bytes, ttl: int) -> bool:
        return bool(self._claim(keys=[PREFIX + "push:" + key], args=[kind, body, time.time(), int(ttl), RECEIVED]))

    def finish_push(self, key: str, status: str, reply: bytes | None) -> None:
        fields = {"status": status}
        if reply is not None:
            fields["reply"] = reply
        name = PREFIX + "push:" + key
        # Only a push that is still journalled gets its outcome (never resurrect an expired key).
        if self.redis.exists(name):
            self.redis.hset(name, mapping=fields)

    def push_outcome(self, key: str) -> tuple[str, bytes | None] | None:
        status, reply = self.redis.hmget(PREFIX + "push:" + key, "status", "reply")
        return None if status is None else (status.decode(), reply)

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
    )
