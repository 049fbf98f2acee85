-- Per-subscription limits (issue #18): makes a delivery deferred for want of an in-flight slot due now,
-- if it is on the schedule (pending, waiting there). A delivery that is elsewhere (queued, in an attempt,
-- done, expired) is left alone and the caller wakes the next waiter instead. Slot-safe: the record and the
-- schedule are of the delivery's shard.
-- KEYS[1] delivery hash, KEYS[2] schedule ZSET
-- ARGV[1] now (us), ARGV[2] its schedule member
-- Returns 1 when woken, 0 otherwise.
if not redis.call('ZSCORE', KEYS[2], ARGV[2]) then return 0 end
if redis.call('HGET', KEYS[1], 'status') ~= 'pending' then return 0 end
redis.call('HSET', KEYS[1], 'next_retry_at', ARGV[1])
redis.call('ZADD', KEYS[2], 'XX', math.floor(tonumber(ARGV[1]) / 1000), ARGV[2])
return 1
