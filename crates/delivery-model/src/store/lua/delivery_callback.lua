-- A receiver's status callback, as a compare-and-set: terminal records never change, and whatever the worker
-- writes later keeps a status set here (its finish script sees a non-pending status: "superseded"). A
-- callback on a `pending` record is allowed: it may arrive before the worker has recorded the 2xx answer.
-- KEYS[1] delivery hash, KEYS[2] subscription hash (one node) or the shard's sub_outcomes stream (cluster:
-- the subscription is in another slot, and the fold resets its counter), KEYS[3] activity zset
-- (in_progress ids, score = µs), KEYS[4] the shard's queue stream (a terminal status moves the delivery's
-- FIFO lane on: lib/lane.lua)
-- ARGV[1] new status (in_progress|delivered|failed), ARGV[2] percent ('' = unchanged),
-- ARGV[3] '1' when a message is given, ARGV[4] message, ARGV[5] now (µs), ARGV[6] active TTL (s),
-- ARGV[7] terminal TTL (s), ARGV[8] status-zset prefix, ARGV[9] delivery id,
-- ARGV[10] the subscription id on a cluster ('' on one node), ARGV[11..19] lane arguments
-- Returns {'missing'} | {'terminal', status} | {'updated', status, percent}
local h = redis.call('HMGET', KEYS[1], 'status', 'created_at', 'lane', 'lane_block')
local cur = h[1]
if not cur then return {'missing'} end
if cur == 'delivered' or cur == 'failed' then return {'terminal', cur} end
local new, now, id = ARGV[1], ARGV[5], ARGV[9]
if new ~= cur then
  local score = math.floor(tonumber(h[2] or '0') / 1000)
  redis.call('ZREM', ARGV[8] .. cur, id)
  redis.call('ZADD', ARGV[8] .. new, score, id)
end
redis.call('HSET', KEYS[1], 'status', new, 'last_activity_at', now)
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'status_percent', ARGV[2]) end
if ARGV[3] == '1' then redis.call('HSET', KEYS[1], 'status_message', ARGV[4]) end
if new == 'in_progress' then
  redis.call('ZADD', KEYS[3], now, id)
  redis.call('EXPIRE', KEYS[1], ARGV[6])
else
  redis.call('ZREM', KEYS[3], id)
  redis.call('EXPIRE', KEYS[1], ARGV[7])
  if h[3] and lane_moves_on(new, h[4]) then lane_advance(lane_ctx(KEYS[4], 11), h[3], id) end
  if new == 'delivered' then
    redis.call('HSET', KEYS[1], 'delivered_at', now, 'status_percent', '100')
    if ARGV[10] ~= '' then
      redis.call('XADD', KEYS[2], '*', 'sub', ARGV[10], 'kind', 'callback_delivered', 't', now)
    -- Never recreate a deleted subscription as a stub hash.
    elseif redis.call('EXISTS', KEYS[2]) == 1 then
      redis.call('HSET', KEYS[2], 'timeout_count', '0')
    end
  end
end
return {'updated', new, redis.call('HGET', KEYS[1], 'status_percent') or '0'}
