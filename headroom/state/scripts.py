"""The Lua scripts behind the Redis store, each one atomic and one round trip.

They are plain strings: :class:`~headroom.state.redis_store.RedisStore` computes each SHA1
locally, calls ``EVALSHA`` and, on ``NOSCRIPT`` (a restarted or flushed Redis), loads the
script with ``SCRIPT LOAD`` and calls it again. :class:`~headroom.state.store.MemoryStore`
implements the same semantics in Python; both are tested by the same tests.

Time: every script reads the one clock all instances share, ``redis.call('TIME')``
(allowed before writes since Redis 5 replicates effects, not scripts). ``ARGV[1]`` may
override it with milliseconds since the epoch; only tests do that.

Units: time in milliseconds, money in integer micro-dollars (1e-6 USD), so budget counters
are exact integers (``INCRBY``) and never accumulate float error.

Not Redis Cluster ready: the guard derives its budget key from ``KEYS[2]`` plus the
period, which only the script knows (it owns the clock), and every guard sweeps the due
index (below). Standalone and Sentinel are fine.

Eviction: a Redis under ``maxmemory`` with ``maxmemory-policy volatile-lru`` evicts only
keys that carry a TTL. Cached answers, CCR originals and memo entries all do; rate-limit
buckets and budget counters must never be evicted (a forgotten bucket refills early, a
forgotten budget lets a caller overspend), so they carry *no* TTL. They still leave once
they are no longer needed: each is listed in the due index (``DUE_INDEX_KEY``, a sorted
set, itself without TTL: key -> when it is dead, ms) and every guard deletes up to
``SWEEP_BATCH`` of those whose time has passed. A bucket is dead 121 s after its last write
(it is full again by then, which is what an absent bucket means); a budget counter once its
period is over plus the slack. Each guard adds at most one new member and removes up to
``SWEEP_BATCH``, so the index holds only the live callers' entries plus a short backlog.
"""

from __future__ import annotations

import hashlib

from headroom.state.keys import DUE_INDEX_KEY

SWEEP_BATCH = 8  # dead buckets and budget counters deleted per guard, at most

_NOW = """
local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end
"""

_BUCKETS = """
-- A caller's two buckets live in one string, "r|rt|t|tt": the request and token levels and
-- when each was last set (ms); an empty or absent level means "full". Reading and writing
-- it are one call each (a hash needed four: HMGET, HSET, PTTL, PEXPIRE). The key is dead
-- two minutes past its last write: a level never falls below -capacity, so it is full
-- again by then and a swept key means exactly what a full one does. No TTL, so that
-- volatile-lru never evicts it: the due index removes it instead (see the module docs).
local DUE = '""" + DUE_INDEX_KEY + """'

local function due_at(key, at)
  redis.call('ZADD', DUE, at, key)
end

local function sweep()
  local dead = redis.call('ZRANGEBYSCORE', DUE, '-inf', now, 'LIMIT', 0, """ + str(SWEEP_BATCH) + """)
  if #dead > 0 then
    redis.call('UNLINK', unpack(dead))
    redis.call('ZREM', DUE, unpack(dead))
  end
end

local function read_buckets(key)
  local v = redis.call('GET', key)
  if not v then return nil, nil, nil, nil end
  local r, rt, t, tt = string.match(v, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)$')
  if not r then error('malformed rate-limit bucket at ' .. key) end
  return tonumber(r), tonumber(rt), tonumber(t), tonumber(tt)
end

local function write_buckets(key, r, rt, t, tt)
  redis.call('SET', key, (r or '') .. '|' .. (rt or '') .. '|' .. (t or '') .. '|' .. (tt or ''))
  due_at(key, now + 121000)
end

-- Continuous refill: capacity `cap` per minute, level capped at `cap`.
local function refill(cap, level, ts)
  if not level then return cap end
  local elapsed = now - ts
  if elapsed < 0 then elapsed = 0 end
  level = level + elapsed * cap / 60000
  if level > cap then return cap end
  return level
end
"""

_CALENDAR = """
-- Howard Hinnant's civil-date algorithms (proleptic Gregorian, UTC).
local function civil(days)
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
                          - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m
  if mp < 10 then m = mp + 3 else m = mp - 9 end
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return y, m, d
end

local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp
  if m > 2 then mp = m - 3 else mp = m + 9 end
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

-- The budget period containing `now`: its id and its end (ms since the epoch).
local function period_of(p)
  local secs = math.floor(now / 1000)
  local days = math.floor(secs / 86400)
  local y, m, d = civil(days)
  if p == 'h' then
    local h = math.floor(secs / 3600)
    return string.format('%04d-%02d-%02dT%02d', y, m, d, h % 24), (h + 1) * 3600000
  elseif p == 'd' then
    return string.format('%04d-%02d-%02d', y, m, d), (days + 1) * 86400000
  end
  local ny, nm = y, m + 1
  if nm > 12 then ny, nm = y + 1, 1 end
  return string.format('%04d-%02d', y, m), days_from_civil(ny, nm, 1) * 86400000
end
"""

_GUARD_LOGIC = """
-- guard: refill and check the request and token buckets, and reserve the worst-case cost
-- against the budget of the current period. All or nothing.
-- KEYS[1] the caller's buckets (see read_buckets)
-- KEYS[2] budget key prefix; the period id is appended (prefix .. ':' .. id)
-- ARGV: 1 now override | 2 rpm | 3 tpm | 4 tokens | 5 budget (micro-USD)
--       6 reserve (micro-USD) | 7 period h|d|m | 8 budget TTL slack (ms)
-- Returns {failed (0 none, 1 rpm, 2 tpm, 3 budget), retry_after_ms,
--          requests_remaining, requests_reset_ms, tokens_remaining, tokens_reset_ms,
--          budget_remaining, budget_reset_ms, period_id}
local rpm = tonumber(ARGV[2])
local tpm = tonumber(ARGV[3])
local tokens = tonumber(ARGV[4])
local budget = tonumber(ARGV[5])
local reserve = tonumber(ARGV[6])
local failed, wait = 0, 0
sweep()

local r, t = 0, 0
local r0, rt0, t0, tt0
if rpm > 0 or tpm > 0 then
  r0, rt0, t0, tt0 = read_buckets(KEYS[1])
  if rpm > 0 then
    r = refill(rpm, r0, rt0)
    if r < 1 then
      local w = (1 - r) * 60000 / rpm
      if w > wait then wait, failed = w, 1 end
    end
  end
  if tpm > 0 then
    t = refill(tpm, t0, tt0)
    local need = tokens
    if need > tpm then need = tpm end  -- an oversized request passes on a full bucket
    if t < need then
      local w = (need - t) * 60000 / tpm
      if w > wait then wait, failed = w, 2 end
    end
  end
end

local id, spent, reset = '', 0, 0
if budget > 0 then
  local pend
  id, pend = period_of(ARGV[7])
  reset = pend - now
  local key = KEYS[2] .. ':' .. id
  if failed == 0 and reserve > 0 then
    -- Reserve first and take it back if that overspends: one call when it fits.
    spent = redis.call('INCRBY', key, reserve)
    if spent == reserve then due_at(key, pend + tonumber(ARGV[8])) end
    if spent > budget then
      spent = redis.call('DECRBY', key, reserve)
      wait, failed = reset, 3
    end
  else
    spent = tonumber(redis.call('GET', key) or '0')
    -- an exhausted budget outranks a shorter rate-limit wait: report the longest wait
    if spent + reserve > budget and reset >= wait then wait, failed = reset, 3 end
  end
end

if failed == 0 then
  wait = 0
  if rpm > 0 or tpm > 0 then
    if rpm > 0 then
      r = r - 1
      r0, rt0 = r, now
    end
    if tpm > 0 then
      t = t - tokens
      if t < -tpm then t = -tpm end
      t0, tt0 = t, now
    end
    write_buckets(KEYS[1], r0, rt0, t0, tt0)
  end
end

local rr, tr = 0, 0
if rpm > 0 then rr = (rpm - r) * 60000 / rpm end
if tpm > 0 then tr = (tpm - t) * 60000 / tpm end
local verdict = {failed, math.ceil(wait), math.floor(r), math.ceil(rr), math.floor(t), math.ceil(tr),
                 budget - spent, math.ceil(reset), id}
"""

_CACHE_TOUCH = """
-- Return a cache entry and mark it most recently used (or drop it from the index).
local function cache_touch(entry, index)
  local v = redis.call('GET', entry)
  if v then
    redis.call('ZADD', index, now, entry)
  else
    redis.call('ZREM', index, entry)
  end
  return v
end
"""

GUARD = _NOW + _BUCKETS + _CALENDAR + _GUARD_LOGIC + "return verdict\n"

SETTLE = _NOW + _BUCKETS + """
-- settle: reconcile the token bucket (actual - estimated tokens; the level stays within
-- [-capacity, capacity]) and the budget (actual - reserved cost) of the reservation's
-- period, which may already be over: a period key is only adjusted while it exists.
-- KEYS[1] the caller's buckets | KEYS[2] (optional) the full budget key
-- ARGV: 1 now override | 2 tpm | 3 token delta | 4 cost delta (micro-USD)
local tpm = tonumber(ARGV[2])
local delta = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
if tpm > 0 and delta ~= 0 then
  local r0, rt0, t0, tt0 = read_buckets(KEYS[1])
  local t = refill(tpm, t0, tt0) - delta
  if t > tpm then t = tpm end
  if t < -tpm then t = -tpm end
  write_buckets(KEYS[1], r0, rt0, t, now)
end
if cost ~= 0 and #KEYS > 1 and redis.call('EXISTS', KEYS[2]) == 1 then
  if redis.call('INCRBY', KEYS[2], cost) < 0 then
    redis.call('SET', KEYS[2], 0, 'KEEPTTL')
  end
end
return 1
"""

CACHE_GET = _NOW + _CACHE_TOUCH + """
-- cache get: KEYS[1] entry | KEYS[2] LRU index (sorted set: entry key -> last use, ms)
return cache_touch(KEYS[1], KEYS[2])
"""

ADMIT = _NOW + _BUCKETS + _CALENDAR + _CACHE_TOUCH + """
-- admit: the hot path's one call, a cache lookup and the guard together. KEYS[1], KEYS[2]
-- and ARGV as for the guard; KEYS[3] cache entry, KEYS[4] LRU index. The guard charges
-- whether or not the cache hits (the caller settles a hit's tokens and budget back).
local cached = cache_touch(KEYS[3], KEYS[4])
""" + _GUARD_LOGIC + "return {cached, verdict}\n"

CACHE_PUT = _NOW + """
-- cache put: store the entry with its TTL, mark it most recently used, forget index
-- members unused for longer than the TTL (they have expired), then evict the least
-- recently used entries beyond max_entries. The index expires with its newest entry.
-- KEYS[1] entry | KEYS[2] LRU index | ARGV: 1 now override | 2 value | 3 ttl ms | 4 max entries
local ttl = tonumber(ARGV[3])
redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl)
redis.call('ZADD', KEYS[2], now, KEYS[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. (now - ttl))
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4])
if over > 0 then
  local old = redis.call('ZPOPMIN', KEYS[2], over)
  for i = 1, #old, 2 do redis.call('UNLINK', old[i]) end
end
if redis.call('PTTL', KEYS[2]) < ttl then redis.call('PEXPIRE', KEYS[2], ttl) end
return 1
"""

TOOL_USE = _NOW + """
-- The retrieval policy (headroom.state.tool_use): add to each tool's counts for one caller;
-- back off a tool whose counts pass the rule. A tool backed off now is left alone.
-- KEYS[1] back-off index, then per tool: counts hash, back-off flag.
-- ARGV: 1 now override | 2 threshold | 3 min compressions | 4 period ms | 5 counts TTL ms |
-- 6 halve at | 7 index limit | then per tool: lossy, retrieved, index member.
-- Returns the (1-based) positions of the tools backed off by this call.
local threshold, least = tonumber(ARGV[2]), tonumber(ARGV[3])
local period, ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
local halve_at, limit = tonumber(ARGV[6]), tonumber(ARGV[7])
local index = KEYS[1]
local started = {}
for i = 1, (#KEYS - 1) / 2 do
  local counts, flag = KEYS[2 * i], KEYS[2 * i + 1]
  local a = 7 + 3 * (i - 1)
  if redis.call('EXISTS', flag) == 0 then
    local l = tonumber(redis.call('HINCRBY', counts, 'l', ARGV[a + 1]))
    local r = tonumber(redis.call('HINCRBY', counts, 'r', ARGV[a + 2]))
    if l >= halve_at then
      l, r = math.floor(l / 2), math.floor(r / 2)
      redis.call('HSET', counts, 'l', l, 'r', r)
    end
    if threshold > 0 and l >= least and r > threshold * l then
      local untill = math.floor(now + period)
      redis.call('SET', flag, tostring(untill), 'PX', period)
      redis.call('DEL', counts)
      redis.call('ZADD', index, untill, ARGV[a + 3])
      if redis.call('PTTL', index) < period then redis.call('PEXPIRE', index, period) end
      started[#started + 1] = i
    else
      redis.call('PEXPIRE', counts, ttl)
    end
  end
end
redis.call('ZREMRANGEBYSCORE', index, '-inf', now)
local over = redis.call('ZCARD', index) - limit
if over > 0 then redis.call('ZPOPMIN', index, over) end
return started
"""

TOOL_BACKOFFS = _NOW + """
-- The back-offs in force, soonest to end first. KEYS[1] back-off index | ARGV: 1 now override | 2 limit
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[2]))
"""

SCRIPTS: dict[str, str] = {
    "admit": ADMIT,
    "guard": GUARD,
    "settle": SETTLE,
    "cache_get": CACHE_GET,
    "cache_put": CACHE_PUT,
    "tool_use": TOOL_USE,
    "tool_backoffs": TOOL_BACKOFFS,
}

SHAS: dict[str, str] = {name: hashlib.sha1(body.encode()).hexdigest() for name, body in SCRIPTS.items()}
