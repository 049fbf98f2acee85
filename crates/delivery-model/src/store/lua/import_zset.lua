-- Adds copied members to one sorted set, each only if absent (`ZADD NX`: a re-run adds nothing and a
-- member the target has already keeps its score), and gives a set this call created the TTL the copy had
-- left: an invoker's add-on invocation windows (`hookline-migrate --from-redis`). One key.
-- KEYS[1] the zset
-- ARGV[1] TTL (ms; '0' for none), ARGV[2..] score/member pairs
-- Returns the number of members added.
local existed = redis.call('EXISTS', KEYS[1]) == 1
local added = 0
for i = 2, #ARGV, 2 do
  added = added + redis.call('ZADD', KEYS[1], 'NX', ARGV[i], ARGV[i + 1])
end
if not existed and added > 0 and tonumber(ARGV[1]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return added
