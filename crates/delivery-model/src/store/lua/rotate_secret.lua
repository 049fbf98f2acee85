-- Rotates a subscription's secret as a compare-and-set on the stored (sealed) secret the caller read, so two
-- concurrent rotations cannot both win and a rotation never resurrects a deleted subscription.
-- KEYS[1] subscription hash.
-- ARGV[1] the stored secret read; ARGV[2] the new sealed secret; ARGV[3] the old secret sealed again, or ''
-- for no grace period; ARGV[4] the grace period's end (µs); ARGV[5] now (µs, modified_at).
-- Returns 1 when rotated, 0 when the record changed or is gone.
if redis.call('HGET', KEYS[1], 'secret') ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'secret', ARGV[2], 'modified_at', ARGV[5])
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[1], 'previous_secret', ARGV[3], 'previous_secret_until', ARGV[4])
else
  redis.call('HDEL', KEYS[1], 'previous_secret', 'previous_secret_until')
end
return 1
