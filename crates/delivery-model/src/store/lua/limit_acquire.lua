-- Per-subscription limits (issue #18), shared by every worker replica: may this delivery be sent now?
-- In-flight: a slot is a member of the in-flight set until its outcome is written (limit_release) or its
-- lease expires (a dead worker's slot frees itself). Rate: GCRA over the theoretical arrival time (TAT).
-- A delivery over the rate is not turned away but given the next free send time, which is counted at once
-- (reserved): it comes back exactly then and passes without being counted again, so a backlog drains at
-- the rate without any delivery asking twice. Beyond the horizon nothing is reserved (the schedule would
-- hold it too long): it asks again at the horizon. A delivery without an in-flight slot waits in the
-- waiting set; a released slot wakes the oldest (limit_release).
-- Slot-safe: all four keys carry the subscription's own tag in cluster mode.
-- KEYS[1] TAT (STRING, us), KEYS[2] in-flight ZSET, KEYS[3] waiting ZSET, KEYS[4] reserved ZSET
-- ARGV[1] now (us), ARGV[2] delivery id, ARGV[3] emission interval (us; 0 = no rate limit),
-- ARGV[4] burst tolerance (us), ARGV[5] max in flight (0 = no cap), ARGV[6] lease until (us),
-- ARGV[7] reservation horizon (us), ARGV[8] when to ask again without a slot (us)
-- Returns {'go'} | {'rate', retry at (us)} | {'in_flight', retry at (us)}
local now, id = tonumber(ARGV[1]), ARGV[2]
-- Times leave the script as integers: Lua's tostring keeps only 14 digits, and microsecond times have 16.
local function int(x) return string.format('%d', x) end
local interval, tolerance = tonumber(ARGV[3]), tonumber(ARGV[4])
local cap, horizon = tonumber(ARGV[5]), tonumber(ARGV[7])
-- Idle limiter keys go away; an hour outlives any reservation (the horizon) and any lease.
local ttl = math.floor(horizon / 1000) + 3600000

if cap > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if not redis.call('ZSCORE', KEYS[2], id) and redis.call('ZCARD', KEYS[2]) >= cap then
    redis.call('ZADD', KEYS[3], 'NX', now, id)
    redis.call('PEXPIRE', KEYS[3], ttl)
    return {'in_flight', int(now + tonumber(ARGV[8]))}
  end
end

if interval > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - horizon)
  if redis.call('ZREM', KEYS[4], id) == 0 then
    local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
    local allowed_at = tat - tolerance
    if allowed_at > now then
      if allowed_at - now > horizon then return {'rate', int(now + horizon)} end
      redis.call('SET', KEYS[1], int(tat + interval), 'PX', ttl)
      redis.call('ZADD', KEYS[4], allowed_at, id)
      redis.call('PEXPIRE', KEYS[4], ttl)
      return {'rate', int(allowed_at)}
    end
    redis.call('SET', KEYS[1], int(tat + interval), 'PX', ttl)
  end
end

if cap > 0 then
  redis.call('ZADD', KEYS[2], ARGV[6], id)
  redis.call('PEXPIRE', KEYS[2], ttl)
  redis.call('ZREM', KEYS[3], id)
end
return {'go'}
