-- Renews the cleanup lease if this replica still holds it, and only then records where its walks stand, so
-- a replica that lost the lease can never move another one's cursors.
-- KEYS[1] lease key, KEYS[2] state hash
-- ARGV[1] token, ARGV[2] lease TTL (ms), then field/value pairs for the state hash (possibly none)
-- Returns 1 when renewed (and saved), 0 when the lease is gone or someone else's.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if #ARGV > 2 then
  local fields = {}
  for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
  redis.call('HSET', KEYS[2], unpack(fields))
end
return 1
