-- Walks one delivery index a chunk at a time, lowest score first, and removes the members whose record has
-- expired. The position is (score, skip): everything below `score` has been walked, and so have the first
-- `skip` surviving members at `score` (members that share a score are ordered by value, so the offset is
-- stable while they survive). An index Redis deleted because it became empty leaves the registry.
-- KEYS[1] index zset, KEYS[2] index registry set
-- ARGV[1] delivery-key prefix, ARGV[2] position score ('-inf' to start), ARGV[3] position skip, ARGV[4] limit
-- Returns {examined, removed, next score, next skip, done (1 when the end was reached)}.
local limit = tonumber(ARGV[4])
local page = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[2], '+inf', 'WITHSCORES', 'LIMIT', tonumber(ARGV[3]), limit)
local score, skip, removed = ARGV[2], tonumber(ARGV[3]), 0
for i = 1, #page, 2 do
  local id, s = page[i], page[i + 1]
  if redis.call('EXISTS', ARGV[1] .. id) == 0 then
    redis.call('ZREM', KEYS[1], id)
    removed = removed + 1
  elseif s == score then
    skip = skip + 1
  else
    score, skip = s, 1
  end
end
local examined = #page / 2
local done = 0
if examined < limit then
  done = 1
  if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('SREM', KEYS[2], KEYS[1]) end
end
return {examined, removed, score, skip, done}
