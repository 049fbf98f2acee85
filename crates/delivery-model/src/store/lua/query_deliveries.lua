-- One page of a filtered delivery list, oldest first (created_at, then id), without scanning the keyspace:
-- a single filter range-pages its index; several are intersected first (all indexes share the created-ms
-- score, so AGGREGATE MIN keeps it). Records that expired while their ids still sit in the indexes (cleanup
-- prunes those later) are skipped, removed from the indexes read here, and not counted in the total.
-- KEYS[1] temporary zset (used only with several filters; deleted here, with a short TTL in case the script
-- fails midway), KEYS[2..] the index zsets to intersect (at least one)
-- ARGV[1] min score, ARGV[2] max score ('-inf'/'+inf' or ms), ARGV[3] offset, ARGV[4] limit,
-- ARGV[5] delivery-key prefix, ARGV[6] temporary key TTL (s)
-- Returns {total, {field, value, …}, …} with the page's records.
local src = KEYS[2]
if #KEYS > 2 then
  local args = {'ZINTERSTORE', KEYS[1], #KEYS - 1}
  for i = 2, #KEYS do args[#args + 1] = KEYS[i] end
  -- The default SUM would add the scores up; MIN keeps created ms.
  args[#args + 1] = 'AGGREGATE'
  args[#args + 1] = 'MIN'
  redis.call(unpack(args))
  redis.call('EXPIRE', KEYS[1], ARGV[6])
  src = KEYS[1]
end
local total = redis.call('ZCOUNT', src, ARGV[1], ARGV[2])
local ids = redis.call('ZRANGEBYSCORE', src, ARGV[1], ARGV[2], 'LIMIT', tonumber(ARGV[3]), tonumber(ARGV[4]))
local out = {0}
for _, id in ipairs(ids) do
  local r = redis.call('HGETALL', ARGV[5] .. id)
  if #r == 0 then
    total = total - 1
    for i = 2, #KEYS do redis.call('ZREM', KEYS[i], id) end
  else
    out[#out + 1] = r
  end
end
if src == KEYS[1] then redis.call('DEL', KEYS[1]) end
out[1] = total
return out
