-- Add-on invocation limits (issue #3) shared by invoke_addon (one node: the whole invocation in one step)
-- and invoke_reserve (a cluster: the reservation on the control slot). After the active-invocation limit,
-- which each script counts its own way: the hourly sliding window, then the duplicate key; on a pass the
-- hourly entry is recorded. A refused duplicate therefore consumes no hourly quota (TMI records the hourly
-- entry before its duplicate check).
-- `w` = {hourly (the user's hourly zset), dedup (the user's dedup key for this add-on), now (unix s),
-- member (the hourly entry), limit (hourly), dedup_window (s), window (s), ttl (s, of the hourly zset)}
-- Returns nil on a pass, else the refusal reply: {'hourly', current, oldest entry's score} | {'duplicate'}.
local function invoke_window(w)
  redis.call('ZREMRANGEBYSCORE', w.hourly, '-inf', w.now - w.window)
  local count = redis.call('ZCARD', w.hourly)
  if count >= w.limit then
    local oldest = redis.call('ZRANGE', w.hourly, 0, 0, 'WITHSCORES')
    return {'hourly', tostring(count), oldest[2] or tostring(w.now)}
  end
  if not redis.call('SET', w.dedup, '1', 'NX', 'EX', w.dedup_window) then return {'duplicate'} end
  redis.call('ZADD', w.hourly, w.now, w.member)
  redis.call('EXPIRE', w.hourly, w.ttl)
  return nil
end

-- The window of a script whose KEYS[2], KEYS[3] and ARGV[1], ARGV[2], ARGV[4] to ARGV[7] are as both
-- invocation scripts lay them out.
local function invoke_window_of(keys, argv)
  return invoke_window({hourly = keys[2], dedup = keys[3], now = tonumber(argv[1]), member = argv[2],
    limit = tonumber(argv[4]), dedup_window = argv[5], window = tonumber(argv[6]), ttl = argv[7]})
end
