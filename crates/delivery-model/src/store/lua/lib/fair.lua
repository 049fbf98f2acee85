-- Fair sharing (issue #18, docs/flow.md §1): a subscription has at most `share` delivery messages waiting
-- to be read in a shard's queue; the rest wait in its parked list, oldest first, and take the places its
-- messages leave. A healthy delivery therefore waits behind at most `share` entries of each busy
-- subscription, not behind a whole backlog. Shared by the scripts that put delivery messages on a queue
-- (fan-out, promotion from the schedule) and the one that takes them off (the lease script, for an entry
-- it leases or acknowledges). A pending delivery's message is either on the queue (waiting or read) or
-- parked, moved by one atomic script.
-- `fair` = {share (0 = off: queue everything), queued (prefix of the per-subscription ZSETs of counted
-- messages), parked (prefix of the per-subscription parked LISTs), parking (SET of subscriptions with
-- parked messages), queue (the queue stream), field (its message field), now_ms, ttl (s, of the
-- per-subscription keys)}; every key is of the queue's shard.
-- The share adapts (fair_cap): a subscription gets a quarter of the share while another subscription that
-- is not backlogged itself (nothing parked) has had work fanned out in the shard within the last second, and
-- the whole share otherwise. A lone busy subscription thus reads in large batches (its throughput and CPU
-- per delivery are those of no sharing), and so do busy subscriptions that are all backlogged (none has a
-- light neighbour to protect: ten quarters would starve the worker's reads at saturation), while beside a
-- light subscription a backlog takes a smaller part of each read and of Redis (docs/flow.md §1 has the
-- figures). The shard's `<parking>:recent` ZSET (subscription -> last fan-out, ms) says who had work, its
-- parking set who is backlogged.

local FAIR_RECENT_MS = 1000

-- The shard's `recent` ZSET (Keyspace::fair_recent derives the same name).
local function fair_recent(fair) return fair.parking .. ':recent' end

-- The share beside other subscriptions' work: a quarter of the whole one, at least 1.
local function fair_small(fair) return math.max(1, math.floor(fair.share / 4)) end

-- Notes that `sub` had fresh work fanned out now (once per script call).
local function fair_mark(fair, sub)
  fair.marked = fair.marked or {}
  if fair.marked[sub] then return end
  fair.marked[sub] = true
  local recent = fair_recent(fair)
  redis.call('ZADD', recent, fair.now_ms, sub)
  redis.call('PEXPIRE', recent, FAIR_RECENT_MS * 10)
end

-- The share `sub` gets now: a quarter of it (at least 1) while another subscription with nothing parked had
-- work fanned out in the shard within FAIR_RECENT_MS, the whole one otherwise. Read once per subscription
-- and script call.
local function fair_cap(fair, sub)
  fair.caps = fair.caps or {}
  local cap = fair.caps[sub]
  if cap then return cap end
  local recent = fair_recent(fair)
  redis.call('ZREMRANGEBYSCORE', recent, '-inf', '(' .. (tonumber(fair.now_ms) - FAIR_RECENT_MS))
  -- Light neighbours: recent subscriptions that are not parked (ZINTERCARD reads the parking SET as a
  -- ZSET), `sub` itself left out.
  local others = redis.call('ZCARD', recent) - redis.call('ZINTERCARD', 2, recent, fair.parking)
  if redis.call('ZSCORE', recent, sub) and redis.call('SISMEMBER', fair.parking, sub) == 0 then
    others = others - 1
  end
  cap = fair.share
  if others > 0 then cap = fair_small(fair) end
  fair.caps[sub] = cap
  return cap
end

-- Whether `what` ('pushed', 'parked_now': names beside the context's own fields) already happened to `sub`
-- in this script call; notes that it has. The TTLs and the parking set need one write per call, not one per
-- message.
local function fair_seen(fair, what, sub)
  fair[what] = fair[what] or {}
  if fair[what][sub] then return true end
  fair[what][sub] = true
  return false
end

local function fair_push(fair, sub, msg)
  redis.call('XADD', fair.queue, '*', fair.field, msg)
  local q = fair.queued .. sub
  redis.call('ZADD', q, fair.now_ms, msg)
  if not fair_seen(fair, 'pushed', sub) then redis.call('EXPIRE', q, fair.ttl) end
end

-- Queues `msg` of `sub`, or parks it: behind the parked ones, or before them when `first` (a retry coming
-- due keeps its place ahead of fresh work). Returns true when queued.
local function fair_enqueue(fair, sub, msg, first)
  if fair.share <= 0 or not sub or sub == '' then
    redis.call('XADD', fair.queue, '*', fair.field, msg)
    return true
  end
  if not first then fair_mark(fair, sub) end
  local parked = fair.parked .. sub
  -- Parked earlier in this call: its list is not empty, so this one parks behind (fresh work only; a
  -- retry coming due goes first and takes the checks below).
  if not first and fair.parked_now and fair.parked_now[sub] then
    redis.call('RPUSH', parked, msg)
    return false
  end
  local queued = redis.call('ZCARD', fair.queued .. sub)
  -- The cap is looked up only past the smallest share it can be: a quiet subscription pays nothing for it.
  if (queued < fair_small(fair) or queued < fair_cap(fair, sub))
    and redis.call('LLEN', parked) == 0 then
    fair_push(fair, sub, msg)
    return true
  end
  if first then redis.call('LPUSH', parked, msg) else redis.call('RPUSH', parked, msg) end
  if not fair_seen(fair, 'parked_now', sub) then
    redis.call('EXPIRE', parked, fair.ttl)
    redis.call('SADD', fair.parking, sub)
  end
  return false
end

-- Moves `sub`'s oldest parked messages to the queue until it has `cap` counted there. Returns how many moved.
local function fair_fill(fair, sub, cap)
  local parked, moved = fair.parked .. sub, 0
  local room = cap - redis.call('ZCARD', fair.queued .. sub)
  while room > 0 do
    local m = redis.call('LPOP', parked)
    if not m then break end
    fair_push(fair, sub, m)
    room, moved = room - 1, moved + 1
  end
  if redis.call('EXISTS', parked) == 0 then redis.call('SREM', fair.parking, sub) end
  return moved
end

-- `msg` of `sub` was read (leased or acknowledged): its place goes to the oldest parked message. A message
-- that was never counted (a challenge, an administrator's retry, a share of 0) changes nothing.
local function fair_release(fair, sub, msg)
  if fair.share <= 0 or not sub or sub == '' then return end
  if redis.call('ZREM', fair.queued .. sub, msg) == 1 and redis.call('EXISTS', fair.parked .. sub) == 1 then
    fair_fill(fair, sub, fair_cap(fair, sub))
  end
end
