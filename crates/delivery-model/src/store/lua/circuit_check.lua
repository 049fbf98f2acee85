-- Asks a destination host's circuit breaker whether an attempt may go now. Shared by every worker replica.
-- KEYS[1] circuit hash (fields: failures, opens, open_until (ms), probe_until (ms))
-- ARGV[1] now (ms), ARGV[2] how long a half-open probe holds the circuit (ms)
-- Returns {'closed'} | {'probe'} (half-open: this attempt is the single probe) | {'open', retry_at_ms}
local h = redis.call('HMGET', KEYS[1], 'open_until', 'probe_until')
local open_until = tonumber(h[1] or '0')
if open_until == 0 then return {'closed'} end
local now = tonumber(ARGV[1])
if open_until > now then return {'open', tostring(open_until)} end
local probe_until = tonumber(h[2] or '0')
if probe_until > now then return {'open', tostring(probe_until)} end
redis.call('HSET', KEYS[1], 'probe_until', now + tonumber(ARGV[2]))
return {'probe'}
