-- Deletes one owner's quota override (webhook or add-on) and its index entry, atomically.
-- KEYS[1] quota hash, KEYS[2] index zset
-- ARGV[1] owner id
-- Returns 1 when a row was deleted, 0 when there was none.
local n = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return n
