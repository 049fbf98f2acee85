-- Moves due messages from the schedule to the queue. Atomic, so any number of workers may run it at once
-- and each message is promoted exactly once.
-- KEYS[1] scheduled zset, KEYS[2] queue stream
-- ARGV[1] now (ms), ARGV[2] limit, ARGV[3] queue message field
-- Returns the number promoted.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, m in ipairs(due) do
  redis.call('ZREM', KEYS[1], m)
  redis.call('XADD', KEYS[2], '*', ARGV[3], m)
end
return #due
