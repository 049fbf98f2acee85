-- Sets or clears a subscription's limits (issue #18), only if it exists (a deleted subscription is never
-- recreated as a stub). Slot-safe: one control key.
-- KEYS[1] subscription hash
-- ARGV[1] now (us), then (field, value) pairs: an empty value deletes the field
-- Returns 1 when changed, 0 when the subscription does not exist.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'modified_at', ARGV[1])
for i = 2, #ARGV, 2 do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', KEYS[1], ARGV[i])
  else
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
return 1
