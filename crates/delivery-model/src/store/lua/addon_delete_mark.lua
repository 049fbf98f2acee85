-- Cluster mode, steps 1 and 3 of deleting an add-on (docs/cluster.md §4.6): marks the add-on as being
-- deleted, so that no invocation is reserved while the caller checks its deliveries in every shard, or
-- clears the mark when one of them is still active. A crashed caller's mark expires by itself.
-- KEYS[1] add-on hash
-- ARGV[1] the caller's token, ARGV[2] mark until (unix ms), or '' to clear the caller's own mark
-- Returns 'missing' | 'marked' | 'cleared'
if redis.call('EXISTS', KEYS[1]) == 0 then return 'missing' end
if ARGV[2] == '' then
  if redis.call('HGET', KEYS[1], 'deleting_token') == ARGV[1] then
    redis.call('HDEL', KEYS[1], 'deleting_until', 'deleting_token')
  end
  return 'cleared'
end
redis.call('HSET', KEYS[1], 'deleting_until', ARGV[2], 'deleting_token', ARGV[1])
return 'marked'
