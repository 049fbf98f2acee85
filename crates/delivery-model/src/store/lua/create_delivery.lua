-- Creates one delivery record with its indexes and appends one stream entry (a queue message, or an
-- `addon.invoked` event), atomically.
-- The index keys are registered for cleanup's pruning (on a cluster its `SCAN` could not find them).
-- KEYS[1] delivery hash, KEYS[2] stream to append to, KEYS[3] the shard's delivery index registry,
-- KEYS[4..] zset indexes (score = created ms)
-- ARGV[1] TTL (s), ARGV[2] score, ARGV[3] id, ARGV[4] number of record field/value pairs (n),
-- ARGV[5 .. 4+2n] record pairs, then stream field/value pairs
-- Returns 1 when created, 0 when the id exists already.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local n = tonumber(ARGV[4])
local fields = {}
for i = 5, 4 + 2 * n do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('EXPIRE', KEYS[1], ARGV[1])
for i = 4, #KEYS do
  redis.call('ZADD', KEYS[i], ARGV[2], ARGV[3])
  redis.call('SADD', KEYS[3], KEYS[i])
end
local entry = {}
for i = 5 + 2 * n, #ARGV do entry[#entry + 1] = ARGV[i] end
if #entry > 0 then redis.call('XADD', KEYS[2], '*', unpack(entry)) end
return 1
