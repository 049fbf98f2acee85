-- Writes the outcomes of a batch of attempts, each fenced by its lease token, and acknowledges their queue
-- entries. One call serves every attempt that finished while the previous batch was being written (the
-- worker's group commit), so the fixed cost of a script is paid once per batch, not once per delivery.
-- Items are independent and applied in order; an item's effects are exactly those of a lone call.
-- A worker whose lease was taken over (it outlived the lease) writes nothing and acknowledges nothing: the
-- newer attempt owns the record. A status changed meanwhile by a receiver callback (the early `completed`
-- race) is kept: the attempt is counted, the status is not touched.
-- KEYS[1] queue stream, KEYS[2] scheduled zset, KEYS[3] activity zset,
-- then per item: delivery hash, subscription hash, the destination host's circuit hash
-- ARGV[1] now (us), ARGV[2] queue group, ARGV[3] active TTL (s), ARGV[4] terminal TTL (s),
-- ARGV[5] status-zset prefix, ARGV[6] failures that open a circuit, ARGV[7] now (ms),
-- ARGV[8] comma-separated open windows (ms), ARGV[9] circuit hash TTL (s), ARGV[10] attempts the log keeps,
-- ARGV[11] permanent failures in a row that disable a subscription (0 = never), ARGV[12] for how long it
-- must also have had no success (us), ARGV[13] subscription status-set prefix, ARGV[14] event-set prefix,
-- ARGV[15] match-generation key,
-- then per item (10 each): token, outcome (delivered|in_progress|retry|reschedule|failed|abandoned: failed
-- without an attempt|gone: failed, the receiver answered 410), queue entry id, last error, next retry (us),
-- retry due (ms), retry message, delivery id, what the attempt tells the circuit breaker
-- (success|failure|none), the attempt's log line ('' = none: nothing was attempted)
-- Returns one of 'fenced', 'superseded' or the outcome written per item, the latter followed by
-- '+disabled' when this item disabled its subscription.
local known = {delivered = 1, in_progress = 1, retry = 1, reschedule = 1, failed = 1, abandoned = 1, gone = 1}
local now, group = ARGV[1], ARGV[2]
local windows = {}
for w in string.gmatch(ARGV[8], '[^,]+') do windows[#windows + 1] = tonumber(w) end
-- Work shared by the items of a batch is done once, in an order that keeps each item's effect what a lone
-- call would have had: queue entries are acknowledged together at the end; a subscription's success is
-- written once (before any later failure of the same subscription counts); a closed circuit is deleted once.
local acks, succeeded, closed = {}, {}, {}
local log_len = tonumber(ARGV[10])

-- The record's attempt log with `line` appended, keeping the latest `log_len` lines.
local function logged(old, line)
  local log = (old or '') .. line .. '\n'
  local _, n = string.gsub(log, '\n', '')
  while n > log_len do
    log = string.sub(log, string.find(log, '\n', 1, true) + 1)
    n = n - 1
  end
  return log
end

local function write_success(sub)
  if redis.call('EXISTS', sub) == 1 then
    redis.call('HSET', sub, 'last_successful_use', now, 'publication_failures', '0')
  end
  succeeded[sub] = nil
end

-- Endpoint health (issue #18): an active subscription becomes `inactive` with a reason (the values of
-- `DisabledReason::as_str`), leaving its status set and its event sets as `set_subscription_status` does.
-- Only this block and its two callers below touch the subscription's status; on a cluster it moves to the
-- control slot with the other subscription effects (docs/cluster.md §4.3). Returns true when it disabled.
local function disable(sub, reason)
  local h = redis.call('HMGET', sub, 'status', 'id', 'events')
  if h[1] ~= 'active' then return false end
  local id = h[2] or ''
  redis.call('HSET', sub, 'status', 'inactive', 'modified_at', now, 'disabled_reason', reason, 'disabled_at', now)
  redis.call('SREM', ARGV[13] .. 'active', id)
  redis.call('SADD', ARGV[13] .. 'inactive', id)
  redis.call('INCR', ARGV[15])
  local ok, events = pcall(cjson.decode, h[3] or '[]')
  if ok and type(events) == 'table' then
    for _, e in ipairs(events) do redis.call('SREM', ARGV[14] .. e, id) end
  end
  return true
end

-- TMI's `publication_failures` rule made explicit: after a permanent failure, `ARGV[11]` of them in a row
-- and no success (or, never used, no creation) for `ARGV[12]` disable the subscription.
local function failing(sub, failures)
  local threshold = tonumber(ARGV[11])
  if threshold <= 0 or failures < threshold then return false end
  local h = redis.call('HMGET', sub, 'last_successful_use', 'created_at')
  local since = tonumber(h[1] or h[2] or '0') or 0
  if tonumber(now) - since < tonumber(ARGV[12]) then return false end
  return disable(sub, 'failing')
end

-- Circuit breaker: a success closes it; failures count up and open it for the next window; a failed
-- half-open probe (the window has passed) reopens it at once.
local function circuit(key, result)
  if result == 'success' then
    if not closed[key] then redis.call('DEL', key) closed[key] = true end
    return
  end
  if result ~= 'failure' then return end
  closed[key] = nil
  local now_ms = tonumber(ARGV[7])
  local c = redis.call('HMGET', key, 'failures', 'opens', 'open_until')
  local failures = tonumber(c[1] or '0') + 1
  local opens = tonumber(c[2] or '0')
  local open_until = tonumber(c[3] or '0')
  if (open_until > 0 and open_until <= now_ms) or failures >= tonumber(ARGV[6]) then
    local window = windows[math.min(opens + 1, #windows)] or 60000
    redis.call('HSET', key, 'failures', 0, 'opens', opens + 1, 'open_until', now_ms + window, 'probe_until', 0)
  else
    redis.call('HSET', key, 'failures', failures)
  end
  redis.call('EXPIRE', key, ARGV[9])
end

local function finish(record, sub, circuit_key, a)
  local token, outcome, entry, err = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local next_retry, due_ms, retry_msg, id, signal = ARGV[a + 4], ARGV[a + 5], ARGV[a + 6], ARGV[a + 7], ARGV[a + 8]
  local line = ARGV[a + 9]
  local r = redis.call('HMGET', record, 'lease', 'status', 'created_at', 'attempts', 'attempt_log')
  if r[1] ~= token then return 'fenced' end
  local status, created_ms = r[2], math.floor(tonumber(r[3] or '0') / 1000)
  circuit(circuit_key, signal)
  acks[#acks + 1] = entry
  local counts = outcome ~= 'reschedule' and outcome ~= 'abandoned'
  local attempts = tonumber(r[4] or '0')
  if counts then attempts = attempts + 1 end
  -- Every write below sets the attempt count and, when an attempt was made, its log line (whatever the
  -- outcome's fate: the attempt happened), in the same HSET as the outcome's own fields.
  local always = {'attempts', attempts}
  if line ~= '' then
    always[3] = 'attempt_log'
    always[4] = logged(r[5], line)
  end
  local function write(fields)
    for _, v in ipairs(always) do fields[#fields + 1] = v end
    redis.call('HSET', record, unpack(fields))
  end
  if status ~= 'pending' then
    write({})
    redis.call('HDEL', record, 'lease', 'lease_until')
    return 'superseded'
  end
  -- A new status moves the record between the status indexes.
  local function move_to(new)
    redis.call('ZREM', ARGV[5] .. 'pending', id)
    redis.call('ZADD', ARGV[5] .. new, created_ms, id)
  end
  if outcome == 'delivered' then
    write({'status', 'delivered', 'delivered_at', now, 'last_activity_at', now})
    redis.call('HDEL', record, 'lease', 'lease_until', 'next_retry_at')
    move_to('delivered')
    redis.call('EXPIRE', record, ARGV[4])
    succeeded[sub] = true
  elseif outcome == 'in_progress' then
    write({'status', 'in_progress', 'last_activity_at', now})
    redis.call('HDEL', record, 'lease', 'lease_until', 'next_retry_at')
    move_to('in_progress')
    redis.call('ZADD', KEYS[3], now, id)
    redis.call('EXPIRE', record, ARGV[3])
    succeeded[sub] = true
  elseif outcome == 'retry' or outcome == 'reschedule' then
    local fields = {'next_retry_at', next_retry, 'last_activity_at', now}
    -- An empty error (a deferral for fairness) keeps the previous attempt's error.
    if err ~= '' then
      fields[5] = 'last_error'
      fields[6] = err
    end
    write(fields)
    redis.call('HDEL', record, 'lease', 'lease_until')
    redis.call('ZADD', KEYS[2], due_ms, retry_msg)
    redis.call('EXPIRE', record, ARGV[3])
  else -- failed, gone, abandoned
    write({'status', 'failed', 'last_error', err, 'last_activity_at', now})
    redis.call('HDEL', record, 'lease', 'lease_until', 'next_retry_at')
    move_to('failed')
    redis.call('EXPIRE', record, ARGV[4])
    if outcome ~= 'abandoned' then
      if succeeded[sub] then write_success(sub) end
      if redis.call('EXISTS', sub) == 1 then
        local failures = redis.call('HINCRBY', sub, 'publication_failures', 1)
        -- Endpoint health: a 410 disables at once, other failures past the threshold.
        local disabled
        if outcome == 'gone' then disabled = disable(sub, 'gone') else disabled = failing(sub, failures) end
        if disabled then return outcome .. '+disabled' end
      end
    end
  end
  return outcome
end

local items = (#KEYS - 3) / 3
-- Refuse the whole batch before writing anything if an item is malformed.
for i = 0, items - 1 do
  local outcome = ARGV[17 + i * 10]
  if not known[outcome] then return redis.error_reply('unknown outcome ' .. tostring(outcome)) end
end
local results = {}
for i = 0, items - 1 do
  local k = 4 + i * 3
  results[#results + 1] = finish(KEYS[k], KEYS[k + 1], KEYS[k + 2], 16 + i * 10)
end
for sub in pairs(succeeded) do write_success(sub) end
if #acks > 0 then
  redis.call('XACK', KEYS[1], group, unpack(acks))
  redis.call('XDEL', KEYS[1], unpack(acks))
end
return results
