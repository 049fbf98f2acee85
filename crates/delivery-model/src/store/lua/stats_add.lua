-- Adds to one statistics hash and refreshes its TTL (issue #20). One key, so any replica may call it on any
-- layout: the hashes are untagged and spread over a cluster's slots.
-- KEYS[1] the stats hash (a minute's, or a subscription's hour)
-- ARGV[1] TTL (s), then field, increment pairs
-- Returns the number of fields incremented.
local n = 0
for i = 2, #ARGV - 1, 2 do
  redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
  n = n + 1
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return n
