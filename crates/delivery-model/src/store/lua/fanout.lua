-- Creates the deliveries of one input-stream entry, enqueues them and acknowledges the entry, atomically:
-- a crash before this script leaves the entry pending (reprocessed later), after it leaves nothing to redo.
-- Delivery ids are deterministic per (entry, subscription), so a reprocessed entry finds its records and
-- creates nothing twice.
-- KEYS[1] input stream, KEYS[2] queue stream, KEYS[3] all-deliveries zset, KEYS[4] pending-status zset,
-- KEYS[5] event-type zset
-- ARGV[1] input group, ARGV[2] entry id, ARGV[3] now (us), ARGV[4] score (created ms), ARGV[5] TTL (s),
-- ARGV[6] payload, ARGV[7] event type, ARGV[8] delivery-key prefix, ARGV[9] subscription-key prefix,
-- ARGV[10] by-subscription zset prefix, ARGV[11] queue message field,
-- then triples (subscription id, delivery id, queue message) from ARGV[12]
-- Returns the number of deliveries created.
local created = 0
for i = 12, #ARGV, 3 do
  local sub, id, msg = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local key = ARGV[8] .. id
  if redis.call('HGET', ARGV[9] .. sub, 'status') == 'active' and redis.call('EXISTS', key) == 0 then
    redis.call('HSET', key, 'id', id, 'subscription_id', sub, 'event_type', ARGV[7], 'status', 'pending',
      'status_percent', '0', 'status_message', '', 'payload', ARGV[6], 'attempts', '0',
      'created_at', ARGV[3], 'last_activity_at', ARGV[3])
    redis.call('EXPIRE', key, ARGV[5])
    redis.call('ZADD', KEYS[3], ARGV[4], id)
    redis.call('ZADD', KEYS[4], ARGV[4], id)
    redis.call('ZADD', KEYS[5], ARGV[4], id)
    redis.call('ZADD', ARGV[10] .. sub, ARGV[4], id)
    redis.call('XADD', KEYS[2], '*', ARGV[11], msg)
    created = created + 1
  end
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
return created
