-- Imports one delivery record (a row of TMI's legacy `webhook_deliveries` table, or a record copied from a
-- standalone Hookline by `hookline-migrate --from-redis`) with its indexes, only if absent (a re-run writes
-- nothing), and hands pending work to the worker in the same step: enqueued when due, on the schedule when
-- its retry time is still ahead; an `in_progress` record (awaiting its receiver's callback) enters the
-- activity index cleanup's stale sweep reads; terminal records are only stored. Every key is of the record's
-- shard (one slot on a cluster), so the record and its one queue entry are created together or not at all.
-- The index keys are registered for cleanup's pruning (on a cluster its `SCAN` could not find them).
-- KEYS[1] delivery hash, KEYS[2] queue stream, KEYS[3] schedule zset, KEYS[4] the shard's delivery index
-- registry, KEYS[5] activity zset, KEYS[6..] zset indexes (score = created ms)
-- ARGV[1] TTL (s), ARGV[2] score, ARGV[3] id, ARGV[4] number of record field/value pairs (n),
-- ARGV[5 .. 4+2n] record pairs, then: placement ('queue' | 'schedule' | 'activity' | 'keep'), queue message
-- field, queue message, due time (ms, for 'schedule'), activity score (us, for 'activity')
-- Returns 1 when created, 0 when the id exists already.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local n = tonumber(ARGV[4])
local fields = {}
for i = 5, 4 + 2 * n do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('EXPIRE', KEYS[1], ARGV[1])
for i = 6, #KEYS do
  redis.call('ZADD', KEYS[i], ARGV[2], ARGV[3])
  redis.call('SADD', KEYS[4], KEYS[i])
end
local placement = ARGV[5 + 2 * n]
if placement == 'queue' then
  redis.call('XADD', KEYS[2], '*', ARGV[6 + 2 * n], ARGV[7 + 2 * n])
elseif placement == 'schedule' then
  redis.call('ZADD', KEYS[3], ARGV[8 + 2 * n], ARGV[7 + 2 * n])
elseif placement == 'activity' then
  redis.call('ZADD', KEYS[5], ARGV[9 + 2 * n], ARGV[3])
end
return 1
