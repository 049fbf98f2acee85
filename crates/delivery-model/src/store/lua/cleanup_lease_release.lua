-- Releases the cleanup lease if this replica holds it (compare-and-delete): a replica whose lease expired
-- and was taken by another must not delete the new holder's.
-- KEYS[1] lease key
-- ARGV[1] token
-- Returns 1 when released, 0 when it was not ours.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
