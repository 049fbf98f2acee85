-- The first step of a request carrying an Idempotency-Key: claims the key for a first request, or says what
-- became of an earlier one. A replay also writes (HINCRBY): that write replicates after everything the first
-- request wrote, so the caller's WAIT on this connection confirms those writes too.
-- KEYS[1] idempotency hash
-- ARGV[1] request fingerprint, ARGV[2] lease of a first request in flight (ms)
-- Returns {'new'} (claimed), {'pending'} (a first request is in flight), {'mismatch'} (the key was used for
-- another request), or {'done', status, body} (the stored first answer).
local h = redis.call('HMGET', KEYS[1], 'fp', 'state', 'status', 'body')
if not h[1] then
  redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'state', 'pending')
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {'new'}
end
if h[1] ~= ARGV[1] then return {'mismatch'} end
if h[2] ~= 'done' then return {'pending'} end
redis.call('HINCRBY', KEYS[1], 'replays', 1)
return {'done', h[3], h[4]}
