-- Endpoint health (issue #18), shared by finish_attempts (one node: in the outcome's own fenced step) and
-- fold_outcomes (a cluster: where the subscription's effects are applied, in its slot).
-- `health` = {now (µs, text), threshold (failures in a row that may disable; 0 = never), failing_for (µs
-- without a success), status_prefix, event_prefix (the subscription sets), generation (the match-generation
-- key)}.

-- An active subscription becomes `inactive` with a reason (the values of `DisabledReason::as_str`), leaving
-- its status set and its event sets as set_subscription_status does. Returns true when it disabled.
local function disable(sub, reason, health)
  local h = redis.call('HMGET', sub, 'status', 'id', 'events')
  if h[1] ~= 'active' then return false end
  local id = h[2] or ''
  redis.call('HSET', sub, 'status', 'inactive', 'modified_at', health.now, 'disabled_reason', reason,
    'disabled_at', health.now)
  redis.call('SREM', health.status_prefix .. 'active', id)
  redis.call('SADD', health.status_prefix .. 'inactive', id)
  redis.call('INCR', health.generation)
  local ok, events = pcall(cjson.decode, h[3] or '[]')
  if ok and type(events) == 'table' then
    for _, e in ipairs(events) do redis.call('SREM', health.event_prefix .. e, id) end
  end
  return true
end

-- TMI's `publication_failures` rule made explicit: after a permanent failure, `threshold` of them in a row
-- and no success (or, never used, no creation) for `failing_for` disable the subscription.
local function failing(sub, failures, health)
  if health.threshold <= 0 or failures < health.threshold then return false end
  local h = redis.call('HMGET', sub, 'last_successful_use', 'created_at')
  local since = tonumber(h[1] or h[2] or '0') or 0
  if tonumber(health.now) - since < health.failing_for then return false end
  return disable(sub, 'failing', health)
end

