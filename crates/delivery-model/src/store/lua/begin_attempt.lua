-- Takes the lease of a pending delivery for one attempt and returns the record and its subscription.
-- KEYS[1] delivery hash
-- ARGV[1] now (us), ARGV[2] lease token, ARGV[3] lease until (us), ARGV[4] due tolerance (us),
-- ARGV[5] subscription-key prefix (the subscription is read here to save the worker a round trip; Hookline
-- runs on a single Redis node, where a script may read a key it derives)
-- Returns {'missing'} | {'done', status} | {'busy'} | {'not_due', next_retry_at}
--       | {'go', {record field, value, …}, {subscription field, value, …}}
local h = redis.call('HMGET', KEYS[1], 'status', 'lease', 'lease_until', 'next_retry_at', 'subscription_id')
if not h[1] then return {'missing'} end
if h[1] ~= 'pending' then return {'done', h[1]} end
local now = tonumber(ARGV[1])
if h[2] and h[2] ~= ARGV[2] and tonumber(h[3] or '0') > now then return {'busy'} end
if h[4] and tonumber(h[4]) > now + tonumber(ARGV[4]) then return {'not_due', h[4]} end
redis.call('HSET', KEYS[1], 'lease', ARGV[2], 'lease_until', ARGV[3])
return {'go', redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', ARGV[5] .. (h[5] or ''))}
