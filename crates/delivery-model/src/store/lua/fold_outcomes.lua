-- Folds one shard's subscription counter effects (its `sub_outcomes` stream, cluster mode only) into the
-- subscriptions, exactly once: the effects apply only if the shard's watermark still names the entry the
-- caller read after, and the watermark moves to the last entry in the same step. A concurrent folder that
-- lost the race changes nothing and reads again from the new watermark; a crash after this script loses
-- nothing (the watermark says what was applied). docs/cluster.md §4.3 gives the rules and their bound.
-- KEYS[1] watermarks hash (field: shard index, value: last folded entry id)
-- ARGV[1] shard index, ARGV[2] watermark read ('' = none yet), ARGV[3] last entry id folded now,
-- ARGV[4] subscription key prefix, ARGV[5] permanent failures in a row that disable a subscription
-- (0 = never), ARGV[6] for how long it must also have had no success (us), ARGV[7] subscription status-set
-- prefix, ARGV[8] event-set prefix, ARGV[9] match-generation key, then per entry (3 each): subscription id,
-- kind (success|failure|gone|stale|callback_delivered), time (us)
-- Returns {0} when the watermark had moved (nothing written), else {1, then per subscription this fold
-- disabled (endpoint health): its id, the reason}.
local wm = redis.call('HGET', KEYS[1], ARGV[1])
if not wm then wm = '' end
if wm ~= ARGV[2] then return {0} end
local health = {threshold = tonumber(ARGV[5]), failing_for = tonumber(ARGV[6]), status_prefix = ARGV[7],
  event_prefix = ARGV[8], generation = ARGV[9]}
local out = {1}
for i = 10, #ARGV, 3 do
  local sub, kind, t = ARGV[4] .. ARGV[i], ARGV[i + 1], ARGV[i + 2]
  -- A deleted subscription is never recreated as a stub.
  if redis.call('EXISTS', sub) == 1 then
    local h = redis.call('HMGET', sub, 'last_successful_use', 'last_failure_at')
    local at = tonumber(t)
    local last_success, last_failure = tonumber(h[1] or '0') or 0, tonumber(h[2] or '0') or 0
    -- Effects of one instant keep their stream order: a success and a failure at the same time both count.
    if kind == 'success' then
      if at > last_success then redis.call('HSET', sub, 'last_successful_use', t) end
      if at >= last_failure then redis.call('HSET', sub, 'publication_failures', '0') end
    elseif kind == 'failure' or kind == 'gone' or kind == 'stale' then
      -- A failure older than the last success (from another shard) is already outdone by it.
      if at >= last_success then
        local failures = redis.call('HINCRBY', sub, 'publication_failures', 1)
        if at > last_failure then redis.call('HSET', sub, 'last_failure_at', t) end
        -- Endpoint health, as the outcome script applies it on one node (a stale callback only counts).
        health.now = t
        local reason
        if kind == 'gone' and disable(sub, 'gone', health) then
          reason = 'gone'
        elseif kind == 'failure' and failing(sub, failures, health) then
          reason = 'failing'
        end
        if reason then
          out[#out + 1] = ARGV[i]
          out[#out + 1] = reason
        end
      end
    elseif kind == 'callback_delivered' then
      redis.call('HSET', sub, 'timeout_count', '0')
    end
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return out
