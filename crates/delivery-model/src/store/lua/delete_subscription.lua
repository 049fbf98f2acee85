-- Deletes a subscription and every index entry that names it.
-- KEYS[1] subscription hash, KEYS[2] all-subscriptions zset
-- ARGV[1] id, ARGV[2] owner-set prefix, ARGV[3] status-set prefix, ARGV[4] threat-model-zset prefix,
-- ARGV[5] event-set prefix
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
end
redis.call('ZREM', KEYS[2], id)
redis.call('DEL', KEYS[1])
return 1
