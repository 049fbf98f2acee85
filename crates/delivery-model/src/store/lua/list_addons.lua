-- One page of the add-ons offered for a threat model: those scoped to it plus the unscoped ones, newest
-- first (TMI's filter), from the union of the two indexes.
-- KEYS[1] temporary zset (deleted here; a short TTL covers a failure midway), KEYS[2] the threat model's
-- zset, KEYS[3] the unscoped zset
-- ARGV[1] offset, ARGV[2] limit, ARGV[3] temporary key TTL (s)
-- Returns {total, id, id, …}.
redis.call('ZUNIONSTORE', KEYS[1], 2, KEYS[2], KEYS[3], 'AGGREGATE', 'MIN')
redis.call('EXPIRE', KEYS[1], ARGV[3])
local total = redis.call('ZCARD', KEYS[1])
local first = tonumber(ARGV[1])
local ids = redis.call('ZREVRANGE', KEYS[1], first, first + tonumber(ARGV[2]) - 1)
redis.call('DEL', KEYS[1])
local out = {total}
for _, id in ipairs(ids) do out[#out + 1] = id end
return out
