-- An administrator's retry of a failed delivery, as a compare-and-set: only a `failed` record of an active
-- subscription goes back to `pending`, with a fresh retry budget (attempts 0), and is queued at once. Its
-- last error stays until the next attempt overwrites it. Add-on invocations are refused (re-invoke the add-on
-- instead: that re-checks the invoker's quota and issues a fresh delegation token).
-- A delivery of a FIFO lane is queued at once if it is the one its lane has out (a failed delivery that blocks
-- its lane); otherwise it rejoins its lane in its input position and goes when its turn comes
-- (lib/lane.lua).
-- On one node the script reads the subscription's status itself (a key it derives). On a cluster the
-- subscription is in another slot: the caller reads its status just before and passes it (a deactivation in
-- between yields a queued delivery the worker fails at once, as for one queued just before a deactivation).
-- KEYS[1] delivery hash, KEYS[2] queue stream
-- ARGV[1] now (us), ARGV[2] active TTL (s), ARGV[3] status-zset prefix, ARGV[4] delivery id,
-- ARGV[5] subscription-key prefix ('' on a cluster), ARGV[6] queue message field, ARGV[7] message,
-- ARGV[8] on a cluster: the subscription's status as read by the caller ('' = gone),
-- ARGV[9] '1' to allow add-on invocations, ARGV[10..18] lane arguments
-- Returns {'missing'} | {'status', current} | {'addon'} | {'subscription', status ('' = gone)}
--   | {'queued', {record field, value, …}} (the record as it is now)
local h = redis.call('HMGET', KEYS[1], 'status', 'created_at', 'addon_id', 'subscription_id', 'lane',
  'lane_score')
if not h[1] then return {'missing'} end
if h[1] ~= 'failed' then return {'status', h[1]} end
if h[3] and h[3] ~= '' and ARGV[9] ~= '1' then return {'addon'} end
local sub_status = ARGV[8]
if ARGV[5] ~= '' then sub_status = redis.call('HGET', ARGV[5] .. (h[4] or ''), 'status') end
if sub_status ~= 'active' then return {'subscription', sub_status or ''} end
local id = ARGV[4]
redis.call('ZREM', ARGV[3] .. 'failed', id)
redis.call('ZADD', ARGV[3] .. 'pending', math.floor(tonumber(h[2] or '0') / 1000), id)
redis.call('HSET', KEYS[1], 'status', 'pending', 'attempts', '0', 'last_activity_at', ARGV[1])
redis.call('HDEL', KEYS[1], 'next_retry_at', 'lease', 'lease_until', 'delivered_at')
redis.call('EXPIRE', KEYS[1], ARGV[2])
local lane = lane_ctx(KEYS[2], 10)
if not h[5] or redis.call('HGET', lane.lanes, h[5]) == id then
  redis.call('XADD', KEYS[2], '*', ARGV[6], ARGV[7])
else
  lane_push(lane, h[5], id, h[6] or '0', lane_low(lane))
end
return {'queued', redis.call('HGETALL', KEYS[1])}
