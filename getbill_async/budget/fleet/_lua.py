"""The Lua scripts behind ``RedisBudget``, each run atomically on the Redis server (how to
read their answers: ``_replies``).

Per class (read, write) the keys are: ``slots``, a sorted set of counted slots scored by when
each frees; ``inflight``, slots taken and not yet answered, scored by when their lease ends;
``pause``, until when a 429 paused the class; ``pace``, the earliest next admission when pacing;
``server``, the limit and window the server's headers taught and whether any answer was seen;
``waiting``, interactive requests refused for now, scored by when their mark lapses;
``sends``, the fleet's requests that got an answer, scored by when each was admitted;
``readings``, the server's counts that may still bound other programs' requests, scored by
when each was answered (see ``budget/_others.py`` for the rule, which both ledgers keep). Every key
of one budget shares one hash tag, so on a cluster every script runs on one node. Times are
seconds on Redis's own clock (``TIME``), never a worker's.

Every script checks the ledger before it reads it and seals it after: ``server`` keeps a
generation (bumped by each script) and the sizes of ``slots`` and ``inflight``. A ledger whose
sets no longer hold those sizes lost keys (eviction), and one whose generation is below what a
worker saw already went back in time (a failover to a lagging replica): either is cold again,
so one request per class goes out until an answer's headers rebuild the count. Each script
returns the generation it sealed, last, for the worker to mirror.

A slot's id starts with who took it: ``i`` (interactive), ``b`` (bulk) or ``u`` (spent on a
worker's local fallback, brought back by ``ADOPT``); ``STATUS`` counts the lanes' shares so, and
the readings' bound as other programs'.
"""

from __future__ import annotations

__all__ = ["ACQUIRE", "ADOPT", "RELEASE", "STATUS"]

# Shared by the scripts. KEYS: slots, inflight, pause, pace, server, waiting, sends, readings.
_COMMON = """
local slots, inflight, pause, pace, server, waiting, sends, readings =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local after_now = string.format('(%.6f', now)

-- The configured limit, tightened by the server's headers; the window the server said last.
local function rules(limit, window)
  local learned = redis.call('HMGET', server, 'limit', 'window')
  local l, w = tonumber(learned[1]), tonumber(learned[2])
  if l and l < limit then limit = l end
  if w then window = w end
  return limit, window
end

-- Cold: no answer seen since the ledger was (re)born, e.g. after Redis lost its data.
local function cold() return redis.call('HEXISTS', server, 'seen') == 0 end

-- Slots a bulk request may find taken: limit x (1 - reserve), rounded up (see bulk_cap).
local function bulk_cap(limit, reserve)
  return math.max(1, math.ceil(limit * (1 - reserve) - 1e-9))
end

-- A slot in flight past its lease (its worker died, or hung) reached the server by the lease's
-- end at the latest: it becomes a counted slot freeing a window after that. Readings whose
-- window passed go, and sends no reading left or to come looks back to.
local function expire(window, lease)
  local lapsed = redis.call('ZRANGEBYSCORE', inflight, '-inf', now, 'WITHSCORES')
  for i = 1, #lapsed, 2 do
    redis.call('ZADD', slots, tonumber(lapsed[i + 1]) + window, lapsed[i])
  end
  if #lapsed > 0 then redis.call('ZREMRANGEBYSCORE', inflight, '-inf', now) end
  redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
  redis.call('ZREMRANGEBYSCORE', sends, '-inf', now - 2 * window)
  for _, member in ipairs(redis.call('ZRANGE', readings, 0, -1)) do
    if tonumber(string.match(member, '^[^:]+:[^:]+:([^:]+):')) <= now then
      redis.call('ZREM', readings, member)
    end
  end
  return redis.call('ZCOUNT', slots, after_now, '+inf'), redis.call('ZCARD', inflight)
end

-- Other programs' requests the server's counts may still hold: per reading (a candidate for
-- the latest arrival), its count less the fleet's answered requests sent inside its window
-- and before its answer. Returns the largest, and {frees at, count} per reading above zero.
local function others()
  local list = redis.call('ZRANGE', readings, 0, -1, 'WITHSCORES')
  local best, steps = 0, {}
  for i = 1, #list, 2 do
    local counted, since, frees = string.match(list[i], '^([^:]+):([^:]+):([^:]+):')
    local mine = redis.call('ZCOUNT', sends, '(' .. since, '(' .. list[i + 1])
    local n = tonumber(counted) - mine
    if n > 0 then
      steps[#steps + 1] = {tonumber(frees), n}
      if n > best then best = n end
    end
  end
  return best, steps
end

-- When the fleet's counted slots plus the readings' bound first fall under `room` (both only
-- fall as time passes).
local function first_room(room, steps)
  local taken = redis.call('ZRANGEBYSCORE', slots, after_now, '+inf', 'WITHSCORES')
  local mine, passed, times = #taken / 2, 0, {}
  for i = 2, #taken, 2 do times[#times + 1] = tonumber(taken[i]) end
  for _, step in ipairs(steps) do times[#times + 1] = step[1] end
  table.sort(times)
  for _, at in ipairs(times) do
    while passed < mine and tonumber(taken[2 * passed + 2]) <= at do passed = passed + 1 end
    local most = 0
    for _, step in ipairs(steps) do
      if step[1] > at and step[2] > most then most = step[2] end
    end
    if mine - passed + most < room then return at end
  end
  return now  -- not reached: after the last time nothing is counted
end

-- Seconds until fewer than `cap` are taken (0: now), and 1 when only an answer in flight can
-- free one: then the seconds are an upper bound (that request's lease ends, and a window).
local function wait_time(cap, window, used, flying, other, steps)
  local blocked = math.max(0, (tonumber(redis.call('GET', pause)) or 0) - now)
  local paced = math.max(0, (tonumber(redis.call('GET', pace)) or 0) - now)
  local excess = used + flying + other - cap
  if excess < 0 then return math.max(blocked, paced), 0 end
  if flying >= cap then
    local at = redis.call('ZRANGE', inflight, flying - cap, flying - cap, 'WITHSCORES')
    return math.max(blocked, paced, tonumber(at[2]) + window - now), 1
  end
  if other > 0 then return math.max(blocked, paced, first_room(cap - flying, steps) - now), 0 end
  local at = redis.call('ZRANGEBYSCORE', slots, after_now, '+inf', 'WITHSCORES', 'LIMIT', excess, 1)
  return math.max(blocked, paced, tonumber(at[2]) - now), 0
end

-- Every key but the pause (which has its own expiry) outlives its latest slot, no more. All
-- expire at one instant, so a ledger that expired is gone as a whole, never in part.
local function keep(window, lease)
  local ttl = math.ceil((window + 2 * lease) * 1000) + 1000
  for _, key in ipairs({slots, inflight, pace, server, sends, readings}) do
    redis.call('PEXPIRE', key, ttl)
  end
end

-- Before reading: a ledger with fewer (or more) slots than it sealed lost keys, one with an
-- older generation than the worker mirrors (`known`) went back in time. Either is cold.
local function check(known)
  local rec = redis.call('HMGET', server, 'gen', 'nslots', 'ninflight', 'nreadings')
  local gen = tonumber(rec[1]) or 0
  local lost = (tonumber(rec[2]) or 0) ~= redis.call('ZCARD', slots)
    or (tonumber(rec[3]) or 0) ~= redis.call('ZCARD', inflight)
    or (tonumber(rec[4]) or 0) ~= redis.call('ZCARD', readings)
  if lost or gen < known then
    redis.call('HDEL', server, 'seen')
    if gen < known then gen = known end
  end
  return gen
end

-- After writing: the next generation, and the sizes the next script checks.
local function seal(gen, window, lease)
  redis.call('HSET', server, 'gen', gen + 1, 'nslots', redis.call('ZCARD', slots),
    'ninflight', redis.call('ZCARD', inflight), 'nreadings', redis.call('ZCARD', readings))
  keep(window, lease)
  return gen + 1
end
"""

# ARGV: limit, window, lease, id (its first letter: i or b), pace (0/1), reserve, waiter id,
# poll, channel, cold lease, the generation the worker saw last. Returns {1, admitted at,
# generation}, or {0, wait, why, generation}: why 0, the wait is known; 1, only an answer in
# flight can free a slot (the wait is an upper bound); 2, the cold start waits for the first
# answer (the wait: until the probe's own short lease ends); 3, interactive requests wait, and
# go first.
ACQUIRE = (
    _COMMON
    + """
local limit, window = rules(tonumber(ARGV[1]), tonumber(ARGV[2]))
-- Workers still on their local share after others rejoined may spend it: held back (ADOPT).
local held = redis.call('HMGET', server, 'held', 'held_until')
if (tonumber(held[2]) or 0) > now then limit = math.max(1, limit - tonumber(held[1])) end
local lease, id, reserve = tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[6])
local waiter, poll, cold_lease = ARGV[7], tonumber(ARGV[8]), tonumber(ARGV[10])
local bulk = string.sub(id, 1, 1) == 'b'
local gen = check(tonumber(ARGV[11]))
local function admit()
  -- A call tried again after a lost connection may have run already: it decides afresh.
  redis.call('ZREM', inflight, id)
  local used, flying = expire(window, lease)
  local is_cold = cold()
  if is_cold and flying > 0 then
    -- A cold fleet waits for an answer, but no longer than a probe's lease: requests in flight
    -- when the ledger went cold (lost, or older) may never answer either.
    local cap = now + cold_lease
    local late = redis.call('ZRANGEBYSCORE', inflight, string.format('(%.6f', cap), '+inf')
    for _, late in ipairs(late) do
      redis.call('ZADD', inflight, cap, late)
    end
    local at = redis.call('ZRANGE', inflight, 0, 0, 'WITHSCORES')
    return {0, tostring(math.max(0.001, tonumber(at[2]) - now)), 2}
  end
  local cap = limit
  if bulk then
    cap = bulk_cap(limit, reserve)
    redis.call('ZREMRANGEBYSCORE', waiting, '-inf', now)
    local first = redis.call('ZRANGE', waiting, 0, 0, 'WITHSCORES')
    if #first > 0 then return {0, tostring(math.max(0.001, tonumber(first[2]) - now)), 3} end
  end
  local other, steps = others()
  local wait, why = wait_time(cap, window, used, flying, other, steps)
  if wait > 0 then
    if not bulk then
      -- Marked until this waiter asks again (it sleeps at most `poll`), with a second to spare.
      redis.call('ZADD', waiting, now + math.min(wait, poll) + 1, waiter)
      redis.call('PEXPIRE', waiting, math.ceil((poll + 2) * 1000))
    end
    return {0, tostring(wait), why}
  end
  if not bulk and redis.call('ZREM', waiting, waiter) == 1 then
    redis.call('PUBLISH', ARGV[9], '1')  -- bulk waiters held back by this one may look again
  end
  -- The cold probe's own short lease: a probe lost or dead holds the fleet only that long.
  redis.call('ZADD', inflight, now + (is_cold and math.min(lease, cold_lease) or lease), id)
  if ARGV[5] == '1' then redis.call('SET', pace, string.format('%.6f', now + window / limit)) end
  return {1, string.format('%.6f', now)}
end
local answer = admit()
answer[#answer + 1] = tostring(seal(gen, window, lease))
return answer
"""
)

# ARGV: id, sent (0/1), limit, window, lease, status, remaining, header limit, header window,
# retry_after, admitted at (numbers, or '' when absent), channel, ends the cold start (0/1),
# the generation the worker saw last. Returns {1, generation}.
RELEASE = (
    _COMMON
    + """
local id, sent = ARGV[1], ARGV[2] == '1'
local limit, window = rules(tonumber(ARGV[3]), tonumber(ARGV[4]))
local lease, status, remaining = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local gen = check(tonumber(ARGV[14]))
local said_limit, said_window = tonumber(ARGV[8]), tonumber(ARGV[9])
local retry_after, admitted = tonumber(ARGV[10]), tonumber(ARGV[11])
redis.call('ZREM', inflight, id)
if not sent then
  redis.call('ZREM', slots, id)  -- it never reached the server
else
  redis.call('ZADD', slots, now + window, id)  -- counted from the answer
  if ARGV[13] == '1' then redis.call('HSET', server, 'seen', 1) end
  -- The server's own rules, kept for every worker (and the ops view) while the ledger lives.
  if said_limit and said_limit > 0 then
    redis.call('HSET', server, 'limit', said_limit)
    if said_limit < limit then limit = said_limit end
  end
  if said_window and said_window > 0 then
    -- The server's latest word, not its largest (see Ledger._learn_rules): every slot counted
    -- so far was taken by now, so it frees by now + window at the latest.
    redis.call('HSET', server, 'window', said_window)
    if said_window < window then
      local latest = now + said_window
      local late = redis.call('ZRANGEBYSCORE', slots, string.format('(%.6f', latest), '+inf')
      for _, member in ipairs(late) do redis.call('ZADD', slots, latest, member) end
      local listed = redis.call('ZRANGE', readings, 0, -1, 'WITHSCORES')
      for i = 1, #listed, 2 do
        local counted, since, frees, who = string.match(listed[i], '^([^:]+):([^:]+):([^:]+):(.*)$')
        if tonumber(frees) > latest then
          redis.call('ZREM', readings, listed[i])
          redis.call('ZADD', readings, listed[i + 1],
            string.format('%s:%s:%.6f:%s', counted, since, latest, who))
        end
      end
    end
    window = said_window
  end
  if status == 429 then
    local wait = retry_after or window / limit
    local until_ = now + wait
    if until_ > (tonumber(redis.call('GET', pause)) or 0) then
      redis.call('SET', pause, string.format('%.6f', until_), 'PX', math.ceil(wait * 1000) + 1000)
    end
  end
  -- An answer: the server counted it at its arrival (see budget/_others.py for the rule).
  if status and admitted then redis.call('ZADD', sends, admitted, id) end
  if remaining and admitted then
    local counted = limit - remaining
    -- A refusal for a full window: the limit at least, and this one on top.
    if status == 429 and remaining == 0 and counted < limit + 1 then counted = limit + 1 end
    if not (now - window < admitted and admitted < now) then counted = counted - 1 end
    -- Readings answered before this one was admitted arrived before it: it bounds theirs.
    redis.call('ZREMRANGEBYSCORE', readings, '-inf', string.format('(%.6f', admitted))
    redis.call('ZADD', readings, now,
      string.format('%d:%.6f:%.6f:%s', counted, now - window, now + window, id))
  end
end
redis.call('PUBLISH', ARGV[12], '1')
return {1, tostring(seal(gen, window, lease))}
"""
)

# ARGV: limit, window, lease, reserve, the generation the worker saw last. Returns {limit,
# window, used, in flight, wait, blocked, cold (0/1), bulk cap, interactive, bulk, other,
# generation} as strings; interactive, bulk and other count the slots taken (counted and in
# flight) by each. Cold with a probe in flight, the wait is until the probe's lease ends.
STATUS = (
    _COMMON
    + """
local limit, window = rules(tonumber(ARGV[1]), tonumber(ARGV[2]))
local gen = check(tonumber(ARGV[5]))
local used, flying = expire(window, tonumber(ARGV[3]))
local blocked = math.max(0, (tonumber(redis.call('GET', pause)) or 0) - now)
local is_cold = cold()
local other, steps = others()
local wait, why = wait_time(limit, window, used, flying, other, steps)
if is_cold and flying > 0 then
  local at = redis.call('ZRANGE', inflight, 0, 0, 'WITHSCORES')
  wait = math.max(0, tonumber(at[2]) - now)
elseif why == 1 then wait = window end  -- at the soonest, as LocalBudget says
local shares = {i = 0, b = 0, u = other}
local taken = redis.call('ZRANGEBYSCORE', slots, after_now, '+inf')
for _, list in ipairs({taken, redis.call('ZRANGE', inflight, 0, -1)}) do
  for _, member in ipairs(list) do
    local who = string.sub(member, 1, 1)
    if shares[who] then shares[who] = shares[who] + 1 end
  end
end
return {tostring(limit), tostring(window), tostring(used + other), tostring(flying), tostring(wait),
        tostring(blocked), is_cold and '1' or '0', tostring(bulk_cap(limit, tonumber(ARGV[4]))),
        tostring(shares.i), tostring(shares.b), tostring(shares.u),
        tostring(seal(gen, window, tonumber(ARGV[3])))}
"""
)

# ARGV: window, lease, id prefix, held, hold, then the seconds until each slot frees, then
# the generation the worker saw last. A worker back from its local fallback brings the slots it
# spent there (they may still be in the server's window), and holds `held` slots back from
# ACQUIRE for `hold` seconds: the shares of the workers still on their local fallback, which
# the ledger cannot see until they rejoin too (each tries Redis again within that time).
# Returns {1, generation}.
ADOPT = (
    _COMMON
    + """
local window, lease, prefix = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local held, hold = tonumber(ARGV[4]), tonumber(ARGV[5])
local gen = check(tonumber(ARGV[#ARGV]))
for i = 6, #ARGV - 1 do
  redis.call('ZADD', slots, now + math.min(tonumber(ARGV[i]), window), prefix .. ':' .. i)
end
if held > 0 then
  local until_ = math.max(now + hold, tonumber(redis.call('HGET', server, 'held_until')) or 0)
  redis.call('HSET', server, 'held', held, 'held_until', string.format('%.6f', until_))
end
return {1, tostring(seal(gen, window, lease))}
"""
)
