"""The Redis queue's scripts: each operation is one script, atomic on the server.

Keys of queue ``Q`` under prefix ``P``: ``P:q:Q:ready`` (zset, score = ordering score),
``P:q:Q:age`` (zset of the ready jobs by enqueue time, for the maximum wait), ``P:q:Q:delayed``
(zset by ready time: retries in backoff), ``P:q:Q:running`` (zset by lease end), ``P:q:Q:dead``,
``P:q:Q:done`` (finished in the last minute, for throughput), ``P:q:Q:flows`` (hash: flow ->
next start), ``P:q:Q:meta`` (hash: vt); a job is the hash ``P:job:ID``; an idempotency key
``P:q:Q:idem:KEY`` holds its job's id. Keys are built inside the scripts: one Redis, not a cluster.
"""

from __future__ import annotations

# start-time fair queueing (queue/base.py): max(vt, flow's next), and the flow moves one step on
_START = """
local function start_of(base, flow)
  local vt = tonumber(redis.call('HGET', base .. ':meta', 'vt') or '0')
  local nxt = tonumber(redis.call('HGET', base .. ':flows', flow) or '0')
  local s = math.max(vt, nxt)
  redis.call('HSET', base .. ':flows', flow, tostring(s + 1))
  return s
end
local function flow_of(fair, tenant)
  if fair == '1' then return tenant end
  return ''
end
"""

SUBMIT = (
    _START
    + """
-- ARGV: prefix, queue, id, task, payload, priority, tenant, idem, not_after, now, level, fair, ttl
local p, q, id = ARGV[1], ARGV[2], ARGV[3]
local base = p .. ':q:' .. q
local idem = ARGV[8]
if idem ~= '' then
  local seen = redis.call('GET', base .. ':idem:' .. idem)
  if seen then
    local ex = tonumber(redis.call('HGET', ARGV[1] .. ':job:' .. seen, 'expires_at') or '')
    if ex == nil or ex > tonumber(ARGV[10]) then return {seen, 0} end
  end
end
local prio, now, level = tonumber(ARGV[6]), tonumber(ARGV[10]), tonumber(ARGV[11])
local s = start_of(base, flow_of(ARGV[12], ARGV[7]))
local score = s + prio * level
redis.call('HSET', p .. ':job:' .. id, 'queue', q, 'task', ARGV[4], 'payload', ARGV[5], 'status', 'queued',
  'priority', prio, 'tenant', ARGV[7], 'idem', idem, 'start', tostring(s), 'score', tostring(score),
  'enqueued_at', ARGV[10], 'not_after', ARGV[9], 'deliveries', 0, 'failures', 0, 'ttl', ARGV[13])
redis.call('ZADD', base .. ':ready', score, id)
redis.call('ZADD', base .. ':age', now, id)
if idem ~= '' then redis.call('SET', base .. ':idem:' .. idem, id) end
return {id, 1}
"""
)

# a job's final state: kept ``ttl`` seconds, its idempotency key with it
_FINAL = """
local function finalize(p, base, jk, now)
  local ttl = tonumber(redis.call('HGET', jk, 'ttl'))
  redis.call('HSET', jk, 'expires_at', tostring(now + ttl))  -- what readers check; EXPIRE only cleans up
  ttl = math.max(1, math.ceil(ttl))
  redis.call('EXPIRE', jk, ttl)
  local idem = redis.call('HGET', jk, 'idem')
  if idem and idem ~= '' then redis.call('EXPIRE', base .. ':idem:' .. idem, ttl) end
  redis.call('ZADD', base .. ':done', now, string.sub(jk, #p + 6))
  redis.call('ZREMRANGEBYSCORE', base .. ':done', '-inf', now - 60)
end
"""

TAKE = (
    _FINAL
    + """
-- ARGV: prefix, now, token, n, then per queue: name, max_wait (-1: none), max_deliveries, lease_s
local p, now, token, n = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local lease_err = '{"kind":"lease_expired","message":"the worker holding the job stopped renewing its lease"}'
local expired_err = '{"kind":"expired","message":"not started before its not_after"}'
for i = 0, n - 1 do
  local base = p .. ':q:' .. ARGV[5 + i * 4]
  local maxd = tonumber(ARGV[7 + i * 4])
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', base .. ':running', '-inf', now, 'LIMIT', 0, 100)) do
    redis.call('ZREM', base .. ':running', id)
    local jk = p .. ':job:' .. id
    if tonumber(redis.call('HGET', jk, 'deliveries') or '0') >= maxd then
      redis.call('HSET', jk, 'status', 'dead', 'token', '', 'finished_at', tostring(now), 'error', lease_err)
      redis.call('ZADD', base .. ':dead', now, id)
    else
      redis.call('HSET', jk, 'status', 'queued', 'token', '')
      redis.call('ZADD', base .. ':ready', tonumber(redis.call('HGET', jk, 'score')), id)
      redis.call('ZADD', base .. ':age', tonumber(redis.call('HGET', jk, 'enqueued_at')), id)
    end
  end
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', base .. ':delayed', '-inf', now, 'LIMIT', 0, 100)) do
    local jk = p .. ':job:' .. id
    redis.call('ZREM', base .. ':delayed', id)
    redis.call('ZADD', base .. ':ready', tonumber(redis.call('HGET', jk, 'score')), id)
    redis.call('ZADD', base .. ':age', tonumber(redis.call('HGET', jk, 'enqueued_at')), id)
  end
end
for _ = 1, 1000 do
  local pick, pq, plea = nil, nil, 0
  for i = 0, n - 1 do  -- a job past the maximum wait is served next
    local maxw = tonumber(ARGV[6 + i * 4])
    if maxw >= 0 then
      local head = redis.call('ZRANGE', ARGV[1] .. ':q:' .. ARGV[5 + i * 4] .. ':age', 0, 0, 'WITHSCORES')
      if head[1] and tonumber(head[2]) <= now - maxw then
        pick, pq, plea = head[1], ARGV[5 + i * 4], tonumber(ARGV[8 + i * 4])
        break
      end
    end
  end
  if not pick then
    local best = nil
    for i = 0, n - 1 do
      local head = redis.call('ZRANGE', p .. ':q:' .. ARGV[5 + i * 4] .. ':ready', 0, 0, 'WITHSCORES')
      if head[1] then
        local sc = tonumber(head[2])
        if best == nil or sc < best or (sc == best and head[1] < pick) then
          best, pick, pq, plea = sc, head[1], ARGV[5 + i * 4], tonumber(ARGV[8 + i * 4])
        end
      end
    end
  end
  if not pick then return false end
  local base, jk = p .. ':q:' .. pq, p .. ':job:' .. pick
  redis.call('ZREM', base .. ':ready', pick)
  redis.call('ZREM', base .. ':age', pick)
  local na = tonumber(redis.call('HGET', jk, 'not_after') or '')
  if na and na <= now then
    redis.call('HSET', jk, 'status', 'expired', 'finished_at', tostring(now), 'error', expired_err)
    finalize(p, base, jk, now)
  else
    local untl = now + plea
    redis.call('HSET', jk, 'status', 'running', 'token', token, 'lease_until', tostring(untl),
      'started_at', tostring(now))
    local d = redis.call('HINCRBY', jk, 'deliveries', 1)
    redis.call('ZADD', base .. ':running', untl, pick)
    local s = tonumber(redis.call('HGET', jk, 'start'))
    local vt = tonumber(redis.call('HGET', base .. ':meta', 'vt') or '0')
    if s > vt then redis.call('HSET', base .. ':meta', 'vt', tostring(s)) end
    local f = redis.call('HMGET', jk, 'task', 'payload', 'enqueued_at')
    return {pick, pq, f[1], f[2], d, f[3], tostring(untl)}
  end
end
return false
"""
)

RENEW = """
-- ARGV: prefix, id, token, until
local jk = ARGV[1] .. ':job:' .. ARGV[2]
local f = redis.call('HMGET', jk, 'token', 'status', 'queue')
if f[1] ~= ARGV[3] or f[2] ~= 'running' then return 0 end
redis.call('HSET', jk, 'lease_until', ARGV[4])
redis.call('ZADD', ARGV[1] .. ':q:' .. f[3] .. ':running', tonumber(ARGV[4]), ARGV[2])
return 1
"""

COMPLETE = (
    _FINAL
    + """
-- ARGV: prefix, id, token, result, now
local p, id = ARGV[1], ARGV[2]
local jk = p .. ':job:' .. id
local f = redis.call('HMGET', jk, 'token', 'status', 'queue')
if f[1] ~= ARGV[3] or f[2] ~= 'running' then return 0 end
local base = p .. ':q:' .. f[3]
redis.call('ZREM', base .. ':running', id)
redis.call('HSET', jk, 'status', 'done', 'token', '', 'result', ARGV[4], 'error', '', 'finished_at', ARGV[5])
finalize(p, base, jk, tonumber(ARGV[5]))
return 1
"""
)

FAIL = (
    _START
    + _FINAL
    + """
-- ARGV: prefix, id, token, error, now, retry, max_deliveries, level, fair, demote, initial, multiplier, max
local p, id = ARGV[1], ARGV[2]
local jk = p .. ':job:' .. id
local f = redis.call('HMGET', jk, 'token', 'status', 'queue', 'deliveries', 'failures', 'priority', 'tenant')
if f[1] ~= ARGV[3] or f[2] ~= 'running' then return false end
local base, now = p .. ':q:' .. f[3], tonumber(ARGV[5])
local failures = tonumber(f[5]) + 1
redis.call('ZREM', base .. ':running', id)
if ARGV[6] == '1' and tonumber(f[4]) < tonumber(ARGV[7]) then
  local prio = tonumber(f[6]) + tonumber(ARGV[10])
  local s = start_of(base, flow_of(ARGV[9], f[7]))
  local score = s + prio * tonumber(ARGV[8])
  local delay = math.min(tonumber(ARGV[13]), tonumber(ARGV[11]) * tonumber(ARGV[12]) ^ (failures - 1))
  redis.call('HSET', jk, 'status', 'queued', 'token', '', 'failures', failures, 'priority', prio,
    'start', tostring(s), 'score', tostring(score), 'error', ARGV[4])
  redis.call('ZADD', base .. ':delayed', now + delay, id)
  return 'queued'
end
local status = 'failed'
if ARGV[6] == '1' then status = 'dead' end
redis.call('HSET', jk, 'status', status, 'token', '', 'failures', failures, 'finished_at', ARGV[5], 'error', ARGV[4])
if status == 'dead' then redis.call('ZADD', base .. ':dead', now, id) else finalize(p, base, jk, now) end
return status
"""
)

RELEASE = """
-- ARGV: prefix, id, token
local p, id = ARGV[1], ARGV[2]
local jk = p .. ':job:' .. id
local f = redis.call('HMGET', jk, 'token', 'status', 'queue', 'score', 'enqueued_at')
if f[1] ~= ARGV[3] or f[2] ~= 'running' then return 0 end
local base = p .. ':q:' .. f[3]
redis.call('ZREM', base .. ':running', id)
redis.call('HSET', jk, 'status', 'queued', 'token', '')
redis.call('ZADD', base .. ':ready', tonumber(f[4]), id)
redis.call('ZADD', base .. ':age', tonumber(f[5]), id)
return 1
"""

CANCEL = (
    _FINAL
    + """
-- ARGV: prefix, id, now
local p, id = ARGV[1], ARGV[2]
local jk = p .. ':job:' .. id
local f = redis.call('HMGET', jk, 'status', 'queue')
if f[1] ~= 'queued' then return 0 end
local base = p .. ':q:' .. f[2]
redis.call('ZREM', base .. ':ready', id)
redis.call('ZREM', base .. ':age', id)
redis.call('ZREM', base .. ':delayed', id)
redis.call('HSET', jk, 'status', 'cancelled', 'finished_at', ARGV[3])
finalize(p, base, jk, tonumber(ARGV[3]))
return 1
"""
)

RETRY_DEAD = (
    _START
    + """
-- ARGV: prefix, queue, id, now, level, fair
local p, q, id = ARGV[1], ARGV[2], ARGV[3]
local base, jk = p .. ':q:' .. q, p .. ':job:' .. id
if redis.call('ZREM', base .. ':dead', id) == 0 then return 0 end
local f = redis.call('HMGET', jk, 'priority', 'tenant', 'enqueued_at')
local s = start_of(base, flow_of(ARGV[6], f[2]))
local score = s + tonumber(f[1]) * tonumber(ARGV[5])
redis.call('HSET', jk, 'status', 'queued', 'deliveries', 0, 'failures', 0, 'start', tostring(s),
  'score', tostring(score), 'finished_at', '')
redis.call('ZADD', base .. ':ready', score, id)
redis.call('ZADD', base .. ':age', tonumber(f[3]), id)
return 1
"""
)

PURGE = """
-- ARGV: prefix, queue
local p, q = ARGV[1], ARGV[2]
local base = p .. ':q:' .. q
local n = 0
for _, set in ipairs({'ready', 'delayed', 'dead'}) do
  for _, id in ipairs(redis.call('ZRANGE', base .. ':' .. set, 0, -1)) do
    local idem = redis.call('HGET', p .. ':job:' .. id, 'idem')
    if idem and idem ~= '' then redis.call('DEL', base .. ':idem:' .. idem) end
    redis.call('DEL', p .. ':job:' .. id)
    n = n + 1
  end
  redis.call('DEL', base .. ':' .. set)
end
redis.call('DEL', base .. ':age')
return n
"""
