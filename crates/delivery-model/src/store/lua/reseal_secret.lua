-- Replaces one sealed field of a subscription (its secret or its signing key) only if it is still the value
-- the caller read (compare-and-set), so a re-encryption racing a delete or a rewrite never resurrects or
-- clobbers anything.
-- KEYS[1] subscription hash; ARGV[1] the stored value read; ARGV[2] the new sealed value; ARGV[3] the field.
-- Returns 1 when replaced, 0 when the record changed or is gone.
if redis.call('HGET', KEYS[1], ARGV[3]) == ARGV[1] then
  redis.call('HSET', KEYS[1], ARGV[3], ARGV[2])
  return 1
end
return 0
