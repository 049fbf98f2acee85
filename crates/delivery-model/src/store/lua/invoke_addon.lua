-- Invokes an add-on for one user, atomically: the active-invocation limit, the hourly limit, the
-- duplicate check, the hourly record, the delivery record with its indexes and the `addon.invoked` input
-- entry naming it. Two concurrent invocations therefore cannot both pass a limit, and a refused call writes
-- nothing — in particular a refused duplicate does not consume hourly quota (TMI records the hourly entry
-- before its duplicate check). (A refusal may still prune finished deliveries from the active set.)
-- KEYS[1] add-on hash, KEYS[2] the user's hourly zset, KEYS[3] the user's dedup key for this add-on,
-- KEYS[4] the user's active-invocation zset, KEYS[5] delivery hash, KEYS[6] input stream,
-- KEYS[7..] delivery index zsets (score = created ms)
-- ARGV[1] now (unix s), ARGV[2] hourly member ("<unix>:<unixnano>"), ARGV[3] active limit,
-- ARGV[4] hourly limit, ARGV[5] dedup window (s), ARGV[6] hourly window (s), ARGV[7] hourly zset TTL (s),
-- ARGV[8] delivery-key prefix, ARGV[9] active zset TTL (s), ARGV[10] record TTL (s), ARGV[11] score,
-- ARGV[12] delivery id, ARGV[13] number of record field/value pairs (n), ARGV[14 .. 13+2n] record pairs,
-- then the input entry's field/value pairs
-- Returns {'created'} | {'gone'} (no such add-on) | {'exists'} (the delivery id is taken)
--       | {'active', current, then per active delivery: id, addon_id, status, created_at, last_activity_at}
--       | {'hourly', current, oldest entry's score (unix s)} | {'duplicate'}
if redis.call('EXISTS', KEYS[1]) == 0 then return {'gone'} end
if redis.call('EXISTS', KEYS[5]) == 1 then return {'exists'} end

-- Active: the user's addon deliveries still pending or in progress; the others leave the set here.
local active = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do
  local r = redis.call('HMGET', ARGV[8] .. id, 'status', 'addon_id', 'created_at', 'last_activity_at')
  if r[1] == 'pending' or r[1] == 'in_progress' then
    active[#active + 1] = {id, r[2] or '', r[1], r[3] or '0', r[4] or '0'}
  else
    redis.call('ZREM', KEYS[4], id)
  end
end
if #active >= tonumber(ARGV[3]) then
  local out = {'active', tostring(#active)}
  for _, a in ipairs(active) do
    for _, v in ipairs(a) do out[#out + 1] = v end
  end
  return out
end

-- The hourly window and the duplicate key (lib/invoke_window.lua), recording the hourly entry on a pass.
local refused = invoke_window_of(KEYS, ARGV)
if refused then return refused end

local n = tonumber(ARGV[13])
local fields = {}
for i = 14, 13 + 2 * n do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[5], unpack(fields))
redis.call('EXPIRE', KEYS[5], ARGV[10])
for i = 7, #KEYS do redis.call('ZADD', KEYS[i], ARGV[11], ARGV[12]) end
redis.call('ZADD', KEYS[4], ARGV[11], ARGV[12])
redis.call('EXPIRE', KEYS[4], ARGV[9])
local entry = {}
for i = 14 + 2 * n, #ARGV do entry[#entry + 1] = ARGV[i] end
redis.call('XADD', KEYS[6], '*', unpack(entry))
return {'created'}
