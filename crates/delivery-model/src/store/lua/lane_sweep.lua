-- FIFO lanes' hygiene (issue #18), run by cleanup over one shard's set of lanes a page at a time. A lane
-- whose head is done with but still there (its record expired while it waited, or it reached a terminal
-- status outside the scripts that move lanes) moves on; an empty lane leaves the set. Counts what it sees
-- for the lane gauges.
-- KEYS[1] the shard's lanes set, KEYS[2] queue stream
-- ARGV[1] SSCAN cursor, ARGV[2] page size, ARGV[3..9] lane arguments (lib/lane.lua)
-- Returns {next cursor, lanes seen, deliveries in lanes, lanes blocked (failed head, block on failure),
-- lanes moved on}.
local lane = lane_ctx(KEYS[2], 3)
local page = redis.call('SSCAN', KEYS[1], ARGV[1], 'COUNT', tonumber(ARGV[2]))
local depth, blocked, moved = 0, 0, 0
for _, name in ipairs(page[2]) do
  local key = lane.prefix .. name
  local head = redis.call('LINDEX', key, 0)
  if not head then
    redis.call('SREM', lane.set, name)
  else
    local h = redis.call('HMGET', lane.records .. head, 'status', 'lane_block')
    if h[1] == 'failed' and h[2] == '1' then
      blocked = blocked + 1
    elseif h[1] ~= 'pending' and h[1] ~= 'in_progress' then
      lane_advance(lane, name, head)
      moved = moved + 1
    end
    depth = depth + redis.call('LLEN', key)
  end
end
return {page[1], #page[2], depth, blocked, moved}
