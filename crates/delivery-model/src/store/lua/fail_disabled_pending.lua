-- Endpoint health (issue #18): after a subscription was disabled, fails its pending deliveries of one shard
-- without a further attempt, one page of its delivery index per call. A delivery whose lease is live (an
-- attempt in flight) is left to its attempt: its outcome is written as usual, and a retry it schedules is
-- failed without an attempt when it comes due (the worker abandons deliveries of an inactive subscription).
-- A failed delivery's queue entry or schedule member is dropped by the worker when read (it is no longer
-- pending). A FIFO lane of a failed delivery is dropped (every delivery in it is of this subscription and
-- pending, so failed here too, or the head whose attempt is in flight). Slot-safe: every key is of the shard
-- (index, records, status zsets, lanes).
-- KEYS[1] the subscription's delivery index of the shard
-- ARGV[1] now (us), ARGV[2] delivery-key prefix, ARGV[3] status-zset prefix, ARGV[4] terminal TTL (s),
-- ARGV[5] last error, ARGV[6] page offset, ARGV[7] page size, ARGV[8] lane prefix, ARGV[9] lanes hash, ARGV[10] held lanes zset
-- Returns {ids read, deliveries failed}.
local now = tonumber(ARGV[1])
local ids = redis.call('ZRANGE', KEYS[1], ARGV[6], tonumber(ARGV[6]) + tonumber(ARGV[7]) - 1, 'WITHSCORES')
local failed = 0
for i = 1, #ids, 2 do
  local id, created_ms = ids[i], ids[i + 1]
  local record = ARGV[2] .. id
  local h = redis.call('HMGET', record, 'status', 'lease', 'lease_until', 'lane')
  local leased = h[2] and h[2] ~= '' and tonumber(h[3] or '0') > now
  if h[1] == 'pending' and not leased then
    redis.call('HSET', record, 'status', 'failed', 'last_error', ARGV[5], 'last_activity_at', ARGV[1])
    redis.call('HDEL', record, 'lease', 'lease_until', 'next_retry_at')
    redis.call('ZREM', ARGV[3] .. 'pending', id)
    redis.call('ZADD', ARGV[3] .. 'failed', created_ms, id)
    redis.call('EXPIRE', record, ARGV[4])
    failed = failed + 1
    if h[4] then
      redis.call('DEL', ARGV[8] .. h[4])
      redis.call('HDEL', ARGV[9], h[4])
      redis.call('ZREM', ARGV[10], h[4])
    end
  end
end
return {#ids / 2, failed}
