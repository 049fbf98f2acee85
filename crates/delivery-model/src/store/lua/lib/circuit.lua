-- The circuit breaker's update, shared by finish_attempts (one node: in the outcome's own script) and
-- circuit_update (a cluster: the host's hash has no tag, so it gets its own single-key script).
-- A success closes the circuit; failures count up and open it for the next window; a failed half-open
-- probe (the window has passed) reopens it at once. `circuit_closed` remembers the circuits this call has
-- already closed, so a batch deletes each once.
local circuit_closed = {}
-- key: circuit hash; result: success|failure|none; now_ms; threshold: failures that open it;
-- windows: open windows (ms) by opening; ttl: seconds an idle circuit hash lives.
local function circuit(key, result, now_ms, threshold, windows, ttl)
  if result == 'success' then
    if not circuit_closed[key] then redis.call('DEL', key) circuit_closed[key] = true end
    return
  end
  if result ~= 'failure' then return end
  circuit_closed[key] = nil
  local c = redis.call('HMGET', key, 'failures', 'opens', 'open_until')
  local failures = tonumber(c[1] or '0') + 1
  local opens = tonumber(c[2] or '0')
  local open_until = tonumber(c[3] or '0')
  if (open_until > 0 and open_until <= now_ms) or failures >= threshold then
    local window = windows[math.min(opens + 1, #windows)] or 60000
    redis.call('HSET', key, 'failures', 0, 'opens', opens + 1, 'open_until', now_ms + window, 'probe_until', 0)
  else
    redis.call('HSET', key, 'failures', failures)
  end
  redis.call('EXPIRE', key, ttl)
end

-- The open windows, from their comma-separated form.
local function circuit_windows(csv)
  local windows = {}
  for w in string.gmatch(csv, '[^,]+') do windows[#windows + 1] = tonumber(w) end
  return windows
end

