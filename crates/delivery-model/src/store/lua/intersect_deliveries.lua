-- One shard's intersection of several delivery indexes, kept for a merged admin list on a cluster
-- (docs/cluster.md §4.5): the store counts, searches and reads it across the shards, then deletes it. All
-- indexes share the created-ms score, so AGGREGATE MIN keeps it (the default SUM would add them up).
-- KEYS[1] temporary zset, KEYS[2..] the index zsets (at least two)
-- ARGV[1] temporary key TTL (s), in case the store never gets to delete it
-- Returns the intersection's size.
local args = {'ZINTERSTORE', KEYS[1], #KEYS - 1}
for i = 2, #KEYS do args[#args + 1] = KEYS[i] end
args[#args + 1] = 'AGGREGATE'
args[#args + 1] = 'MIN'
local n = redis.call(unpack(args))
if n > 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n
