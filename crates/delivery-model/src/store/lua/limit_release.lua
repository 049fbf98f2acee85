-- Per-subscription limits (issue #18): an attempt that held an in-flight slot is over (its outcome is
-- written, or the write failed and the entry stays pending). Frees the slot and hands back up to ARGV[2]
-- of the oldest waiters for the caller to wake (each woken one asks for a slot again). Slot-safe: both
-- keys carry the subscription's own tag in cluster mode.
-- KEYS[1] in-flight ZSET, KEYS[2] waiting ZSET
-- ARGV[1] delivery id, ARGV[2] waiters to hand back
-- Returns the waiters' delivery ids, oldest first.
redis.call('ZREM', KEYS[1], ARGV[1])
local popped = redis.call('ZPOPMIN', KEYS[2], ARGV[2])
local ids = {}
for i = 1, #popped, 2 do ids[#ids + 1] = popped[i] end
return ids
