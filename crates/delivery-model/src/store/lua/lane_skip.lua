-- An administrator skips the failed delivery a FIFO lane that blocks on failure has out (issue #18): it
-- stays `failed` and the lane moves on, in one step.
-- KEYS[1] queue stream of the lane's shard
-- ARGV[1] lane id, ARGV[2..10] lane arguments (lib/lane.lua)
-- Returns {'empty'} | {'not_failed', id out ('' = none out yet), status} | {'skipped', id}
local lane = lane_ctx(KEYS[1], 2)
local name = ARGV[1]
local out = redis.call('HGET', lane.lanes, name)
if not out then return {'empty'} end
if out == '' then return {'not_failed', '', 'waiting'} end
local status = redis.call('HGET', lane.records .. out, 'status')
if status and status ~= 'failed' then return {'not_failed', out, status} end
lane_advance(lane, name, out)
return {'skipped', out}
