-- Stores one owner's quota override (webhook or add-on) and indexes it, atomically. An upsert: the row is
-- replaced as given (fields a previous version had but this one lacks do not survive), the index score is
-- the row's created_at.
-- KEYS[1] quota hash, KEYS[2] index zset
-- ARGV[1] owner id, ARGV[2] score (created ms), ARGV[3..] field/value pairs
-- Returns 1 when the row is new, 0 when it replaced one.
local existed = redis.call('DEL', KEYS[1])
local fields = {}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
if existed == 1 then return 0 end
return 1
