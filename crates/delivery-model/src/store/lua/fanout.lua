-- Creates the deliveries of a chunk of input-stream entries, enqueues them and acknowledges the entries,
-- atomically: a crash before this script leaves the entries pending (reprocessed later), after it leaves
-- nothing to redo. Delivery ids are deterministic per (entry, subscription), so a reprocessed entry finds its
-- records and creates nothing twice. One call serves many entries: the fixed cost of a script is paid once.
-- A subscription's deliveries beyond its fair share of the queue are parked instead (lib/fair.lua); an
-- ordered subscription's delivery joins its FIFO lane and is queued only as the lane's head (lib/lane.lua).
-- KEYS[1] input stream, KEYS[2] queue stream, KEYS[3] all-deliveries zset, KEYS[4] pending-status zset,
-- KEYS[5] fair parking set, KEYS[6] match generation
-- ARGV[1] input group, ARGV[2] now (us), ARGV[3] score (created ms), ARGV[4] TTL (s),
-- ARGV[5] delivery-key prefix, ARGV[6] subscription-key prefix, ARGV[7] by-subscription zset prefix,
-- ARGV[8] by-event zset prefix, ARGV[9] queue message field, ARGV[10] '1' to acknowledge the entries here,
-- '0' to leave that to the caller (redis.wait_replicas > 0: it acknowledges once replicas confirmed the writes),
-- ARGV[11] fair share (0 = off), ARGV[12] fair queued prefix, ARGV[13] fair parked prefix,
-- ARGV[14..22] lane arguments (lib/lane.lua), ARGV[23] the match generation the caller matched the entries
-- at ('' = unchecked),
-- then per entry: entry id, event type, payload, traceparent, tracestate ('' when absent: the record then gets
-- no such field), n, and n groups of 6 (subscription id, delivery id, message, lane id ('' = unordered),
-- '1' when the lane blocks on failure, the entry's lane score)
-- Acknowledging here also raises the lanes' watermark: input entries before the first one still pending (or,
-- with none pending, up to the group's last delivered one) have all been fanned out.
-- Returns {deliveries created, of them those that wait in their FIFO lane}, or {-1, 0} (nothing written)
-- when the match generation moved: a subscription changed after the caller read its candidates, so it
-- matches the entries again. Checking here saves the consumer a read of the generation per batch (issue #21).
if ARGV[23] ~= '' and (redis.call('GET', KEYS[6]) or '0') ~= ARGV[23] then return {-1, 0} end
local created, waiting = 0, 0
local i = 24
local lane = lane_ctx(KEYS[2], 14)
local low = lane_low(lane)
local laned = false
local fair = {share = tonumber(ARGV[11]), queued = ARGV[12], parked = ARGV[13], parking = KEYS[5],
  queue = KEYS[2], field = ARGV[9], now_ms = ARGV[3], ttl = ARGV[4]}
-- Read once per call: a chunk's entries mostly match the same few subscriptions.
local active, acks = {}, {}
while i <= #ARGV do
  local entry, event_type, payload, tp, ts = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local n = tonumber(ARGV[i + 5])
  i = i + 6
  for _ = 1, n do
    local sub, id, msg, lane_id = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
    local block, score = ARGV[i + 4], ARGV[i + 5]
    i = i + 6
    local key = ARGV[5] .. id
    if active[sub] == nil then active[sub] = redis.call('HGET', ARGV[6] .. sub, 'status') == 'active' end
    if active[sub] and redis.call('EXISTS', key) == 0 then
      redis.call('HSET', key, 'id', id, 'subscription_id', sub, 'event_type', event_type, 'status', 'pending',
        'status_percent', '0', 'status_message', '', 'payload', payload, 'attempts', '0',
        'created_at', ARGV[2], 'last_activity_at', ARGV[2])
      if tp ~= '' then redis.call('HSET', key, 'traceparent', tp) end
      if ts ~= '' then redis.call('HSET', key, 'tracestate', ts) end
      redis.call('EXPIRE', key, ARGV[4])
      redis.call('ZADD', KEYS[3], ARGV[3], id)
      redis.call('ZADD', KEYS[4], ARGV[3], id)
      redis.call('ZADD', ARGV[8] .. event_type, ARGV[3], id)
      redis.call('ZADD', ARGV[7] .. sub, ARGV[3], id)
      if lane_id == '' then
        fair_enqueue(fair, sub, msg, false)
      else
        waiting = waiting + lane_join(lane, key, lane_id, block, id, score, low)
        laned = true
      end
      created = created + 1
    end
  end
  acks[#acks + 1] = entry
end
if ARGV[10] == '1' and #acks > 0 then
  redis.call('XACK', KEYS[1], ARGV[1], unpack(acks))
  -- Only when lanes are concerned: the two stream reads it costs are not paid by unordered traffic.
  if laned or redis.call('ZCARD', lane.held) > 0 then
    lane_watermark(lane, lane_input_low(KEYS[1], ARGV[1]))
  end
end
return {created, waiting}
