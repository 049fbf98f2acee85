-- Fair sharing's safety net (issue #18), run by cleanup over one shard's parking set a page at a time. A
-- counted message that has sat in the queue longer than the stale bound is forgotten (its entry was
-- deleted outside the scripts, or its record expired: nothing will release its place), and each parking
-- subscription is refilled up to its share, so a parked list can never be stranded. Forgetting a message
-- that is in fact still queued only lets one more in: fairness bends, nothing is lost.
-- KEYS[1] fair parking set, KEYS[2] queue stream
-- ARGV[1] SSCAN cursor, ARGV[2] page size, ARGV[3] fair share (0 = off: drain up to ARGV[4] per
-- subscription and call), ARGV[4] most moved per subscription and call, ARGV[5] fair queued prefix,
-- ARGV[6] fair parked prefix, ARGV[7] queue message field, ARGV[8] now (ms), ARGV[9] stale bound (ms),
-- ARGV[10] active TTL (s)
-- Returns {next cursor, subscriptions seen, messages parked (after the moves), messages moved}.
local fair = {share = tonumber(ARGV[3]), queued = ARGV[5], parked = ARGV[6], parking = KEYS[1],
  queue = KEYS[2], field = ARGV[7], now_ms = ARGV[8], ttl = ARGV[10]}
local most = tonumber(ARGV[4])
local page = redis.call('SSCAN', KEYS[1], ARGV[1], 'COUNT', tonumber(ARGV[2]))
local parked, moved = 0, 0
for _, sub in ipairs(page[2]) do
  local queued = fair.queued .. sub
  redis.call('ZREMRANGEBYSCORE', queued, '-inf', tonumber(ARGV[8]) - tonumber(ARGV[9]))
  if fair.share > 0 then
    moved = moved + fair_fill(fair, sub, math.min(fair.share, redis.call('ZCARD', queued) + most))
  else
    -- Fair sharing was turned off: what it parked before goes to the queue uncounted.
    for _ = 1, most do
      local m = redis.call('LPOP', fair.parked .. sub)
      if not m then break end
      redis.call('XADD', fair.queue, '*', fair.field, m)
      moved = moved + 1
    end
    if redis.call('EXISTS', fair.parked .. sub) == 0 then redis.call('SREM', fair.parking, sub) end
  end
  parked = parked + redis.call('LLEN', fair.parked .. sub)
end
return {page[1], #page[2], parked, moved}
