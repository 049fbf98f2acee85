-- Routes a pre-created delivery (an addon invocation) to the worker and acknowledges its input entry,
-- atomically, so a reprocessed entry can never enqueue the delivery twice.
-- KEYS[1] delivery hash, KEYS[2] queue stream, KEYS[3] input stream
-- ARGV[1] input group, ARGV[2] entry id, ARGV[3] queue message field, ARGV[4] queue message
-- Returns 1 when enqueued, 0 when the record is gone or no longer pending (nothing to do).
local status = redis.call('HGET', KEYS[1], 'status')
local routed = 0
if status == 'pending' then
  redis.call('XADD', KEYS[2], '*', ARGV[3], ARGV[4])
  routed = 1
end
redis.call('XACK', KEYS[3], ARGV[1], ARGV[2])
return routed
