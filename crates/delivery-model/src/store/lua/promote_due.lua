-- Moves due messages from the schedule to the queue. Atomic, so any number of workers may run it at once
-- and each message is promoted exactly once. A delivery coming due takes its subscription's fair share of
-- the queue like fresh work (lib/fair.lua): beyond it, it is parked ahead of the subscription's fresh
-- deliveries, so a receiver that times out or answers errors cannot flood the queue with its retries. The
-- head of a FIFO lane is queued as is: a lane has one message out at a time.
-- KEYS[1] scheduled zset, KEYS[2] queue stream, KEYS[3] fair parking set
-- ARGV[1] now (ms), ARGV[2] limit, ARGV[3] queue message field, ARGV[4] fair share (0 = off: the
-- challenge schedule), ARGV[5] fair queued prefix, ARGV[6] fair parked prefix, ARGV[7] delivery-key prefix,
-- ARGV[8] active TTL (s)
-- Returns the number promoted.
local fair = {share = tonumber(ARGV[4]), queued = ARGV[5], parked = ARGV[6], parking = KEYS[3],
  queue = KEYS[2], field = ARGV[3], now_ms = ARGV[1], ttl = ARGV[8]}
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, m in ipairs(due) do
  redis.call('ZREM', KEYS[1], m)
  local sub
  if fair.share > 0 then
    -- Only a delivery's message names a subscription (through its record); anything else is queued as is.
    local ok, msg = pcall(cjson.decode, m)
    if ok and type(msg) == 'table' and msg.type == 'delivery_v1' and type(msg.delivery_id) == 'string' then
      local h = redis.call('HMGET', ARGV[7] .. msg.delivery_id, 'subscription_id', 'lane')
      -- A FIFO lane's head is its lane's only message: it bypasses the share, like fresh lane heads.
      if not h[2] then sub = h[1] end
    end
  end
  fair_enqueue(fair, sub, m, true)
end
return #due
