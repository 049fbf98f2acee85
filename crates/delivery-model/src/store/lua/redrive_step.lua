-- Records one step of a redrive job, as a compare-and-set: only if the job is still the same job
-- (job id), still running, and its cursor is still where the step started from. A runner that lost its
-- lease, or a step of a cancelled job, therefore changes nothing, and a cursor never moves twice.
-- KEYS[1] job hash, KEYS[2] set of running jobs
-- ARGV[1] subscription id, ARGV[2] job id, ARGV[3] cursor id the step started from ('' = none),
-- ARGV[4] new cursor score, ARGV[5] new cursor id ('' = unchanged), ARGV[6] scanned, ARGV[7] matched,
-- ARGV[8] queued, ARGV[9] skipped (increments), ARGV[10] next step due (us), ARGV[11] final state
-- ('' = still running), ARGV[12] now (us), ARGV[13] retention of a finished job (s), ARGV[14] reason
-- Returns 1 when recorded, 0 when the job moved on without this step.
local h = redis.call('HMGET', KEYS[1], 'job_id', 'state', 'cursor_id')
if h[1] ~= ARGV[2] or h[2] ~= 'running' or (h[3] or '') ~= ARGV[3] then return 0 end
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[1], 'cursor_score', ARGV[4], 'cursor_id', ARGV[5])
end
redis.call('HINCRBY', KEYS[1], 'scanned', ARGV[6])
redis.call('HINCRBY', KEYS[1], 'matched', ARGV[7])
redis.call('HINCRBY', KEYS[1], 'queued', ARGV[8])
redis.call('HINCRBY', KEYS[1], 'skipped', ARGV[9])
redis.call('HSET', KEYS[1], 'next_at', ARGV[10])
if ARGV[11] ~= '' then
  redis.call('HSET', KEYS[1], 'state', ARGV[11], 'finished_at', ARGV[12])
  if ARGV[14] ~= '' then redis.call('HSET', KEYS[1], 'reason', ARGV[14]) end
  redis.call('SREM', KEYS[2], ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[13])
end
return 1
