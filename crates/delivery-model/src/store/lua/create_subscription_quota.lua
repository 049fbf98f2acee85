-- Creates a subscription within its owner's quota, atomically: the subscription count, then the per-minute
-- and per-day windows of successful creates (TMI's order and key names), then the subscription with its
-- indexes and first challenge (as create_subscription.lua does), then one entry in each window. Only a
-- create that happens is counted (TMI counts every attempt, even one later refused for a bad body), and two
-- concurrent creates cannot both pass a limit.
-- KEYS[1] subscription hash, KEYS[2] all-subscriptions zset, KEYS[3] owner set, KEYS[4] status set,
-- KEYS[5] queue stream, KEYS[6] per-minute window zset, KEYS[7] per-day window zset,
-- KEYS[8] threat-model zset (only when ARGV[4] == '1')
-- ARGV[1] id, ARGV[2] score (created ms), ARGV[3] queue message field, ARGV[4] has threat model ('1'/'0'),
-- ARGV[5] challenge message ('' to enqueue none), ARGV[6] now (unix s), ARGV[7] window member
-- ("<unix>:<unixnano>"), ARGV[8] max subscriptions, ARGV[9] per-minute limit, ARGV[10] per-day limit,
-- ARGV[11..] subscription field/value pairs
-- Returns {kind, current, minute count, oldest minute entry (unix s, '' when none), oldest entry of the
-- refusing window ('' when none)} with kind 'created' | 'count' | 'minute' | 'day' | 'exists'; `current` is
-- the count the refusing limit saw (after the create: the minute count).
local MINUTE, DAY = 60, 86400
local now = tonumber(ARGV[6])
redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now - MINUTE)
redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', now - DAY)

local function oldest(key)
  local o = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  return o[2] or ''
end
local minute = redis.call('ZCARD', KEYS[6])

local owned = redis.call('SCARD', KEYS[3])
if owned >= tonumber(ARGV[8]) then
  return {'count', tostring(owned), tostring(minute), oldest(KEYS[6]), ''}
end
if minute >= tonumber(ARGV[9]) then
  local o = oldest(KEYS[6])
  return {'minute', tostring(minute), tostring(minute), o, o}
end
local day = redis.call('ZCARD', KEYS[7])
if day >= tonumber(ARGV[10]) then
  return {'day', tostring(day), tostring(minute), oldest(KEYS[6]), oldest(KEYS[7])}
end

if redis.call('EXISTS', KEYS[1]) == 1 then
  return {'exists', '0', tostring(minute), oldest(KEYS[6]), ''}
end
local fields = {}
for i = 11, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[1])
if ARGV[4] == '1' then redis.call('ZADD', KEYS[8], ARGV[2], ARGV[1]) end
if ARGV[5] ~= '' then redis.call('XADD', KEYS[5], '*', ARGV[3], ARGV[5]) end

-- TMI's TTLs: the window plus a minute after the last entry.
redis.call('ZADD', KEYS[6], now, ARGV[7])
redis.call('EXPIRE', KEYS[6], MINUTE + 60)
redis.call('ZADD', KEYS[7], now, ARGV[7])
redis.call('EXPIRE', KEYS[7], DAY + 60)
return {'created', tostring(minute + 1), tostring(minute + 1), oldest(KEYS[6]), ''}
