-- An administrator skips the failed head of a FIFO lane that blocks on failure (issue #18): the head stays
-- `failed` and the next delivery of the lane is queued, in one step.
-- KEYS[1] queue stream of the lane's shard
-- ARGV[1] lane id, ARGV[2..8] lane arguments (lib/lane.lua)
-- Returns {'empty'} | {'not_failed', head id, status ('' = expired)} | {'skipped', head id}
local lane = lane_ctx(KEYS[1], 2)
local name = ARGV[1]
local head = redis.call('LINDEX', lane.prefix .. name, 0)
if not head then return {'empty'} end
local status = redis.call('HGET', lane.records .. head, 'status')
if status and status ~= 'failed' then return {'not_failed', head, status} end
lane_advance(lane, name, head)
return {'skipped', head}
