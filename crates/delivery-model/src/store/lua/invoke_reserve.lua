-- Cluster mode, step 1 of an add-on invocation (docs/cluster.md §4.4): the reservation, on the control
-- slot. The add-on exists and is not being deleted; the active-invocation limit; the hourly window; the
-- duplicate key; then the hourly entry and the new delivery in the invoker's active set. The records of the
-- active set are in the shards, so the caller read them just before and passes the ids that have finished;
-- they leave the set here before it is counted. A delivery finishing in between is still counted: the race
-- errs toward refusing, never toward passing a limit twice. Atomic, so two concurrent invocations cannot
-- both pass. Step 2 (the record and its queue entry) and step 3 (the `addon.invoked` entry) follow.
-- KEYS[1] add-on hash, KEYS[2] the user's hourly zset, KEYS[3] the user's dedup key for this add-on,
-- KEYS[4] the user's active-invocation zset
-- ARGV[1] now (unix s), ARGV[2] hourly member ("<unix>:<unixnano>"), ARGV[3] active limit,
-- ARGV[4] hourly limit, ARGV[5] dedup window (s), ARGV[6] hourly window (s), ARGV[7] hourly zset TTL (s),
-- ARGV[8] active zset TTL (s), ARGV[9] score (created ms), ARGV[10] delivery id, ARGV[11] now (ms),
-- then the finished delivery ids to prune
-- Returns {'reserved'} | {'gone'} (no such add-on, or being deleted) | {'active', current}
--       | {'hourly', current, oldest entry's score (unix s)} | {'duplicate'}
local h = redis.call('HMGET', KEYS[1], 'id', 'deleting_until')
if not h[1] then return {'gone'} end
if tonumber(h[2] or '0') > tonumber(ARGV[11]) then return {'gone'} end
for i = 12, #ARGV do redis.call('ZREM', KEYS[4], ARGV[i]) end
local active = redis.call('ZCARD', KEYS[4])
if active >= tonumber(ARGV[3]) then return {'active', tostring(active)} end

-- The hourly window and the duplicate key (lib/invoke_window.lua), recording the hourly entry on a pass.
local refused = invoke_window_of(KEYS, ARGV)
if refused then return refused end
redis.call('ZADD', KEYS[4], ARGV[9], ARGV[10])
redis.call('EXPIRE', KEYS[4], ARGV[8])
return {'reserved'}
