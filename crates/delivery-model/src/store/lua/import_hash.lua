-- Stores one hash with its fields and a TTL only if the key is absent (a re-run writes nothing): copied
-- `Idempotency-Key` records (`hookline-migrate --from-redis`). One key, no hash tag.
-- KEYS[1] the hash
-- ARGV[1] TTL (ms), ARGV[2..] field/value pairs
-- Returns 1 when created, 0 when the key exists already.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local fields = {}
for i = 2, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
