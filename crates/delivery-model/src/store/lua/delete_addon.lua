-- Deletes an add-on and its index entries unless one of its deliveries is still pending or in progress
-- (TMI's 409). Check and delete are one step, so no invocation can slip in between: the invoke script checks
-- that the add-on exists in its own single step.
-- On a cluster the deliveries are in the shards: the caller marked the add-on (addon_delete_mark), found
-- none of them active, and passes its mark's token instead of the index; the delete happens only while
-- that mark still stands (else 'active': the caller answers as if one were, and nothing is deleted).
-- KEYS[1] add-on hash, KEYS[2] all-add-ons zset, KEYS[3] (one node) the add-on's delivery index (zset)
-- ARGV[1] id, ARGV[2] delivery-key prefix, ARGV[3] threat-model zset prefix, ARGV[4] unscoped zset,
-- ARGV[5] by-subscription set prefix, ARGV[6] (cluster) the mark's token, ARGV[7] (cluster) now (unix ms)
-- Returns 'deleted', 'missing' or 'active'.
local h = redis.call('HMGET', KEYS[1], 'webhook_id', 'threat_model_id', 'deleting_token', 'deleting_until')
if not h[1] then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 'missing'
end
if KEYS[3] then
  -- Active deliveries are recent, so walk the index newest first and stop at the first active one.
  for _, d in ipairs(redis.call('ZREVRANGE', KEYS[3], 0, -1)) do
    local s = redis.call('HGET', ARGV[2] .. d, 'status')
    if s == 'pending' or s == 'in_progress' then return 'active' end
  end
elseif h[3] ~= ARGV[6] or tonumber(h[4] or '0') <= tonumber(ARGV[7]) then
  return 'active'
end
if h[2] and h[2] ~= '' then
  redis.call('ZREM', ARGV[3] .. h[2], ARGV[1])
else
  redis.call('ZREM', ARGV[4], ARGV[1])
end
redis.call('SREM', ARGV[5] .. h[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[1])
return 'deleted'
