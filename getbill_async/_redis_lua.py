"""The Lua scripts behind ``RedisBudget``: each runs atomically on the Redis server.

Per class (read, write) the keys are: ``slots``, a sorted set of counted slots scored by when
each frees; ``inflight``, slots taken and not yet answered, scored by when their lease ends;
``pause``, until when a 429 paused the class; ``pace``, the earliest next admission when pacing;
``server``, the limit and window the server's headers taught. Times are seconds on Redis's own
clock (``TIME``), never a worker's.
"""

from __future__ import annotations

__all__ = ["ACQUIRE", "RELEASE", "STATUS"]

# Shared by the three scripts. KEYS: slots, inflight, pause, pace, server; times in seconds.
_COMMON = """
local slots, inflight, pause, pace, server = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local after_now = string.format('(%.6f', now)

-- The configured limit and window, tightened by what the server's headers said.
local function rules(limit, window)
  local learned = redis.call('HMGET', server, 'limit', 'window')
  local l, w = tonumber(learned[1]), tonumber(learned[2])
  if l and l < limit then limit = l end
  if w and w > window then window = w end
  return limit, window
end

-- A slot in flight past its lease (its worker died, or hung) reached the server by the lease's
-- end at the latest: it becomes a counted slot freeing a window after that. Freed slots stay
-- a lease longer (not counted), for the release script's look at the server's headers.
local function expire(window, lease)
  local lapsed = redis.call('ZRANGEBYSCORE', inflight, '-inf', now, 'WITHSCORES')
  for i = 1, #lapsed, 2 do
    redis.call('ZADD', slots, tonumber(lapsed[i + 1]) + window, lapsed[i])
  end
  if #lapsed > 0 then redis.call('ZREMRANGEBYSCORE', inflight, '-inf', now) end
  redis.call('ZREMRANGEBYSCORE', slots, '-inf', now - lease)
  return redis.call('ZCOUNT', slots, after_now, '+inf'), redis.call('ZCARD', inflight)
end

-- Seconds until a slot is free (0: now), and 1 when only an answer in flight can free one:
-- then the seconds are an upper bound (that request's lease ends, and a window passes).
local function wait_time(limit, window, used, flying)
  local blocked = math.max(0, (tonumber(redis.call('GET', pause)) or 0) - now)
  local paced = math.max(0, (tonumber(redis.call('GET', pace)) or 0) - now)
  local excess = used + flying - limit
  if excess < 0 then return math.max(blocked, paced), 0 end
  if excess >= used then
    local at = redis.call('ZRANGE', inflight, excess - used, excess - used, 'WITHSCORES')
    return math.max(blocked, paced, tonumber(at[2]) + window - now), 1
  end
  local at = redis.call('ZRANGEBYSCORE', slots, after_now, '+inf', 'WITHSCORES', 'LIMIT', excess, 1)
  return math.max(blocked, paced, tonumber(at[2]) - now), 0
end

-- Every key but the pause (which has its own expiry) outlives its latest slot, no more.
local function keep(window, lease)
  local ttl = math.ceil((window + 2 * lease) * 1000) + 1000
  for _, key in ipairs({slots, inflight, pace, server}) do redis.call('PEXPIRE', key, ttl) end
end
"""

# ARGV: limit, window, lease, id, pace (0/1). Returns {1, admitted at}, or {0, wait, flying only}.
ACQUIRE = (
    _COMMON
    + """
local limit, window = rules(tonumber(ARGV[1]), tonumber(ARGV[2]))
local lease = tonumber(ARGV[3])
local used, flying = expire(window, lease)
local wait, flying_only = wait_time(limit, window, used, flying)
if wait > 0 then return {0, tostring(wait), flying_only} end
redis.call('ZADD', inflight, now + lease, ARGV[4])
if ARGV[5] == '1' then redis.call('SET', pace, string.format('%.6f', now + window / limit)) end
keep(window, lease)
return {1, string.format('%.6f', now)}
"""
)

# ARGV: id, sent (0/1), limit, window, lease, status, remaining, header limit, header window,
# retry_after, admitted at (numbers, or '' when absent), channel. Returns 1.
RELEASE = (
    _COMMON
    + """
local id, sent = ARGV[1], ARGV[2] == '1'
local limit, window = rules(tonumber(ARGV[3]), tonumber(ARGV[4]))
local lease, status, remaining = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local said_limit, said_window = tonumber(ARGV[8]), tonumber(ARGV[9])
local retry_after, admitted = tonumber(ARGV[10]), tonumber(ARGV[11])
redis.call('ZREM', inflight, id)
if not sent then
  redis.call('ZREM', slots, id)  -- it never reached the server
else
  redis.call('ZADD', slots, now + window, id)  -- counted from the answer
  if said_limit and said_limit > 0 and said_limit < limit then
    redis.call('HSET', server, 'limit', said_limit)
    limit = said_limit
  end
  if said_window and said_window > window then
    redis.call('HSET', server, 'window', said_window)
    window = said_window
  end
  if status == 429 then
    local wait = retry_after or window / limit
    local until_ = now + wait
    if until_ > (tonumber(redis.call('GET', pause)) or 0) then
      redis.call('SET', pause, string.format('%.6f', until_), 'PX', math.ceil(wait * 1000) + 1000)
    end
  elseif remaining and admitted then
    -- Requests the server counts and the ledger does not came from elsewhere and may be brand
    -- new: taken now, freed a whole window from now. The server counted when it answered, so
    -- every request of ours it counted frees after this one was admitted: slots freed since
    -- are still compared (another worker may have dropped them in between).
    expire(window, lease)
    local seen = redis.call('ZCOUNT', slots, string.format('(%.6f', admitted), '+inf')
    local unseen = (limit - remaining) - seen - redis.call('ZCARD', inflight)
    for i = 1, unseen do redis.call('ZADD', slots, now + window, id .. ':unseen:' .. i) end
  end
end
keep(window, lease)
redis.call('PUBLISH', ARGV[12], '1')
return 1
"""
)

# ARGV: limit, window, lease. Returns {limit, window, used, in flight, wait, blocked} as strings.
STATUS = (
    _COMMON
    + """
local limit, window = rules(tonumber(ARGV[1]), tonumber(ARGV[2]))
local used, flying = expire(window, tonumber(ARGV[3]))
local blocked = math.max(0, (tonumber(redis.call('GET', pause)) or 0) - now)
local wait, flying_only = wait_time(limit, window, used, flying)
if flying_only == 1 then wait = window end  -- at the soonest, as LocalBudget says
return {tostring(limit), tostring(window), tostring(used), tostring(flying),
        tostring(wait), tostring(blocked)}
"""
)
