-- Compare-and-set of a subscription's status, keeping the status sets and the active-only event sets true.
-- KEYS[1] subscription hash, KEYS[2] match generation (bumped when the event sets change)
-- ARGV[1] expected status, ARGV[2] new status, ARGV[3] now (us), ARGV[4] status-set prefix,
-- ARGV[5] event-set prefix, ARGV[6] id, ARGV[7] '1' to count one more challenge sent
-- Returns 1 when changed, 0 when the current status was not the expected one (or the subscription is gone).
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur or cur ~= ARGV[1] then return 0 end
local id = ARGV[6]
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'modified_at', ARGV[3])
if ARGV[7] == '1' then redis.call('HINCRBY', KEYS[1], 'challenges_sent', 1) end
redis.call('SREM', ARGV[4] .. cur, id)
redis.call('SADD', ARGV[4] .. ARGV[2], id)
-- Entering (or re-asserting) active adds the id to its event sets; leaving active removes it.
if ARGV[2] == 'active' or cur == 'active' then
  redis.call('INCR', KEYS[2])
  local ok, events = pcall(cjson.decode, redis.call('HGET', KEYS[1], 'events') or '[]')
  if ok and type(events) == 'table' then
    for _, e in ipairs(events) do
      if ARGV[2] == 'active' then redis.call('SADD', ARGV[5] .. e, id) else redis.call('SREM', ARGV[5] .. e, id) end
    end
  end
end
return 1
