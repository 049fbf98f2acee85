-- Cancels a subscription's running redrive job: the runner's next step commit then finds it no longer
-- running and stops (a step in hand may still queue its few deliveries).
-- KEYS[1] job hash, KEYS[2] set of running jobs
-- ARGV[1] subscription id, ARGV[2] now (us), ARGV[3] retention of a finished job (s)
-- Returns {'missing'} | {'finished', {job field, value, …}} | {'cancelled', {job field, value, …}}
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {'missing'} end
if state ~= 'running' then return {'finished', redis.call('HGETALL', KEYS[1])} end
redis.call('HSET', KEYS[1], 'state', 'cancelled', 'finished_at', ARGV[2])
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {'cancelled', redis.call('HGETALL', KEYS[1])}
