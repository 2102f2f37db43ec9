"""Lua scripts of the Redis state backend: every check-and-update is one script.

Each script runs atomically on the server, so a check and its update can never be
interleaved with another process's. Conventions shared by every script:

* ``ARGV[1]`` is the time to use; a negative value means "the server's clock"
  (``TIME``), so every process on every host agrees on one clock.
* Every key a script touches carries the same hash tag (``{prefix}``), so on Redis
  Cluster they all live on one slot. Keys a script derives from stored data (a
  reservation's counters) are built from ``prefix`` and keep that tag.
* Numbers that are not small integers are returned as strings: Redis truncates Lua
  numbers to integers on the way out.
* Every ``redis.call`` costs a few microseconds of script time, so the hot-path scripts
  issue as few as they can: the server clock is read once per script, a creation check
  reads the value the check already fetched, and clean-ups of expired entries (rate
  windows, concurrency leases) run when a count that includes them would refuse, or
  every so often, not on every call: a count that still includes expired entries is
  never lower than the exact one, so a grant on it is exactly the grant the clean count
  gives.
"""

from __future__ import annotations

_NOW = """
local server_now
local function clock(v)
  local t = tonumber(v)
  if t < 0 then
    if not server_now then
      local s = redis.call('TIME')
      server_now = tonumber(s[1]) + tonumber(s[2]) / 1000000
    end
    t = server_now
  end
  return t
end
local function fmt(x) return string.format('%.17g', x) end
"""

# Reservations --------------------------------------------------------------------------
# A reservation is a string  {P}:rsv:<id>  = "<state>\n<cjson [[counter, amount, expire_at(, 1)], ...]>"
# (a fourth element 1: a token counter, settled to the tokens used instead of the USD cost)
# with state held | expired (these keep the charges) | settled | released (tombstones, no
# charges); its lease is its score in {P}:leases. An expired lease gives its reserved amount
# back but keeps the charges, so a late settle still counts the spend once, and a second
# settle counts nothing.
_SWEEP = """
local function unreserve1(ck, amount)
  -- a counter that is gone (evicted, or past its retention) is not re-created: a hash with no
  -- window and no TTL would stay forever
  if redis.call('EXISTS', ck) == 0 then return end
  local l = tonumber(redis.call('HINCRBYFLOAT', ck, 'reserved', -amount))
  if l < 1e-12 and l ~= 0 then redis.call('HSET', ck, 'reserved', '0') end
end
local function sweep(prefix, leases, now, tomb_ttl)
  local dead = redis.call('ZRANGEBYSCORE', leases, '-inf', now, 'LIMIT', 0, 256)
  for _, id in ipairs(dead) do
    local rk = prefix .. ':rsv:' .. id
    local v = redis.call('GET', rk)
    if v and string.sub(v, 1, 5) == 'held\\n' then
      local body = string.sub(v, 6)
      for _, ch in ipairs(cjson.decode(body)) do unreserve1(prefix .. ':bc:' .. ch[1], ch[2]) end
      redis.call('SET', rk, 'expired\\n' .. body, 'EX', tomb_ttl)
    end
    redis.call('ZREM', leases, id)
  end
end
"""

# KEYS: leases, index, reservation, counter_1..n
# ARGV: now, prefix, lease_s, retain_s, tomb_ttl, rid, n, then per charge: counter, amount, limit, expire_at,
# unit ("t": tokens, "u": USD)
# Returns "0 i used" when charge i does not fit (nothing reserved), else "1 0 0" and per counter
# " spent reserved"
# (the counters' totals after this reservation: what the caller saw last, for soft limits). One
# string, not an array: a client parses it faster.
_RESERVE = """
local now = clock(ARGV[1])
local prefix = ARGV[2]
local retain = tonumber(ARGV[4])
local n = tonumber(ARGV[7])
local lease = tonumber(ARGV[3])
local charges = {}
for i = 1, n do
  local base = 7 + (i - 1) * 5
  charges[i] = {ARGV[base + 1], tonumber(ARGV[base + 2]), tonumber(ARGV[base + 4])}
  if ARGV[base + 5] == 't' then charges[i][4] = 1 end
end
-- a retry of this reservation (its reply was lost) finds it made and takes nothing more
local ttl = math.ceil(lease + tonumber(ARGV[5]))
if not redis.call('SET', KEYS[3], 'held\\n' .. cjson.encode(charges), 'NX', 'EX', ttl) then return '1 0 0' end
local found = {}
local function check()
  for i = 1, n do
    local base = 7 + (i - 1) * 5
    local amount, limit = tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3])
    local v = redis.call('HMGET', KEYS[3 + i], 'spent', 'reserved')
    local used = (tonumber(v[1]) or 0) + (tonumber(v[2]) or 0)
    if used + amount > limit + 1e-12 then return i, used end
    found[i] = v
  end
end
-- expired leases are given back when they would refuse this reservation, and on one reservation
-- in 16 (by its random id): a count that still holds them only ever refuses more
local swept = string.sub(ARGV[6], 1, 1) == '0'
if swept then sweep(prefix, KEYS[1], now, tonumber(ARGV[5])) end
local bad, used = check()
if bad and not swept then
  sweep(prefix, KEYS[1], now, tonumber(ARGV[5]))
  bad, used = check()
end
if bad then
  redis.call('DEL', KEYS[3])
  return '0 ' .. bad .. ' ' .. fmt(used)
end
local out = {1, 0, '0'}
for i = 1, n do
  local base = 7 + (i - 1) * 5
  local ck = KEYS[3 + i]
  local expire_at = tonumber(ARGV[base + 4])
  -- the new total is set from the one just read (the script is atomic): HSET costs less than HINCRBYFLOAT
  local reserved = fmt((tonumber(found[i][2]) or 0) + tonumber(ARGV[base + 2]))
  if not found[i][1] then
    redis.call('HSET', ck, 'spent', '0')
    redis.call('EXPIREAT', ck, math.ceil(expire_at + retain))
    redis.call('ZADD', KEYS[2], expire_at + retain, ARGV[base + 1])
  end
  redis.call('HSET', ck, 'reserved', reserved)
  out[2 + 2 * i] = found[i][1] or '0'
  out[3 + 2 * i] = reserved
end
redis.call('ZADD', KEYS[1], now + lease, ARGV[6])
return table.concat(out, ' ')
"""
RESERVE = _NOW + _SWEEP + _RESERVE

# KEYS: leases, index, reservation
# ARGV: now, prefix, rid, actual USD (or -1 to release), retain_s, tomb_ttl, actual tokens
# Returns 0 when the reservation was already done, else "1" when this call changed the counters,
# and for a settle also, per counter: name, spent, reserved (after it); all joined by 0x1f.
_FINISH = """
local prefix = ARGV[2]
local v = redis.call('GET', KEYS[3])
if not v then return 0 end
local nl = string.find(v, '\\n', 1, true)
if not nl then return 0 end
local st = string.sub(v, 1, nl - 1)
if st ~= 'held' and st ~= 'expired' then return 0 end
local charges = cjson.decode(string.sub(v, nl + 1))
local actual = tonumber(ARGV[4])
local tokens = tonumber(ARGV[7]) or 0
local retain = tonumber(ARGV[5])
local out = {1}
for i, ch in ipairs(charges) do
  local ck = prefix .. ':bc:' .. ch[1]
  if st == 'held' or actual >= 0 then
    -- new totals from the ones just read (the script is atomic): HMGET + HSET cost less than
    -- two HINCRBYFLOAT
    local v = redis.call('HMGET', ck, 'spent', 'reserved')
    local reserved = tonumber(v[2]) or 0
    if st == 'held' then
      reserved = reserved - ch[2]
      if reserved < 1e-12 then reserved = 0 end
    end
    if actual >= 0 then
      local spent = fmt((tonumber(v[1]) or 0) + (ch[4] and tokens or actual))
      redis.call('HSET', ck, 'spent', spent, 'reserved', fmt(reserved))
      if not v[1] then  -- the counter was gone: findable, and expiring after its window, again
        local keep = ch[3] + retain
        if keep > clock(ARGV[1]) then redis.call('EXPIREAT', ck, math.ceil(keep)) end
        redis.call('ZADD', KEYS[2], keep, ch[1])
      end
      out[3 * i - 1] = ch[1]
      out[3 * i] = spent
      out[3 * i + 1] = fmt(reserved)
    elseif v[1] or v[2] then  -- a release: a counter that is gone is not re-created (as unreserve1)
      redis.call('HSET', ck, 'reserved', fmt(reserved))
    end
  end
end
redis.call('SET', KEYS[3], actual >= 0 and 'settled' or 'released', 'EX', tonumber(ARGV[6]))
redis.call('ZREM', KEYS[1], ARGV[3])
return table.concat(out, string.char(31))
"""
FINISH = _NOW + _FINISH

# KEYS: leases, counter        ARGV: now, prefix, tomb_ttl
_USED = """
sweep(ARGV[2], KEYS[1], clock(ARGV[1]), tonumber(ARGV[3]))
local v = redis.call('HMGET', KEYS[2], 'spent', 'reserved')
return {v[1] or '0', v[2] or '0'}
"""
USED = _NOW + _SWEEP + _USED

# KEYS: leases      ARGV: now, prefix, tomb_ttl       Returns the number of live leases.
_OPEN = """
sweep(ARGV[2], KEYS[1], clock(ARGV[1]), tonumber(ARGV[3]))
return redis.call('ZCARD', KEYS[1])
"""
OPEN = _NOW + _SWEEP + _OPEN

# Circuit breakers ----------------------------------------------------------------------
# {P}:br:<model> hash: st (open | half_open; absent = closed), at (opened_at), p (probe in
# flight 0/1), pu (probe lease end), f (recent failure times, space separated).
# A probe holds a lease: if its process dies, another process may probe after it.

# KEYS: breaker     ARGV: now, cooldown_s, probe_lease_s
_ADMIT = """
local v = redis.call('HMGET', KEYS[1], 'st', 'at', 'p', 'pu')
local st = v[1]
if not st or st == 'closed' then return 'closed' end
local now = clock(ARGV[1])
local lease = tonumber(ARGV[3])
local cooldown = tonumber(ARGV[2])
if st == 'open' then
  -- an opened_at more than the cooldown ahead (the clock stepped back) has run out too
  local at = tonumber(v[2])
  if now - at >= cooldown or at - now > cooldown then
    redis.call('HSET', KEYS[1], 'st', 'half_open', 'p', '1', 'pu', fmt(now + lease))
    return 'probe'
  end
  return 'open'
end
local pu = tonumber(v[4] or '0')
if v[3] ~= '1' or now >= pu or pu - now > lease then
  redis.call('HSET', KEYS[1], 'p', '1', 'pu', fmt(now + lease))
  return 'probe'
end
return 'open'
"""
ADMIT = _NOW + _ADMIT

# KEYS: breaker     ARGV: now, ok, counts, probe, window_s, threshold
# Returns {status, opened_at, probe_in_flight, failures}.
_RECORD = """
local k = KEYS[1]
local function get()
  local v = redis.call('HMGET', k, 'st', 'at', 'p', 'f')
  return {v[1] or 'closed', v[2] or '0', v[3] or '0', v[4] or ''}
end
local now = clock(ARGV[1])
local ok, counts, probe = ARGV[2] == '1', ARGV[3] == '1', ARGV[4] == '1'
local function trip()
  redis.call('DEL', k)
  redis.call('HSET', k, 'st', 'open', 'at', fmt(now), 'p', '0')
  return {'open', fmt(now), '0', ''}
end
if probe then
  if ok then
    redis.call('DEL', k)
    return {'closed', '0', '0', ''}
  end
  if not counts then
    if redis.call('EXISTS', k) == 1 then redis.call('HSET', k, 'p', '0') end
    return get()
  end
  return trip()
end
local rec = get()
if rec[1] ~= 'closed' or ok or not counts then return rec end
local recent = {}
local window = tonumber(ARGV[5])
for t in string.gmatch(rec[4], '%S+') do
  local d = now - tonumber(t)
  if d < window and -d <= window then recent[#recent + 1] = t end
end
recent[#recent + 1] = fmt(now)
if #recent >= tonumber(ARGV[6]) then return trip() end
local f = table.concat(recent, ' ')
redis.call('HSET', k, 'f', f)
redis.call('EXPIRE', k, math.ceil(window) + 1)
return {'closed', '0', '0', f}
"""
RECORD = _NOW + _RECORD

# Limits --------------------------------------------------------------------------------
# Concurrency slots are leased tokens in a sorted set (a dead process's slot expires).
# KEYS: slots     ARGV: now, limit, token, lease_s
# Expired leases are dropped when the count with them reaches the limit (so the set never holds
# more than `limit` tokens; it has no TTL, and goes away when its last token is given back).
_SLOT = """
local now = clock(ARGV[1])
local limit = tonumber(ARGV[2])
if redis.call('ZCARD', KEYS[1]) >= limit then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  if redis.call('ZCARD', KEYS[1]) >= limit then return 0 end
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[3])
return 1
"""
SLOT = _NOW + _SLOT

# Sliding-window log, the way providers count: a grant is a member "<id>:<tokens>" scored
# by its time; a token sum is kept beside it. Returns "0" (granted) or the wait in seconds.
# Grants older than the window are dropped when the counts with them would refuse, and
# every 64th grant (so the log stays the size of one window).
# KEYS: log, token_sum     ARGV: now, rpm (-1 none), tpm (-1 none), tokens, member, window_s
_RATE = """
local now = clock(ARGV[1])
local window = tonumber(ARGV[6])
local z, sum = KEYS[1], KEYS[2]
local rpm, tpm, tokens = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local n = redis.call('ZCARD', z)
local total = 0
if tpm >= 0 and n > 0 then total = tonumber(redis.call('GET', sum) or '0') end
if (rpm >= 0 and n >= rpm) or (tpm >= 0 and n > 0 and total + tokens > tpm) or n % 64 == 63 then
  local horizon = now - window
  local old = redis.call('ZRANGEBYSCORE', z, '-inf', horizon)
  if #old > 0 then
    local freed = 0
    for _, m in ipairs(old) do freed = freed + tonumber(string.match(m, ':(%d+)$')) end
    total = redis.call('DECRBY', sum, freed)
    redis.call('ZREMRANGEBYSCORE', z, '-inf', horizon)
    n = n - #old
  end
end
local wait = 0
if rpm >= 0 and n >= rpm then
  local e = redis.call('ZRANGE', z, n - rpm, n - rpm, 'WITHSCORES')
  wait = math.max(wait, tonumber(e[2]) + window - now)
end
if tpm >= 0 and n > 0 then
  if total + tokens > tpm then
    local excess, freed = total + tokens - tpm, 0
    local all = redis.call('ZRANGE', z, 0, -1, 'WITHSCORES')
    for i = 1, #all, 2 do
      freed = freed + tonumber(string.match(all[i], ':(%d+)$'))
      if freed >= excess then
        wait = math.max(wait, tonumber(all[i + 1]) + window - now)
        break
      end
    end
  end
end
if wait > 0 then return fmt(wait) end
redis.call('ZADD', z, now, ARGV[5])
redis.call('INCRBY', sum, tokens)
local ttl = math.ceil(window) + 1
redis.call('EXPIRE', z, ttl)
redis.call('EXPIRE', sum, ttl)
return '0'
"""
RATE = _NOW + _RATE

# Limits learned from the provider (the rules of stages/adaptive.py, as Lua). Per model: a log
# (sorted set of "<id>:<requests>:<tokens>:<input>:<output>" scored by admission time) and a hash:
# `w` (the window, seconds; absent: not learned), `s1`..`s4` (the log's sums), `q` (the time
# promised to the last attempt held), and per dimension d
# of 1 requests, 2 tokens, 3 input, 4 output: `l<d>` (limit), `x<d>` (others' usage), `u<d>` (its
# end), `a<d>` (the admission of the reading that said so). Times are the callers' wall clocks
# (the providers' resets are wall times too).
_LEARNED_COMMON = """
local FIELDS = {'w', 's1', 's2', 's3', 's4', 'l1', 'l2', 'l3', 'l4', 'x1', 'x2', 'x3', 'x4',
  'u1', 'u2', 'u3', 'u4', 'a1', 'a2', 'a3', 'a4', 'q'}
local function num(v, default) return tonumber(v or '') or default end
local function entry_cost(m, d)
  local parts = {}
  for p in string.gmatch(m, '[^:]+') do parts[#parts + 1] = p end
  return tonumber(parts[d + 1])
end
"""
# Log an attempt, or return the wait and promise it a place (`q`: the time promised to the last
# attempt held). KEYS: log, hash   ARGV: wall, reserve, cost 1..4, member, poll_s, default_window_s,
# ttl_s, waited (1: asked again after a wait). Returns "0 <s1> <s2> <s3> <s4>" (our usage in the
# window, this attempt's included) or the wait in seconds.
_ADAPT = (
    _LEARNED_COMMON
    + """
local t, reserve = tonumber(ARGV[1]), tonumber(ARGV[2])
local st = redis.call('HMGET', KEYS[2], unpack(FIELDS))
local span = num(st[1], 0)
if span <= 0 then span = tonumber(ARGV[9]) end
local sums = {num(st[2], 0), num(st[3], 0), num(st[4], 0), num(st[5], 0)}
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', t - span)
if #old > 0 then
  for _, m in ipairs(old) do
    for d = 1, 4 do sums[d] = sums[d] - entry_cost(m, d) end
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', t - span)
end
local q, step = num(st[22], 0), 0
for d = 1, 4 do
  local lim = num(st[5 + d], -1)
  if lim > 0 then step = math.max(step, span * tonumber(ARGV[2 + d]) / lim) end
end
local ahead = 0
if step > 0 and q > t then ahead = (q - t) / step end
local queue_first = ARGV[11] ~= '1' and ahead >= 1
local wait, all = 0, nil
for d = 1, 4 do
  local limit = num(st[5 + d], -1)
  if limit >= 0 then
    local others = 0
    if num(st[13 + d], 0) > t then others = num(st[9 + d], 0) end
    local cost = tonumber(ARGV[2 + d])
    local need = sums[d] + others + cost - (limit - reserve * limit)
    if need > 0 or queue_first then
      need = math.max(need, 0) + ahead * cost
      local best = -1
      if others >= need then best = num(st[13 + d], 0) - t end
      if not all then all = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES') end
      local freed = 0
      for i = 1, #all, 2 do
        freed = freed + entry_cost(all[i], d)
        if freed >= need then
          local at = tonumber(all[i + 1]) + span - t
          if best < 0 or at < best then best = at end
          break
        end
      end
      if best < 0 then best = math.max(q, t) + step - t end
      if best > wait then wait = best end
    end
  end
end
if queue_first and wait < tonumber(ARGV[8]) then wait = tonumber(ARGV[8]) end
if wait > 0 then
  if #old > 0 then redis.call('HSET', KEYS[2], 's1', sums[1], 's2', sums[2], 's3', sums[3], 's4', sums[4]) end
  redis.call('HSET', KEYS[2], 'q', fmt(math.max(q, t + wait)))
  return fmt(wait)
end
redis.call('ZADD', KEYS[1], t, ARGV[7])
for d = 1, 4 do sums[d] = sums[d] + tonumber(ARGV[2 + d]) end
redis.call('HSET', KEYS[2], 's1', sums[1], 's2', sums[2], 's3', sums[3], 's4', sums[4])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[10]))
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[10]))
return '0 ' .. sums[1] .. ' ' .. sums[2] .. ' ' .. sums[3] .. ' ' .. sums[4]
"""
)
ADAPT = _NOW + _ADAPT

# One response's reading. KEYS: hash   ARGV: wall, admitted_at, own 1..4, then limit, remaining, reset
# per dimension (-1: none), max_window_s, ttl_s, min_window_s
_LEARN = (
    _LEARNED_COMMON
    + """
local t, at = tonumber(ARGV[1]), tonumber(ARGV[2])
local st = redis.call('HMGET', KEYS[1], unpack(FIELDS))
local w = num(st[1], 0)
local put = {}
for d = 1, 4 do
  local lim, rem, rst = tonumber(ARGV[4 + 3 * d]), tonumber(ARGV[5 + 3 * d]), tonumber(ARGV[6 + 3 * d])
  if rem >= 0 then
    local own = tonumber(ARGV[2 + d])
    local span = rst - at
    if rst >= 0 and span >= tonumber(ARGV[21]) and span <= tonumber(ARGV[19]) and (w <= 0 or span < w) then
      w = span
    end
    if lim < 0 then lim = math.max(num(st[5 + d], 0), rem + own) end
    put[#put + 1] = 'l' .. d
    put[#put + 1] = fmt(lim)
    if rst >= 0 and rst > t and at >= num(st[17 + d], 0) then
      local others = lim - rem - own
      if others < 0 then others = 0 end
      for _, v in ipairs({'x' .. d, fmt(others), 'u' .. d, fmt(rst), 'a' .. d, fmt(at)}) do put[#put + 1] = v end
    end
  end
end
if #put > 0 then
  put[#put + 1] = 'w'
  put[#put + 1] = fmt(w)
  redis.call('HSET', KEYS[1], unpack(put))
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[20]))
end
return 1
"""
)
LEARN = _NOW + _LEARN

# Ledger --------------------------------------------------------------------------------
# KEYS: rows (hash request_id -> json), by_time (zset request_id -> ts)   ARGV: request_id, ts, json, retain_s
# A request id is written once: appending the same request twice records it once. Rows older
# than retain_s (before this row) are dropped, at most 100 per append.
_LEDGER = """
local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', tonumber(ARGV[2]) - tonumber(ARGV[4]), 'LIMIT', 0, 100)
if #old > 0 then
  redis.call('HDEL', KEYS[1], unpack(old))
  redis.call('ZREM', KEYS[2], unpack(old))
end
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[3]) == 1 then
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
  return 1
end
return 0
"""
LEDGER = _LEDGER


# Combined ------------------------------------------------------------------------------
# The hot path's stages in one script (one round trip): each stage script above runs as a
# function of its own KEYS and ARGV, so it behaves exactly as when run alone.
_UNSLOT = """
return redis.call('ZREM', KEYS[1], ARGV[1])
"""
_CACHESET = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
# A cached answer is stored as "<expires_at> <stale_until>\n<json>". KEYS: entry   ARGV: wall
# Returns the entry when it is fresh at `wall` (the caller's clock, which wrote expires_at), else 0.
_CACHEGET = """
local v = redis.call('GET', KEYS[1])
if v and (tonumber(string.match(v, '^(%S+) ')) or 0) > tonumber(ARGV[1]) then return v end
return 0
"""
# A model's decaying average latency (``stages/select.ewma``). KEYS: avg   ARGV: sample, alpha
_EWMA = """
local old = tonumber(redis.call('GET', KEYS[1]) or '')
local x = tonumber(ARGV[1])
if old then x = old + tonumber(ARGV[2]) * (x - old) end
redis.call('SET', KEYS[1], fmt(x))
return 1
"""
EWMA = _NOW + _EWMA
_STAGES = {
    "cacheget": _CACHEGET,
    "admit": _ADMIT,
    "slot": _SLOT,
    "rate": _RATE,
    "adapt": _ADAPT,
    "reserve": _RESERVE,
    "unslot": _UNSLOT,
    "learn": _LEARN,
    "finish": _FINISH,
    "record": _RECORD,
    "cacheset": _CACHESET,
    "ledger": _LEDGER,
    "ewma": _EWMA,
}

# ARGV[1]: "J" then "<name> <number of keys> <number of args>" per stage; ARGV[2]: each stage's keys
# then its args, in stage order, joined by the byte 0x1e (one argument: a client packs each argument
# of a command on its own, and that costs it more than splitting them costs here). KEYS[1] is the
# first stage's first key (it names the Cluster slot; every key carries the same hash tag).
# With ARGV[1] starting "F" instead, KEYS are every stage's keys and ARGV[2...] their args (for
# values that hold the byte 0x1e).
# Runs the stages in order and stops after the first that refuses (a fresh cache entry, breaker
# open, no slot, a rate wait, a budget denial). Returns the results of the stages that ran.
STAGES = (
    _NOW
    + _SWEEP
    + "".join(f"local function stage_{name}(KEYS, ARGV)\n{body}\nend\n" for name, body in _STAGES.items())
    + "local run = {"
    + ", ".join(f"{name} = stage_{name}" for name in _STAGES)
    + "}\n"
    + """
local function refused(name, r)
  if name == 'cacheget' then return r ~= 0 end
  if name == 'admit' then return r == 'open' end
  if name == 'slot' then return r == 0 end
  if name == 'rate' then return r ~= '0' end
  if name == 'adapt' then return string.sub(r, 1, 2) ~= '0 ' end
  if name == 'reserve' then return string.sub(r, 1, 1) == '0' end
  return false
end
local out = {}
local keys, args, ki, ai, s = KEYS, ARGV, 1, 2, 0
if string.sub(ARGV[1], 1, 1) == 'J' then
  local sep, blob, pos, n = string.char(30), ARGV[2], 1, 0
  keys = {}
  while true do
    local e = string.find(blob, sep, pos, true)
    n = n + 1
    if not e then
      keys[n] = string.sub(blob, pos)
      break
    end
    keys[n] = string.sub(blob, pos, e - 1)
    pos = e + 1
  end
  args = keys
end
for name, nk, na in string.gmatch(ARGV[1], '(%a+) (%d+) (%d+)') do
  local k, a = {}, {}
  if args == keys then ai = ki + tonumber(nk) end
  for i = 1, tonumber(nk) do k[i] = keys[ki]; ki = ki + 1 end
  for i = 1, tonumber(na) do a[i] = args[ai]; ai = ai + 1 end
  if args == keys then ki = ai end
  local r = run[name](k, a)
  s = s + 1
  out[s] = r
  if refused(name, r) then break end
end
return out
"""
)
