-- FIFO lanes' hygiene (issue #18), run by cleanup over one shard's lanes a page at a time. A lane whose
-- delivery out is done with (its record expired while it waited, or it reached a terminal status outside the
-- scripts that move lanes) moves on; a lane with nothing out is looked at again under the current watermark.
-- Counts what it sees for the lane gauges.
-- KEYS[1] queue stream
-- ARGV[1] HSCAN cursor, ARGV[2] page size, ARGV[3..11] lane arguments (lib/lane.lua)
-- Returns {next cursor, lanes seen, deliveries in lanes, lanes blocked (a failed delivery out, block on
-- failure), lanes moved on}.
local lane = lane_ctx(KEYS[1], 3)
local page = redis.call('HSCAN', lane.lanes, ARGV[1], 'COUNT', tonumber(ARGV[2]))
local low = lane_low(lane)
local seen, depth, blocked, moved = 0, 0, 0, 0
for j = 1, #page[2], 2 do
  local name, out = page[2][j], page[2][j + 1]
  seen = seen + 1
  if out == '' then
    lane_next(lane, name, low)
  else
    local h = redis.call('HMGET', lane.records .. out, 'status', 'lane_block')
    if h[1] == 'failed' and h[2] == '1' then
      blocked = blocked + 1
    elseif h[1] ~= 'pending' and h[1] ~= 'in_progress' then
      lane_advance(lane, name, out)
      moved = moved + 1
    end
  end
  depth = depth + redis.call('ZCARD', lane.prefix .. name)
end
return {page[1], seen, depth, blocked, moved}
