-- Deletes a subscription and every index entry that names it, and with it its add-ons (TMI's cascade), in
-- one step: no add-on can outlive its subscription.
-- KEYS[1] subscription hash, KEYS[2] all-subscriptions zset, KEYS[3] the subscription's add-on set,
-- KEYS[4] all-add-ons zset, KEYS[5] unscoped-add-ons zset, KEYS[6] match generation (bumped when the event
-- sets change)
-- ARGV[1] id, ARGV[2] owner-set prefix, ARGV[3] status-set prefix, ARGV[4] threat-model-zset prefix,
-- ARGV[5] event-set prefix, ARGV[6] add-on hash prefix, ARGV[7] add-on threat-model-zset prefix
-- Returns 1 when deleted, 0 when it did not exist.
local h = redis.call('HMGET', KEYS[1], 'owner_id', 'status', 'threat_model_id', 'events')
if not h[2] then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 0
end
local id = ARGV[1]
if h[1] then redis.call('SREM', ARGV[2] .. h[1], id) end
redis.call('SREM', ARGV[3] .. h[2], id)
if h[3] and h[3] ~= '' then redis.call('ZREM', ARGV[4] .. h[3], id) end
if h[4] then
  local ok, events = pcall(cjson.decode, h[4])
  if ok and type(events) == 'table' then
    for _, e in ipairs(events) do redis.call('SREM', ARGV[5] .. e, id) end
  end
  if h[2] == 'active' then redis.call('INCR', KEYS[6]) end
end
for _, a in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  local tm = redis.call('HGET', ARGV[6] .. a, 'threat_model_id')
  if tm and tm ~= '' then
    redis.call('ZREM', ARGV[7] .. tm, a)
  else
    redis.call('ZREM', KEYS[5], a)
  end
  redis.call('ZREM', KEYS[4], a)
  redis.call('DEL', ARGV[6] .. a)
end
redis.call('DEL', KEYS[3])
redis.call('ZREM', KEYS[2], id)
redis.call('DEL', KEYS[1])
return 1
