"""The Lua scripts of the Redis store: each write that must check before it writes, as one atomic step.

Key names, the push record's fields and the statuses are shared with :mod:`app.store.redis`.
"""

from __future__ import annotations

from .base import MAX_ATTEMPTS, RUNNING, UNFINISHED

PREFIX = "wechat:"
RUNNING_SET = PREFIX + "running"
HELD_EXPIRY = PREFIX + "held-expiry"  # every held reply, by when its hold ends
HOLD_MARGIN = 3600.0  # a push outlives its held reply by this much, to record what became of it
PUSH_INDEX = PREFIX + "pushes"
# The push hashes expire on their own; their index keeps the newest ones only.  Members whose hash
# expired are dropped when a listing reads them.
PUSH_INDEX_CAP = 100_000

# The fields of a push record, in the order the scripts return them.
FIELDS = ("kind", "status", "reply", "received_at", "deliveries", "attempts", "lease_until", "late")

# Shared by the claim and the take-over: KEYS[1]=push hash, KEYS[2]=running set; ARGV[1]=key,
# ARGV[4]=now, ARGV[6]=owner, ARGV[7]=lease_until.  Starts a new run if the last one was lost.
TAKE_OVER = f"""
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
  local f = redis.call('HMGET', KEYS[1], {", ".join(repr(name) for name in FIELDS)})
  return {{runs, f[1], f[2], f[3] or false, f[4], f[5], f[6], f[7], f[8] or false}}
end
"""

# KEYS[3]=push index.  ARGV: key, kind, body, now, ttl, owner, lease_until.  {runs, record fields...}
CLAIM = (
    TAKE_OVER
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
TAKE_OVER_ONLY = (
    TAKE_OVER
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
return take_over()
"""
)

# KEYS[1]=push hash, KEYS[2]=running set; ARGV: key, status, reply (or '' with ARGV[4]='0').
FINISH = (
    TAKE_OVER
    + f"""
if redis.call('HGET', KEYS[1], 'status') ~= '{RUNNING}' then return false end
redis.call('HSET', KEYS[1], 'status', ARGV[2])
if ARGV[4] == '1' then redis.call('HSET', KEYS[1], 'reply', ARGV[3]) end
redis.call('ZREM', KEYS[2], ARGV[1])
return record(0)
"""
)

# KEYS[1]=push hash; ARGV[1]=how.  1 if marked.
MARK_LATE = f"""
if redis.call('HGET', KEYS[1], 'status') ~= '{RUNNING}' then return 0 end
redis.call('HSET', KEYS[1], 'late', ARGV[1])
return 1
"""

# KEYS[1]=running set; ARGV: owner, until, then keys.  Renews the leases the owner still holds.
RENEW = f"""
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
ABANDON = f"""
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
SET_STATUS = f"""
local f = redis.call('HMGET', KEYS[1], 'status', 'owner')
if not f[1] then return 0 end
if ARGV[5] == '1' and f[1] ~= '{RUNNING}' then return 0 end
if ARGV[4] ~= '' and f[2] ~= ARGV[4] then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'lease_until', 0)
if ARGV[3] == '1' then redis.call('ZADD', KEYS[2], 0, ARGV[1]) else redis.call('ZREM', KEYS[2], ARGV[1]) end
return 1
"""

# KEYS[1]=push index; ARGV: keys.  Drops the keys whose hash is gone (expired), unless a claim made it again.
FORGET = f"""
for i = 1, #ARGV do
  if redis.call('EXISTS', '{PREFIX}push:' .. ARGV[i]) == 0 then redis.call('ZREM', KEYS[1], ARGV[i]) end
end
return 1
"""

# KEYS[1]=held list, KEYS[2]=expiry set; ARGV[1]=now.  The oldest live reply, dropping expired ones.
# An item is its member in the expiry set, "EXPIRES US OPENID US PUSH US NONCE" (US: the unit separator,
# which no openid or push key holds), then the record separator RS, then the reply.
TAKE_HELD = """
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
EXPIRED_HOLDS = """
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(members) do redis.call('ZREM', KEYS[1], member) end
return members
"""


# KEYS[1]=key; ARGV[1]=expected value.  1 if deleted.
DELETE_IF = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS[1]=job hash, KEYS[2]=index; ARGV: created_at, index member, N, "1" when created_at is
# the send's own (else the index keeps the position it has), then field/value pairs: the
# first N pairs are set, the rest only where the field is missing.
UPSERT_JOB = """
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
