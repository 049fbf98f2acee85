-- Imports one subscription from TMI's PostgreSQL table, keeping its id, status and counters, atomically and
-- only if absent (a re-run writes nothing). An `active` one enters the per-event match sets at once; a
-- `pending_verification` one gets its challenge queued, as on creation.
-- KEYS[1] subscription hash, KEYS[2] all-subscriptions zset, KEYS[3] owner set, KEYS[4] status set,
-- KEYS[5] queue stream, KEYS[6] match generation (bumped when the event sets change), KEYS[7] threat-model
-- zset (only when ARGV[4] == '1')
-- ARGV[1] id, ARGV[2] score (created ms), ARGV[3] queue message field, ARGV[4] has threat model ('1'/'0'),
-- ARGV[5] challenge message ('' to enqueue none), ARGV[6] event-set prefix ('' unless active),
-- ARGV[7] number of event types (n), ARGV[8 .. 7+n] event types, then field/value pairs
-- Returns 1 when created, 0 when the id exists already.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local n = tonumber(ARGV[7])
local fields = {}
for i = 8 + n, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[1])
if ARGV[4] == '1' then redis.call('ZADD', KEYS[7], ARGV[2], ARGV[1]) end
if ARGV[6] ~= '' then
  redis.call('INCR', KEYS[6])
  for i = 8, 7 + n do redis.call('SADD', ARGV[6] .. ARGV[i], ARGV[1]) end
end
if ARGV[5] ~= '' then redis.call('XADD', KEYS[5], '*', ARGV[3], ARGV[5]) end
return 1
