-- Fails `in_progress` deliveries whose last activity is at or before the cutoff: the oldest of the activity
-- index, up to a limit. Each record is checked here, inside the script, so a status callback that lands
-- before it wins (its fresh last_activity_at keeps the record alive) and one that lands after finds a
-- terminal record.
-- A failed delivery moves its FIFO lane on, unless the lane blocks on failure (lib/lane.lua).
-- KEYS[1] activity zset (score = last_activity_at, us), KEYS[2] the shard's queue stream, KEYS[3] (cluster)
-- the shard's sub_outcomes stream
-- ARGV[1] cutoff (us), ARGV[2] limit, ARGV[3] now (us), ARGV[4] terminal TTL (s), ARGV[5] delivery-key prefix,
-- ARGV[6] status-zset prefix, ARGV[7] subscription-key prefix ('' on a cluster: the subscriptions are in
-- another slot, and the count goes through KEYS[3] and the fold), ARGV[8] last_error to write,
-- ARGV[9..17] lane arguments
-- Returns {examined, refreshed, dropped, failed id, ...}: refreshed = still in progress with newer activity
-- than the index knew (re-scored), dropped = no longer in progress or expired (left the index).
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local cutoff = tonumber(ARGV[1])
local refreshed, dropped, failed = 0, 0, {}
local lane = lane_ctx(KEYS[2], 9)
for _, id in ipairs(ids) do
  local key = ARGV[5] .. id
  local h = redis.call('HMGET', key, 'status', 'last_activity_at', 'subscription_id', 'created_at', 'lane',
    'lane_block')
  if h[1] ~= 'in_progress' then
    redis.call('ZREM', KEYS[1], id)
    dropped = dropped + 1
  elseif tonumber(h[2] or '0') > cutoff then
    redis.call('ZADD', KEYS[1], h[2], id)
    refreshed = refreshed + 1
  else
    redis.call('HSET', key, 'status', 'failed', 'last_error', ARGV[8], 'last_activity_at', ARGV[3])
    redis.call('HDEL', key, 'next_retry_at')
    local score = math.floor(tonumber(h[4] or '0') / 1000)
    redis.call('ZREM', ARGV[6] .. 'in_progress', id)
    redis.call('ZADD', ARGV[6] .. 'failed', score, id)
    redis.call('EXPIRE', key, ARGV[4])
    redis.call('ZREM', KEYS[1], id)
    if h[5] and lane_moves_on('failed', h[6]) then lane_advance(lane, h[5], id) end
    -- TMI counts stale addon deliveries against the subscription; Hookline counts every stale delivery.
    if h[3] and ARGV[7] == '' then
      redis.call('XADD', KEYS[3], '*', 'sub', h[3], 'kind', 'stale', 't', ARGV[3])
    elseif h[3] and redis.call('EXISTS', ARGV[7] .. h[3]) == 1 then
      redis.call('HINCRBY', ARGV[7] .. h[3], 'publication_failures', 1)
    end
    failed[#failed + 1] = id
  end
end
local out = {#ids, refreshed, dropped}
for _, id in ipairs(failed) do out[#out + 1] = id end
return out
