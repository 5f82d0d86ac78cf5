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
from .base import ABANDONED, MAX_ATTEMPTS, RUNNING, UNFINISHED, Claim, PushRecord, StoreUnavailable, to_json

PREFIX = "wechat:"
RUNNING_SET = PREFIX + "running"
HELD_EXPIRY = PREFIX + "held-expiry"  # every held reply, by when its hold ends
HOLD_MARGIN = 3600.0  # a push outlives its held reply by this much, to record what became of it
PUSH_INDEX = PREFIX + "pushes"
# The push hashes expire on their own; their index keeps the newest ones only.  Members whose hash
# expired are dropped when a listing reads them.
PUSH_INDEX_CAP = 100_000

# The fields of a push record, in the order the scripts return them.
_FIELDS = ("kind", "status", "reply", "received_at", "deliveries", "attempts", "lease_until", "late")

# Shared by the claim and the take-over: KEYS[1]=push hash, KEYS[2]=running set; ARGV[1]=key,
# ARGV[4]=now, ARGV[6]=owner, ARGV[7]=lease_until.  Starts a new run if the last one was lost.
_TAKE_OVER = f"""
local function take_over()
  local f = redis.call('HMGET', KEYS[1], 'status', 'lease_until', 'attempts')
  local lost = (f[1] == '{RUNNING}' and tonumber(f[2]) < tonumber(ARGV[4])) or f[1] == '{UNFINISHED}'
  if not lost or tonumber(f[3]) >= {MAX_ATTEMPTS} then return 0 end
  redis.call('HSET', KEYS[1], 'status', '{RUNNING}', 'owner', ARGV[6], 'lease_until', ARGV[7])
  redis.call('HINCRBY', KEYS[1], 'attempts', 1)
  redis.call('ZADD', KEYS[2], ARGV[7], ARGV[1])
  return 1
end
local function record(runs)
  local f = redis.call('HMGET', KEYS[1], {", ".join(repr(name) for name in _FIELDS)})
  return {{runs, f[1], f[2], f[3] or false, f[4], f[5], f[6], f[7], f[8] or false}}
end
"""

# KEYS[3]=push index.  ARGV: key, kind, body, now, ttl, owner, lease_until.  {runs, record fields...}
_CLAIM = (
    _TAKE_OVER
    + f"""
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'kind', ARGV[2], 'body', ARGV[3], 'received_at', ARGV[4], 'status', '{RUNNING}',
             'deliveries', 1, 'attempts', 1, 'owner', ARGV[6], 'lease_until', ARGV[7])
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  redis.call('ZADD', KEYS[2], ARGV[7], ARGV[1])
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
  redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -{PUSH_INDEX_CAP + 1})
  return record(1)
end
redis.call('HINCRBY', KEYS[1], 'deliveries', 1)
return record(take_over())
"""
)

# ARGV: key, -, -, now, -, owner, lease_until.  1 if taken over.
_TAKE_OVER_ONLY = (
    _TAKE_OVER
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
return take_over()
"""
)

# KEYS[1]=push hash, KEYS[2]=running set; ARGV: key, status, reply (or '' with ARGV[4]='0').
_FINISH = (
    _TAKE_OVER
    + f"""
if redis.call('HGET', KEYS[1], 'status') ~= '{RUNNING}' then return false end
redis.call('HSET', KEYS[1], 'status', ARGV[2])
if ARGV[4] == '1' then redis.call('HSET', KEYS[1], 'reply', ARGV[3]) end
redis.call('ZREM', KEYS[2], ARGV[1])
return record(0)
"""
)

# KEYS[1]=push hash; ARGV[1]=how.  1 if marked.
_MARK_LATE = f"""
if redis.call('HGET', KEYS[1], 'status') ~= '{RUNNING}' then return 0 end
redis.call('HSET', KEYS[1], 'late', ARGV[1])
return 1
"""

# KEYS[1]=running set; ARGV: owner, until, then keys.  Renews the leases the owner still holds.
_RENEW = f"""
for i = 3, #ARGV do
  local hash = '{PREFIX}push:' .. ARGV[i]
  local f = redis.call('HMGET', hash, 'owner', 'status')
  if f[1] == ARGV[1] and f[2] == '{RUNNING}' then
    redis.call('HSET', hash, 'lease_until', ARGV[2])
    redis.call('ZADD', KEYS[1], ARGV[2], ARGV[i])
  end
end
return 1
"""

# KEYS[1]=push hash, KEYS[2]=running set; ARGV: key, now, status.  1 if abandoned.
_ABANDON = f"""
local f = redis.call('HMGET', KEYS[1], 'status', 'lease_until')
local live = f[1] == '{RUNNING}' or f[1] == '{UNFINISHED}'
if not live or tonumber(f[2]) >= tonumber(ARGV[2]) then
  if not live then redis.call('ZREM', KEYS[2], ARGV[1]) end
  return 0
end
redis.call('HSET', KEYS[1], 'status', ARGV[3])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""

# KEYS[1]=push hash, KEYS[2]=running set; ARGV: key, status, "1" to keep it among the runs to pick up,
# then an owner that must hold it ('' for any) and "1" if it must be running.  1 if set.
_SET_STATUS = f"""
local f = redis.call('HMGET', KEYS[1], 'status', 'owner')
if not f[1] then return 0 end
if ARGV[5] == '1' and f[1] ~= '{RUNNING}' then return 0 end
if ARGV[4] ~= '' and f[2] ~= ARGV[4] then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'lease_until', 0)
if ARGV[3] == '1' then redis.call('ZADD', KEYS[2], 0, ARGV[1]) else redis.call('ZREM', KEYS[2], ARGV[1]) end
return 1
"""

# KEYS[1]=push index; ARGV: keys.  Drops the keys whose hash is gone (expired), unless a claim made it again.
_FORGET = f"""
for i = 1, #ARGV do
  if redis.call('EXISTS', '{PREFIX}push:' .. ARGV[i]) == 0 then redis.call('ZREM', KEYS[1], ARGV[i]) end
end
return 1
"""

# KEYS[1]=held list, KEYS[2]=expiry set; ARGV[1]=now.  The oldest live reply, dropping expired ones.
# An item is its member in the expiry set, "EXPIRES US OPENID US PUSH US NONCE" (US: the unit separator,
# which no openid or push key holds), then the record separator RS, then the reply.
_TAKE_HELD = """
while true do
  local item = redis.call('LPOP', KEYS[1])
  if not item then return false end
  local cut = string.find(item, '\\30', 1, true)
  local member = string.sub(item, 1, cut - 1)
  local removed = redis.call('ZREM', KEYS[2], member)
  local expires = tonumber(string.sub(member, 1, string.find(member, '\\31', 1, true) - 1))
  if removed == 1 and expires > tonumber(ARGV[1]) then return string.sub(item, cut + 1) end
end
"""

# KEYS[1]=expiry set; ARGV: now, limit.  Removes the expired members and returns them.
_EXPIRED_HOLDS = """
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(members) do redis.call('ZREM', KEYS[1], member) end
return members
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
    def __init__(self, url: str, timeout: float = 0.25) -> None:
        self.redis = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
        )
        self.redis.ping()
        self._claim = self.redis.register_script(_CLAIM)
        self._take_over = self.redis.register_script(_TAKE_OVER_ONLY)
        self._finish = self.redis.register_script(_FINISH)
        self._mark_late = self.redis.register_script(_MARK_LATE)
        self._renew = self.redis.register_script(_RENEW)
        self._abandon = self.redis.register_script(_ABANDON)
        self._forget = self.redis.register_script(_FORGET)
        self._take_held = self.redis.register_script(_TAKE_HELD)
        self._set_status = self.redis.register_script(_SET_STATUS)
        self._expired_holds = self.redis.register_script(_EXPIRED_HOLDS)
        self._delete_if = self.redis.register_script(_DELETE_IF)
        self._upsert_job = self.redis.register_script(_UPSERT_JOB)
        self._probe: tuple[float, redis.ConnectionPool] | None = None

    def close(self) -> None:
        self.redis.close()
        if self._probe is not None:
            self._probe[1].disconnect()

    # --- pushes ---------------------------------------------------------------

    def claim_push(self, key: str, kind: str, body: bytes, ttl: int, owner: str, lease: float) -> Claim:
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
        values = self.redis.hmget(PREFIX + "push:" + key, *_FIELDS, *(["body"] if with_body else []))
        if values[0] is None or values[1] is None:
            return None
        return replace(_record(key, values[: len(_FIELDS)]), body=values[len(_FIELDS)] if with_body else None)

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
                pipe.hmget(PREFIX + "push:" + member.decode(), *_FIELDS)
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
            values = self.redis.hmget(PREFIX + "push:" + key, *_FIELDS, "body")
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
