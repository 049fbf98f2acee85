-- Starts a subscription's redrive job (issue #18), one per subscription: refused while one runs, or while
-- the subscription is not active. A finished job's hash is replaced.
-- KEYS[1] job hash, KEYS[2] set of running jobs, KEYS[3] subscription hash (all in the control slot)
-- ARGV[1] subscription id, ARGV[2..] field/value pairs of the new job
-- Returns {'started'} | {'busy', {job field, value, …}} | {'subscription', status ('' = gone)}
local status = redis.call('HGET', KEYS[3], 'status')
if status ~= 'active' then return {'subscription', status or ''} end
if redis.call('HGET', KEYS[1], 'state') == 'running' then
  return {'busy', redis.call('HGETALL', KEYS[1])}
end
redis.call('DEL', KEYS[1])
local fields = {}
for i = 2, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('SADD', KEYS[2], ARGV[1])
return {'started'}
