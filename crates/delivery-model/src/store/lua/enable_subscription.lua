-- Endpoint health (issue #18): an administrator re-enables a subscription the worker disabled. Only an
-- `inactive` subscription with a `disabled_reason` changes (an operator-pinned `inactive` sink has none and
-- is left alone): back to `active` in its status set and its event sets, the reason cleared, and its
-- failure count reset so the threshold starts afresh. Slot-safe: every key is of the control tag.
-- KEYS[1] subscription hash, KEYS[2] match generation
-- ARGV[1] now (us), ARGV[2] status-set prefix, ARGV[3] event-set prefix, ARGV[4] id
-- Returns {'missing'} | {'not_disabled', status} | {'enabled', disabled_at (us)}
local h = redis.call('HMGET', KEYS[1], 'status', 'disabled_reason', 'disabled_at', 'events')
if not h[1] then return {'missing'} end
if h[1] ~= 'inactive' or not h[2] or h[2] == '' then return {'not_disabled', h[1]} end
local id = ARGV[4]
redis.call('HSET', KEYS[1], 'status', 'active', 'modified_at', ARGV[1], 'publication_failures', '0')
redis.call('HDEL', KEYS[1], 'disabled_reason', 'disabled_at')
redis.call('SREM', ARGV[2] .. 'inactive', id)
redis.call('SADD', ARGV[2] .. 'active', id)
redis.call('INCR', KEYS[2])
local ok, events = pcall(cjson.decode, h[4] or '[]')
if ok and type(events) == 'table' then
  for _, e in ipairs(events) do redis.call('SADD', ARGV[3] .. e, id) end
end
return {'enabled', h[3] or '0'}
