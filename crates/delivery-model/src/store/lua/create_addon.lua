-- Creates an add-on with its indexes, only while its subscription exists: checked in the same step, so a
-- subscription deleted concurrently can never leave an add-on behind that its delete cascade missed.
-- KEYS[1] add-on hash, KEYS[2] subscription hash, KEYS[3] all-add-ons zset,
-- KEYS[4] scope zset (the threat model's, or the unscoped one), KEYS[5] the subscription's add-on set
-- ARGV[1] id, ARGV[2] score (created ms), ARGV[3..] field/value pairs
-- Returns 'created', 'no_subscription' or 'exists'.
if redis.call('EXISTS', KEYS[2]) == 0 then return 'no_subscription' end
if redis.call('EXISTS', KEYS[1]) == 1 then return 'exists' end
local fields = {}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[2], ARGV[1])
redis.call('SADD', KEYS[5], ARGV[1])
return 'created'
