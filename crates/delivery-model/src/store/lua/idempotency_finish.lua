-- Stores the first answer of a request carrying an Idempotency-Key, kept for the idempotency window.
-- KEYS[1] idempotency hash
-- ARGV[1] request fingerprint, ARGV[2] HTTP status, ARGV[3] answer body, ARGV[4] window (ms)
-- Returns 1.
redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'state', 'done', 'status', ARGV[2], 'body', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
