"""The Lua every outbox script starts with: the keys, Redis's clock, and the functions that
keep the sets of entries right (see ``_redis_lua`` for what each key holds)."""

from __future__ import annotations

__all__ = ["COMMON", "INDEX_STEP", "RECLAIM_FUNCTION", "SUFFIXES"]

SUFFIXES = (
    *("entries", "pending", "inflight", "done", "dead", "held", "keys", "meta", "unkeyed"),
    *("ready", "later", "tags"),
)
INDEX_STEP = 1000  # entries of an earlier release indexed per call, at most

COMMON = """
local entries, pending, inflight, done, dead, held, keys, meta, unkeyed, ready, later, tags =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10],
  KEYS[11], KEYS[12]
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function get(seq) return cjson.decode(redis.call('HGET', entries, seq)) end
local function put(e) redis.call('HSET', entries, e.seq, cjson.encode(e)) end
local function seqs_of(key)
  local list = redis.call('HGET', keys, key)
  if list then return cjson.decode(list) end
  return {}
end
local function backlog() return redis.call('ZCARD', pending) + redis.call('ZCARD', inflight) end
local function unfinished(e)
  return e.state == 'pending' or e.state == 'in_flight' or e.state == 'held'
end
local function place(e)
  if e.next_try <= now then
    redis.call('ZREM', later, e.seq)
    redis.call('ZADD', ready, e.seq, e.seq)
  else
    redis.call('ZREM', ready, e.seq)
    redis.call('ZADD', later, e.next_try, e.seq)
  end
end
local function unplace(seq)
  redis.call('ZREM', ready, seq)
  redis.call('ZREM', later, seq)
end
local function refresh(key)
  local first = true
  for _, seq in ipairs(seqs_of(key)) do
    local o = get(seq)
    if unfinished(o) then
      if first and o.state == 'pending' then place(o)
      elseif o.state == 'pending' then unplace(o.seq) end
      first = false
    end
  end
end
local function settle(e)
  if e.key ~= nil then refresh(e.key)
  elseif e.state == 'pending' then place(e)
  else unplace(e.seq) end
end
local function index(step)
  local top = tonumber(redis.call('HGET', meta, 'seq') or '0')
  local upto = tonumber(redis.call('HGET', meta, 'indexed') or '0')
  if upto >= top then return end
  local seqs = redis.call('ZRANGEBYSCORE', pending, '(' .. upto, '+inf', 'LIMIT', 0, step)
  for _, seq in ipairs(seqs) do
    local e = get(seq)
    if e.key == nil and e.op == 'create' then redis.call('ZADD', unkeyed, e.seq, e.seq) end
    settle(e)
  end
  if #seqs < step then upto = top else upto = tonumber(seqs[#seqs]) end
  redis.call('HSET', meta, 'indexed', upto)
end
local function insert(key, op, debt_id, fields, tag, check)
  local seq = redis.call('HINCRBY', meta, 'seq', 1)
  local e = {seq = seq, op = op, state = 'pending', fields = fields, enqueued = now,
             attempts = 0, next_try = 0, check = check or 0}
  if tag then
    e.tag = tag
    redis.call('HSET', tags, tag, seq)
  end
  if key ~= '' then
    e.key = key
    local list = seqs_of(key)
    table.insert(list, seq)
    redis.call('HSET', keys, key, cjson.encode(list))
  end
  if debt_id ~= '' then e.debt_id = debt_id end
  if key == '' and op == 'create' then redis.call('ZADD', unkeyed, seq, seq) end
  put(e)
  redis.call('ZADD', pending, seq, seq)
  settle(e)
  if tonumber(redis.call('HGET', meta, 'indexed') or '0') == seq - 1 then
    redis.call('HSET', meta, 'indexed', seq)
  end
  return 'added'
end
"""

# ``reclaim()``: entries in flight past their lease go back, to be looked up first (a create
# without a key, which cannot be, is held).
RECLAIM_FUNCTION = """
local function reclaim()
  for _, seq in ipairs(redis.call('ZRANGEBYSCORE', inflight, '-inf', now)) do
    local e = get(seq)
    redis.call('ZREM', inflight, seq)
    e.owner, e.lease_until, e.check = nil, nil, 1
    if e.op == 'create' and e.key == nil then
      e.state = 'held'
      e.error = cjson.encode({message = 'sent by a drainer that stopped; no call_id to look it up'})
      redis.call('ZADD', held, seq, seq)
    else
      e.state = 'pending'
      redis.call('ZADD', pending, seq, seq)
    end
    put(e)
    settle(e)
  end
end
"""
