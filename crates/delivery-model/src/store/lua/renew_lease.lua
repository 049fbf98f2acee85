-- Renews an attempt's lease if it is still the record's and still pending: an attempt that waited for a slot
-- of its host renews it before it sends, so the request that follows has a whole lease ahead of it.
-- KEYS[1] delivery hash
-- ARGV[1] lease token, ARGV[2] new lease_until (us)
-- Returns 1 if renewed, 0 if the lease is no longer this attempt's (the record is gone, finished, or leased
-- by another attempt since).
if redis.call('HGET', KEYS[1], 'lease') ~= ARGV[1] or redis.call('HGET', KEYS[1], 'status') ~= 'pending' then
  return 0
end
redis.call('HSET', KEYS[1], 'lease_until', ARGV[2])
return 1
