-- Cluster mode: creates the deliveries that one queue shard owns, of a chunk of input-stream entries, and
-- enqueues them on the shard's queue (docs/cluster.md §4.1). Everything here is in the shard's slot, so two
-- things fanout.lua does in the same step happen elsewhere: the input entries are acknowledged by the caller
-- once every shard's call succeeded (a crash before that leaves them pending; reprocessing derives the same
-- ids, finds the records and creates and enqueues nothing twice), and the subscriptions' status is not read
-- here (control slot): the consumer only passes subscriptions it read as active.
-- KEYS[1] shard queue stream, KEYS[2] all-deliveries zset, KEYS[3] pending-status zset,
-- KEYS[4] delivery index registry (set of the per-subscription and per-event index names cleanup prunes),
-- KEYS[5] fair parking set (a subscription's deliveries beyond its fair share are parked: lib/fair.lua)
-- ARGV[1] now (us), ARGV[2] score (created ms), ARGV[3] TTL (s), ARGV[4] delivery-key prefix,
-- ARGV[5] by-subscription zset prefix, ARGV[6] by-event zset prefix, ARGV[7] queue message field,
-- ARGV[8] fair share (0 = off), ARGV[9] fair queued prefix, ARGV[10] fair parked prefix,
-- ARGV[11..19] lane arguments (lib/lane.lua: an ordered subscription's delivery joins its FIFO lane, of this
-- shard; the caller raises the watermark once the entries are acknowledged),
-- then per entry: event type, payload, traceparent, tracestate ('' when absent: the record then gets no such
-- field), n, and n groups of 6 (subscription id, delivery id, message, lane id ('' = unordered), '1' when the
-- lane blocks on failure, the entry's lane score)
-- Returns {deliveries created, of them those that wait in their FIFO lane}.
local created, waiting = 0, 0
local i = 20
local lane = lane_ctx(KEYS[1], 11)
local low = lane_low(lane)
local fair = {share = tonumber(ARGV[8]), queued = ARGV[9], parked = ARGV[10], parking = KEYS[5],
  queue = KEYS[1], field = ARGV[7], now_ms = ARGV[2], ttl = ARGV[3]}
while i <= #ARGV do
  local event_type, payload, tp, ts = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local n = tonumber(ARGV[i + 4])
  i = i + 5
  for _ = 1, n do
    local sub, id, msg, lane_id = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
    local block, score = ARGV[i + 4], ARGV[i + 5]
    i = i + 6
    local key = ARGV[4] .. id
    if redis.call('EXISTS', key) == 0 then
      redis.call('HSET', key, 'id', id, 'subscription_id', sub, 'event_type', event_type, 'status', 'pending',
        'status_percent', '0', 'status_message', '', 'payload', payload, 'attempts', '0',
        'created_at', ARGV[1], 'last_activity_at', ARGV[1])
      if tp ~= '' then redis.call('HSET', key, 'traceparent', tp) end
      if ts ~= '' then redis.call('HSET', key, 'tracestate', ts) end
      redis.call('EXPIRE', key, ARGV[3])
      redis.call('ZADD', KEYS[2], ARGV[2], id)
      redis.call('ZADD', KEYS[3], ARGV[2], id)
      local by_event, by_sub = ARGV[6] .. event_type, ARGV[5] .. sub
      redis.call('ZADD', by_event, ARGV[2], id)
      redis.call('ZADD', by_sub, ARGV[2], id)
      redis.call('SADD', KEYS[4], by_event, by_sub)
      if lane_id == '' then
        fair_enqueue(fair, sub, msg, false)
      else
        waiting = waiting + lane_join(lane, key, lane_id, block, id, score, low)
      end
      created = created + 1
    end
  end
end
return {created, waiting}
