-- Gives up a claim whose first request failed before writing anything, so that a retry runs afresh. A key
-- whose answer is stored is left alone.
-- KEYS[1] idempotency hash
-- ARGV[1] request fingerprint
-- Returns 1 if the claim was released, 0 otherwise.
local h = redis.call('HMGET', KEYS[1], 'fp', 'state')
if h[1] == ARGV[1] and h[2] == 'pending' then return redis.call('DEL', KEYS[1]) end
return 0
