-- Writes the outcome of one attempt, fenced by the attempt's lease token, and acknowledges its queue entry.
-- A worker whose lease was taken over (it outlived the lease) writes nothing and acknowledges nothing: the
-- newer attempt owns the record. A status changed meanwhile by a receiver callback (the early `completed`
-- race) is kept: the attempt is counted, the status is not touched.
-- KEYS[1] delivery hash, KEYS[2] subscription hash, KEYS[3] queue stream, KEYS[4] scheduled zset,
-- KEYS[5] activity zset, KEYS[6] the destination host's circuit hash
-- ARGV[1] token, ARGV[2] now (us), ARGV[3] outcome (delivered|in_progress|retry|reschedule|failed|abandoned: failed without an attempt),
-- ARGV[4] queue group, ARGV[5] queue entry id, ARGV[6] active TTL (s), ARGV[7] terminal TTL (s),
-- ARGV[8] last error, ARGV[9] next retry (us), ARGV[10] retry due (ms), ARGV[11] retry message,
-- ARGV[12] status-zset prefix, ARGV[13] delivery id, ARGV[14] what the attempt tells the circuit breaker
-- (success|failure|none), ARGV[15] failures that open the circuit, ARGV[16] now (ms),
-- ARGV[17] comma-separated open windows (ms), ARGV[18] circuit hash TTL (s)
-- Returns 'fenced', 'superseded' or the outcome written.
local known = {delivered = 1, in_progress = 1, retry = 1, reschedule = 1, failed = 1, abandoned = 1}
if not known[ARGV[3]] then return redis.error_reply('unknown outcome ' .. ARGV[3]) end
local r = redis.call('HMGET', KEYS[1], 'lease', 'status', 'created_at')
if r[1] ~= ARGV[1] then return 'fenced' end
local status, created_ms = r[2], math.floor(tonumber(r[3] or '0') / 1000)
-- Circuit breaker: a success closes it; failures count up and open it for the next window; a failed
-- half-open probe (the window has passed) reopens it at once.
local function circuit(result)
  if result == 'success' then redis.call('DEL', KEYS[6]) return end
  if result ~= 'failure' then return end
  local now = tonumber(ARGV[16])
  local c = redis.call('HMGET', KEYS[6], 'failures', 'opens', 'open_until')
  local failures = tonumber(c[1] or '0') + 1
  local opens = tonumber(c[2] or '0')
  local open_until = tonumber(c[3] or '0')
  if (open_until > 0 and open_until <= now) or failures >= tonumber(ARGV[15]) then
    local windows = {}
    for w in string.gmatch(ARGV[17], '[^,]+') do windows[#windows + 1] = tonumber(w) end
    local window = windows[math.min(opens + 1, #windows)] or 60000
    redis.call('HSET', KEYS[6], 'failures', 0, 'opens', opens + 1, 'open_until', now + window, 'probe_until', 0)
  else
    redis.call('HSET', KEYS[6], 'failures', failures)
  end
  redis.call('EXPIRE', KEYS[6], ARGV[18])
end
circuit(ARGV[14])
local function ack()
  redis.call('XACK', KEYS[3], ARGV[4], ARGV[5])
  redis.call('XDEL', KEYS[3], ARGV[5])
end
local now, outcome, id = ARGV[2], ARGV[3], ARGV[13]
local counts = outcome ~= 'reschedule' and outcome ~= 'abandoned'
if status ~= 'pending' then
  redis.call('HDEL', KEYS[1], 'lease', 'lease_until')
  if counts then redis.call('HINCRBY', KEYS[1], 'attempts', 1) end
  ack()
  return 'superseded'
end
if counts then redis.call('HINCRBY', KEYS[1], 'attempts', 1) end
-- A new status moves the record between the status indexes.
local function move_to(new)
  redis.call('ZREM', ARGV[12] .. 'pending', id)
  redis.call('ZADD', ARGV[12] .. new, created_ms, id)
end
local function sub_success()
  if redis.call('EXISTS', KEYS[2]) == 1 then
    redis.call('HSET', KEYS[2], 'last_successful_use', now, 'publication_failures', '0')
  end
end
if outcome == 'delivered' then
  redis.call('HSET', KEYS[1], 'status', 'delivered', 'delivered_at', now, 'last_activity_at', now)
  redis.call('HDEL', KEYS[1], 'lease', 'lease_until', 'next_retry_at')
  move_to('delivered')
  redis.call('EXPIRE', KEYS[1], ARGV[7])
  sub_success()
elseif outcome == 'in_progress' then
  redis.call('HSET', KEYS[1], 'status', 'in_progress', 'last_activity_at', now)
  redis.call('HDEL', KEYS[1], 'lease', 'lease_until', 'next_retry_at')
  move_to('in_progress')
  redis.call('ZADD', KEYS[5], now, id)
  redis.call('EXPIRE', KEYS[1], ARGV[6])
  sub_success()
elseif outcome == 'retry' or outcome == 'reschedule' then
  -- An empty error (a deferral for fairness) keeps the previous attempt's error.
  if ARGV[8] ~= '' then
    redis.call('HSET', KEYS[1], 'last_error', ARGV[8], 'next_retry_at', ARGV[9], 'last_activity_at', now)
  else
    redis.call('HSET', KEYS[1], 'next_retry_at', ARGV[9], 'last_activity_at', now)
  end
  redis.call('HDEL', KEYS[1], 'lease', 'lease_until')
  redis.call('ZADD', KEYS[4], ARGV[10], ARGV[11])
  redis.call('EXPIRE', KEYS[1], ARGV[6])
elseif outcome == 'failed' or outcome == 'abandoned' then
  redis.call('HSET', KEYS[1], 'status', 'failed', 'last_error', ARGV[8], 'last_activity_at', now)
  redis.call('HDEL', KEYS[1], 'lease', 'lease_until', 'next_retry_at')
  move_to('failed')
  redis.call('EXPIRE', KEYS[1], ARGV[7])
  if outcome == 'failed' and redis.call('EXISTS', KEYS[2]) == 1 then
    redis.call('HINCRBY', KEYS[2], 'publication_failures', 1)
  end
end
ack()
return outcome
