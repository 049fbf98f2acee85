-- Records a failed verification challenge: retry later, or give up after the last one.
-- KEYS[1] subscription hash, KEYS[2] scheduled zset
-- ARGV[1] max challenges, ARGV[2] retry due (ms), ARGV[3] challenge message, ARGV[4] now (us),
-- ARGV[5] status-set prefix, ARGV[6] id
-- Returns 'gone' (no longer pending verification), 'retry' or 'exhausted' (now pending_delete).
local cur = redis.call('HGET', KEYS[1], 'status')
if cur ~= 'pending_verification' then return 'gone' end
local sent = redis.call('HINCRBY', KEYS[1], 'challenges_sent', 1)
redis.call('HSET', KEYS[1], 'modified_at', ARGV[4])
if sent >= tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'status', 'pending_delete')
  redis.call('SREM', ARGV[5] .. 'pending_verification', ARGV[6])
  redis.call('SADD', ARGV[5] .. 'pending_delete', ARGV[6])
  return 'exhausted'
end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
return 'retry'
