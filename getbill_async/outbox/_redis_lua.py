"""The Lua scripts of the Redis outbox store; each runs atomically on the Redis server.

KEYS, the same for every script, all under one hash tag (one cluster slot): ``entries``
(hash: entry id -> the entry as JSON), ``pending`` (sorted set of entry ids, by id: oldest
first), ``inflight`` (by lease end), ``done`` (by when finished), ``dead`` (by when refused)
and ``held`` (by id), ``keys`` (hash: key -> JSON list of its entry ids, oldest first),
``meta`` (hash: the id counter, the writes saved by merging, the format, the account, how
far entries are indexed), ``unkeyed`` (creates without a ``call_id``, by id, until pruned:
``COUNTS`` intersects it with ``pending`` instead of reading every pending entry, which would
stall the Redis that the fleet's budget shares), ``ready`` and ``later``: the pending
entries a claim may take, the first unfinished entry of each key and every create without
one, by id when due and by when due otherwise. A claim moves what has come due from
``later`` to ``ready`` and takes the oldest of ``ready``: the same rule as the SQLite store's
query, without reading the entries it cannot take. Each change of state keeps the two sets
right for its key (``settle``). Entries a release before these sets enqueued (or one still
running beside this one) are indexed by ``CLAIM`` and ``COUNTS``, a bounded number a call,
oldest first, so no script reads a large store whole. ``tags`` (hash: a tagged create's
tag -> its id). Two scripts use one key more, their own (see each). Times are Redis's own
clock (``TIME``), so drainers on several machines agree on when a lease ends.

A drainer of an earlier release keeps neither ``ready`` nor ``later``: stop the drainers of
an earlier release before starting those of this one (producers may run on meanwhile).
"""

from __future__ import annotations

from ._redis_lua_common import COMMON, INDEX_STEP, RECLAIM_FUNCTION, SUFFIXES

__all__ = ["CLAIM", "COUNTS", "DEAD", "ENQUEUE_CREATE", "ENQUEUE_UPDATE", "FINISH"]
__all__ += ["ENQUEUE_TAGGED", "PRUNE", "RECLAIM", "RENEW", "REQUEUE", "SUFFIXES", "TAGGED"]


# KEYS[13]: this enqueue's own record (``<prefix>:enqueue:<id>``): a retry of an enqueue whose
# answer was lost finds its first answer there instead of adding the create again.
ENQUEUE_CREATE = (
    COMMON
    + """
local key, debt_id, fields, limit = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local answered = redis.call('GET', KEYS[13])
if answered then return answered end
local function answer()
  local replay = false  -- the key has a create: a replay even when full
  if key ~= '' then
    for _, seq in ipairs(seqs_of(key)) do
      local e = get(seq)
      if e.op == 'create' then
        if not e.tag then return 'duplicate' end
        replay = true
      end
    end
  end
  if limit > 0 and backlog() >= limit then return replay and 'duplicate' or 'full' end
  return insert(key, 'create', debt_id, fields)
end
local result = answer()
if result ~= 'full' then redis.call('SET', KEYS[13], result, 'PX', ARGV[5]) end
return result
"""
)

# A create named by its tag (unique in the outbox), not bounded by the limit; ARGV: tag, key,
# debt id, fields, whether to look it up before sending.
ENQUEUE_TAGGED = (
    COMMON
    + """
if redis.call('HEXISTS', tags, ARGV[1]) == 1 then return 'duplicate' end
return insert(ARGV[2], 'create', ARGV[3], ARGV[4], ARGV[1], tonumber(ARGV[5]))
"""
)

TAGGED = (
    COMMON
    + """
local seqs = {}
for _, seq in ipairs(redis.call('HVALS', tags)) do table.insert(seqs, tonumber(seq)) end
table.sort(seqs)
local out = {}
for _, seq in ipairs(seqs) do table.insert(out, redis.call('HGET', entries, seq)) end
return out
"""
)

ENQUEUE_UPDATE = (
    COMMON
    + """
local key, fields, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local new = cjson.decode(fields)
local list = seqs_of(key)
local desired, last = {}, nil
for _, seq in ipairs(list) do
  last = get(seq)
  if last.state ~= 'dead' then
    for k, v in pairs(cjson.decode(last.fields)) do desired[k] = v end
  end
end
if #list > 0 then
  local same = true
  for k, v in pairs(new) do
    if desired[k] == nil or desired[k] ~= v then same = false end
  end
  if same then return 'unchanged' end
end
if last and last.state == 'pending' and last.check == 0 then
  local merged = cjson.decode(last.fields)
  for k, v in pairs(new) do merged[k] = v end
  last.fields = cjson.encode(merged)
  put(last)
  redis.call('HINCRBY', meta, 'merged', 1)
  return 'merged'
end
if limit > 0 and backlog() >= limit then return 'full' end
return insert(key, 'update', '', fields)
"""
)


# KEYS[13]: the last claim of each owner (hash: owner -> its id, when its lease ends, and
# what it handed out). ARGV: owner, n, lease, this claim's id, the id of the owner's last
# claim whose answer it received. The same id again is a retry of a claim whose answer was
# lost: it answers what that claim took (what is still the owner's). A recorded claim that
# is neither was taken but never heard of: its entries, never sent, go back as they were.
_CLAIMS = """
local claims, owner, claim_id, heard = KEYS[13], ARGV[1], ARGV[4], ARGV[5]
local function ours(seq)
  local raw = redis.call('HGET', entries, seq)
  if not raw then return nil end
  local e = cjson.decode(raw)
  if e.state == 'in_flight' and e.owner == owner then return e end
  return nil
end
local last = redis.call('HGET', claims, owner)
last = last and cjson.decode(last)
if last and last.id == claim_id then
  local again = {}
  for i, seq in ipairs(last.seqs) do
    if ours(seq) then table.insert(again, last.claimed[i]) end
  end
  return again
end
if last and last.id ~= heard then
  for _, seq in ipairs(last.seqs) do
    local e = ours(seq)
    if e then
      redis.call('ZREM', inflight, seq)
      e.state, e.owner, e.lease_until, e.attempts = 'pending', nil, nil, e.attempts - 1
      put(e)
      redis.call('ZADD', pending, e.seq, e.seq)
      settle(e)
    end
  end
end
local all = redis.call('HGETALL', claims)  -- one field per drainer: a few
for i = 1, #all, 2 do
  if cjson.decode(all[i + 1]).until_ < now then redis.call('HDEL', claims, all[i]) end
end
"""

CLAIM = (
    COMMON
    + RECLAIM_FUNCTION
    + _CLAIMS
    + f"""
local n, lease = tonumber(ARGV[2]), tonumber(ARGV[3])
reclaim()
index({INDEX_STEP})
for _, seq in ipairs(redis.call('ZRANGEBYSCORE', later, '-inf', now)) do
  redis.call('ZREM', later, seq)
  redis.call('ZADD', ready, seq, seq)
end
"""
    + """
local claimed, taken = {}, {}
for _, seq in ipairs(redis.call('ZRANGE', ready, 0, n - 1)) do
  local raw = redis.call('HGET', entries, seq)
  local e = raw and cjson.decode(raw)
  if not e or e.state ~= 'pending' then  -- left by a release that did not keep the set
    redis.call('ZREM', ready, seq)
  else
  local target = nil
  if e.key ~= nil then
    for _, other in ipairs(seqs_of(e.key)) do
      local o = get(other)
      if o.op == 'create' then target = o.followup_id or false end
    end
  end
  e.state, e.owner, e.lease_until = 'in_flight', owner, now + lease
  e.attempts = e.attempts + 1
  redis.call('ZREM', ready, seq)
  redis.call('ZREM', pending, seq)
  redis.call('ZADD', inflight, e.lease_until, seq)
  put(e)
  if e.op == 'update' then
    if target == nil then e.target = e.key elseif target then e.target = target end
  end
  table.insert(claimed, cjson.encode(e))
  table.insert(taken, e.seq)
  end
end
redis.call('HSET', claims, owner,
           cjson.encode({id = claim_id, until_ = now + lease, seqs = taken, claimed = claimed}))
return claimed
"""
)

RECLAIM = COMMON + RECLAIM_FUNCTION + "reclaim()\nreturn 1\n"

RENEW = (
    COMMON
    + """
local owner, lease = ARGV[1], tonumber(ARGV[2])
local renewed = {}
for i = 3, #ARGV do
  local raw = redis.call('HGET', entries, ARGV[i])
  if raw then
    local e = cjson.decode(raw)
    if e.state == 'in_flight' and e.owner == owner then
      e.lease_until = now + lease
      redis.call('ZADD', inflight, e.lease_until, e.seq)
      put(e)
      renewed[#renewed + 1] = tonumber(ARGV[i])
    end
  end
end
return renewed
"""
)

FINISH = (
    COMMON
    + """
local seq, owner, state, followup_id, err = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local delay, check, refund = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8] or '0')
local raw = redis.call('HGET', entries, seq)
if not raw then return 0 end
local e = cjson.decode(raw)
if e.state ~= 'in_flight' or e.owner ~= owner then return 0 end
redis.call('ZREM', inflight, seq)
e.state, e.owner, e.lease_until, e.check, e.finished = state, nil, nil, check, now
e.next_try = now + delay
if refund == 1 and e.attempts > 0 then e.attempts = e.attempts - 1 end
if followup_id ~= '' then e.followup_id = followup_id end
if err ~= '' then e.error = err else e.error = nil end
put(e)
local sets = {done = done, dead = dead, held = held, pending = pending}
redis.call('ZADD', sets[state], (state == 'done' or state == 'dead') and now or e.seq, seq)
if state == 'dead' and e.op == 'create' and e.key ~= nil then
  local why = cjson.encode({message = "the create of '" .. e.key .. "' is dead (entry " ..
                            e.seq .. ")"})
  for _, other in ipairs(seqs_of(e.key)) do
    local o = get(other)
    if o.seq > e.seq and o.state == 'pending' then
      o.state, o.error, o.finished = 'dead', why, now
      redis.call('ZREM', pending, o.seq)
      redis.call('ZADD', dead, now, o.seq)
      unplace(o.seq)
      put(o)
    end
  end
end
settle(e)
return 1
"""
)

COUNTS = (
    COMMON
    + f"""
index({INDEX_STEP})
"""
    + """
local oldest = -1
local first = redis.call('ZRANGE', pending, 0, 0)
if #first > 0 then oldest = get(first[1]).enqueued end
local merged = tonumber(redis.call('HGET', meta, 'merged') or '0')
local waiting = redis.pcall('ZINTERCARD', 2, pending, unkeyed)
if type(waiting) ~= 'number' then  -- before Redis 7: the same count, the long way
  waiting = 0
  for _, seq in ipairs(redis.call('ZRANGE', unkeyed, 0, -1)) do
    if redis.call('ZSCORE', pending, seq) then waiting = waiting + 1 end
  end
end
return {redis.call('ZCARD', pending), redis.call('ZCARD', inflight), redis.call('ZCARD', done),
        redis.call('ZCARD', dead), redis.call('ZCARD', held), merged, waiting,
        tostring(oldest), tostring(now)}
"""
)

DEAD = (
    COMMON
    + """
local seqs = {}
for _, set in ipairs({dead, held}) do
  for _, seq in ipairs(redis.call('ZRANGE', set, 0, -1)) do table.insert(seqs, tonumber(seq)) end
end
table.sort(seqs)
local out = {}
for _, seq in ipairs(seqs) do table.insert(out, redis.call('HGET', entries, seq)) end
return out
"""
)

REQUEUE = (
    COMMON
    + """
local with_held, nkeys = ARGV[1] == '1', tonumber(ARGV[2])
local chosen = {}
local any = #ARGV == 2
local sets = {dead}
if with_held then table.insert(sets, held) end
for _, set in ipairs(sets) do
  for _, seq in ipairs(redis.call('ZRANGE', set, 0, -1)) do
    local e = get(seq)
    local pick = any
    for i = 3, 2 + nkeys do if e.key == ARGV[i] then pick = true end end
    for i = 3 + nkeys, #ARGV do if tostring(e.seq) == ARGV[i] then pick = true end end
    if pick then
      redis.call('ZREM', set, seq)
      e.state, e.error, e.next_try, e.attempts, e.check = 'pending', nil, 0, 0, 0
      if e.op == 'update' and e.key ~= nil then
        -- Sent after the key's later writes, it must not undo them: it keeps only the
        -- fields none of them sets; with none left, there is nothing to send.
        local f = cjson.decode(e.fields)
        for _, other in ipairs(seqs_of(e.key)) do
          local o = get(other)
          if o.seq > e.seq and o.state ~= 'dead' then
            for k, _ in pairs(cjson.decode(o.fields)) do f[k] = nil end
          end
        end
        if next(f) == nil then e.state, e.finished = 'done', now else e.fields = cjson.encode(f) end
      end
      put(e)
      if e.state == 'done' then redis.call('ZADD', done, now, e.seq)
      else redis.call('ZADD', pending, e.seq, e.seq) end
      settle(e)
      table.insert(chosen, seq)
    end
  end
end
return #chosen
"""
)

# ARGV: the retention (s). Done and dead entries finished before it are deleted, a bounded
# number a call (the drainer prunes every minute). A dead entry of an earlier release is
# scored by its id, not by when it died: it is scored again by its finish time (or, with
# none, the retention starts now) instead of being taken for old.
PRUNE = (
    COMMON
    + f"""
local cutoff = now - tonumber(ARGV[1])
local step = {INDEX_STEP}
"""
    + """
local function forget(e, set)
  if e.key ~= nil then
    local kept = {}
    for _, other in ipairs(seqs_of(e.key)) do
      if tostring(other) ~= tostring(e.seq) then table.insert(kept, other) end
    end
    if #kept == 0 then redis.call('HDEL', keys, e.key)
    else redis.call('HSET', keys, e.key, cjson.encode(kept)) end
  end
  if e.tag then redis.call('HDEL', tags, e.tag) end
  redis.call('HDEL', entries, e.seq)
  redis.call('ZREM', set, e.seq)
  redis.call('ZREM', unkeyed, e.seq)
end
local pruned = 0
for _, set in ipairs({done, dead}) do
  for _, seq in ipairs(redis.call('ZRANGEBYSCORE', set, '-inf', '(' .. cutoff, 'LIMIT', 0, step)) do
    local e = get(seq)
    if e.finished and e.finished < cutoff then
      forget(e, set)
      pruned = pruned + 1
    else
      if not e.finished then
        e.finished = now
        put(e)
      end
      redis.call('ZADD', set, e.finished, seq)
    end
  end
end
return pruned
"""
)
