-- Writes the outcomes of a batch of attempts, each fenced by its lease token, and acknowledges their queue
-- entries. One call serves every attempt that finished while the previous batch was being written (the
-- worker's group commit), so the fixed cost of a script is paid once per batch, not once per delivery.
-- Items are independent and applied in order; an item's effects are exactly those of a lone call.
-- A worker whose lease was taken over (it outlived the lease) writes nothing and acknowledges nothing: the
-- newer attempt owns the record. A status changed meanwhile by a receiver callback (the early `completed`
-- race) is kept: the attempt is counted, the status is not touched.
-- On one node the subscription counters and the circuit breakers are written here too. On a cluster they
-- live in other slots: the counter effects go to the shard's `sub_outcomes` stream (folded into the
-- subscriptions by fold_outcomes), and the caller sends the circuit signals to circuit_update.
-- KEYS[1] queue stream, KEYS[2] scheduled zset, KEYS[3] activity zset, KEYS[4] (cluster) sub_outcomes
-- stream; then per item: delivery hash, and on one node its subscription hash and the destination host's
-- circuit hash
-- ARGV[1] now (us), ARGV[2] queue group, ARGV[3] active TTL (s), ARGV[4] terminal TTL (s),
-- ARGV[5] status-zset prefix, ARGV[6] failures that open a circuit, ARGV[7] now (ms),
-- ARGV[8] comma-separated open windows (ms), ARGV[9] circuit hash TTL (s), ARGV[10] attempts the log keeps,
-- ARGV[11] '1' on a cluster (KEYS[4] given, one key per item), '' on one node,
-- ARGV[12] permanent failures in a row that disable a subscription (0 = never), ARGV[13] for how long it
-- must also have had no success (us), ARGV[14] subscription status-set prefix, ARGV[15] event-set prefix,
-- ARGV[16] match-generation key (12–16 apply on one node; on a cluster the fold applies them),
-- ARGV[17..25] lane arguments (lib/lane.lua: a terminal outcome moves the delivery's FIFO lane on; a retry
-- holds it), then per item (11 each): token, outcome (delivered|in_progress|retry|reschedule|failed|abandoned: failed
-- without an attempt|gone: failed, the receiver answered 410), queue entry id, last error, next retry (us), retry due (ms), retry message,
-- delivery id, what the attempt tells the circuit breaker (success|failure|none), the attempt's log line
-- ('' = none: nothing was attempted), subscription id
-- Returns one of 'fenced', 'superseded' or the outcome written per item, the latter followed by
-- '+disabled' when this item disabled its subscription (one node only: on a cluster the fold disables).
local known = {delivered = 1, in_progress = 1, retry = 1, reschedule = 1, failed = 1, abandoned = 1, gone = 1}
local now, group = ARGV[1], ARGV[2]
local windows = circuit_windows(ARGV[8])
local clustered = ARGV[11] == '1'
local health = {now = now, threshold = tonumber(ARGV[12]), failing_for = tonumber(ARGV[13]),
  status_prefix = ARGV[14], event_prefix = ARGV[15], generation = ARGV[16]}
-- Work shared by the items of a batch is done once, in an order that keeps each item's effect what a lone
-- call would have had: queue entries are acknowledged together at the end; a subscription's success is
-- written once (before any later failure of the same subscription counts); a closed circuit is deleted once.
-- `succeeded` is keyed by the subscription's hash (one node) or its id (cluster).
local acks, succeeded = {}, {}
local log_len = tonumber(ARGV[10])
local lane = lane_ctx(KEYS[1], 17)

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
  if clustered then
    redis.call('XADD', KEYS[4], '*', 'sub', sub, 'kind', 'success', 't', now)
  elseif redis.call('EXISTS', sub) == 1 then
    redis.call('HSET', sub, 'last_successful_use', now, 'publication_failures', '0')
  end
  succeeded[sub] = nil
end

-- A permanent failure (failed, gone). On one node it counts and may disable the subscription (endpoint
-- health: a 410 at once, other failures past the threshold); returns true when it disabled.
local function write_failure(sub, outcome)
  if clustered then
    redis.call('XADD', KEYS[4], '*', 'sub', sub, 'kind', outcome == 'gone' and 'gone' or 'failure', 't', now)
    return false
  end
  if redis.call('EXISTS', sub) == 0 then return false end
  local failures = redis.call('HINCRBY', sub, 'publication_failures', 1)
  if outcome == 'gone' then return disable(sub, 'gone', health) end
  return failing(sub, failures, health)
end

local function finish(record, sub, circuit_key, a)
  local token, outcome, entry, err = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local next_retry, due_ms, retry_msg, id, signal = ARGV[a + 4], ARGV[a + 5], ARGV[a + 6], ARGV[a + 7], ARGV[a + 8]
  local line = ARGV[a + 9]
  local r = redis.call('HMGET', record, 'lease', 'status', 'created_at', 'attempts', 'attempt_log', 'lane',
    'lane_block')
  if r[1] ~= token then return 'fenced' end
  local status, created_ms = r[2], math.floor(tonumber(r[3] or '0') / 1000)
  if circuit_key then
    circuit(circuit_key, signal, tonumber(ARGV[7]), tonumber(ARGV[6]), windows, ARGV[9])
  end
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
    if r[6] then lane_advance(lane, r[6], id) end
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
    -- An abandoned delivery (its subscription is gone or disabled) never blocks its lane.
    if r[6] and (outcome == 'abandoned' or lane_moves_on('failed', r[7])) then lane_advance(lane, r[6], id) end
    if outcome ~= 'abandoned' then
      if succeeded[sub] then write_success(sub) end
      if write_failure(sub, outcome) then return outcome .. '+disabled' end
    end
  end
  return outcome
end

local first, per_item = 4, 3
if clustered then first, per_item = 5, 1 end
local items = (#KEYS - first + 1) / per_item
-- Refuse the whole batch before writing anything if an item is malformed.
for i = 0, items - 1 do
  local outcome = ARGV[27 + i * 11]
  if not known[outcome] then return redis.error_reply('unknown outcome ' .. tostring(outcome)) end
end
local results = {}
for i = 0, items - 1 do
  local k, a = first + i * per_item, 26 + i * 11
  if clustered then
    results[#results + 1] = finish(KEYS[k], ARGV[a + 10], nil, a)
  else
    results[#results + 1] = finish(KEYS[k], KEYS[k + 1], KEYS[k + 2], a)
  end
end
for sub in pairs(succeeded) do write_success(sub) end
if #acks > 0 then
  redis.call('XACK', KEYS[1], group, unpack(acks))
  redis.call('XDEL', KEYS[1], unpack(acks))
end
return results
