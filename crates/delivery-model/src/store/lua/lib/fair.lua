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

local function fair_push(fair, sub, msg)
  redis.call('XADD', fair.queue, '*', fair.field, msg)
  local q = fair.queued .. sub
  redis.call('ZADD', q, fair.now_ms, msg)
  redis.call('EXPIRE', q, fair.ttl)
end

-- Queues `msg` of `sub`, or parks it: behind the parked ones, or before them when `first` (a retry coming
-- due keeps its place ahead of fresh work). Returns true when queued.
local function fair_enqueue(fair, sub, msg, first)
  if fair.share <= 0 or not sub or sub == '' then
    redis.call('XADD', fair.queue, '*', fair.field, msg)
    return true
  end
  local parked = fair.parked .. sub
  if redis.call('ZCARD', fair.queued .. sub) < fair.share and redis.call('LLEN', parked) == 0 then
    fair_push(fair, sub, msg)
    return true
  end
  if first then redis.call('LPUSH', parked, msg) else redis.call('RPUSH', parked, msg) end
  redis.call('EXPIRE', parked, fair.ttl)
  redis.call('SADD', fair.parking, sub)
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
    fair_fill(fair, sub, fair.share)
  end
end
