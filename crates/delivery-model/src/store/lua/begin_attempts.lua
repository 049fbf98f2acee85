-- Takes the leases of a batch of pending deliveries, one attempt each, and returns every record with its
-- subscription (read once per batch however many of its deliveries the batch holds). Entries that are no
-- longer work (record gone, already out of `pending`, or scheduled for later) are acknowledged and deleted
-- from the queue here, so a read batch costs one script whatever it holds. A 'not_due' entry (promoted early by
-- a worker whose clock runs ahead) goes back on the schedule at the record's due time in the same step, so
-- acknowledging it never loses the delivery (NX: a schedule entry already there is left as it is).
-- On a single Redis node the script reads the subscriptions it derives from the records; on a cluster they
-- are in another slot (docs/cluster.md §4.2), so the caller passes no prefix and reads them itself.
-- Fair sharing (lib/fair.lua) counts a subscription's entries waiting to be read, so an entry gives its place
-- to its subscription's oldest parked delivery as soon as it is leased or acknowledged here (an attempt in
-- flight no longer stands in anyone's way: a subscription alone still gets all the concurrency the worker
-- and its host allow). The record of a 'missing' entry no longer names its subscription: cleanup's fair
-- sweep frees that place later.
-- KEYS[1] queue stream, KEYS[2] schedule zset (score: due time in ms), KEYS[3] fair parking set,
-- KEYS[4..] delivery hashes
-- ARGV[1] now (us), ARGV[2] lease until (us), ARGV[3] due tolerance (us), ARGV[4] subscription-key prefix
-- ('' = read none: subscriptions is then empty),
-- ARGV[5] queue group, ARGV[6] fair share (0 = off), ARGV[7] fair queued prefix, ARGV[8] fair parked
-- prefix, ARGV[9] now (ms), ARGV[10] active TTL (s), ARGV[11] queue message field, then per delivery: lease
-- token, queue entry id ('' = acknowledge nothing), its queue message (what goes back on the schedule)
-- Returns {results, subscriptions}: results[i] is {'missing'} | {'done', status} | {'busy'}
--   | {'not_due', next_retry_at} | {'go', {record field, value, …}}; subscriptions is
--   {subscription id, {field, value, …}, …} for the subscriptions of the 'go' records.
local now, lease_until, tolerance = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local results, subs, seen, acks = {}, {}, {}, {}
local fair = {share = tonumber(ARGV[6]), queued = ARGV[7], parked = ARGV[8], parking = KEYS[3],
  queue = KEYS[1], field = ARGV[11], now_ms = ARGV[9], ttl = ARGV[10]}
local released = {}
for i = 4, #KEYS do
  local key = KEYS[i]
  local base = 12 + (i - 4) * 3
  local token, entry, msg = ARGV[base], ARGV[base + 1], ARGV[base + 2]
  -- One read of the whole record: the checks need five fields and an attempt needs all of them.
  local flat = redis.call('HGETALL', key)
  local h = {}
  for j = 1, #flat, 2 do h[flat[j]] = flat[j + 1] end
  local r
  if #flat == 0 then
    r = {'missing'}
  elseif h.status ~= 'pending' then
    r = {'done', h.status or ''}
  elseif h.lease and h.lease ~= token and tonumber(h.lease_until or '0') > now then
    r = {'busy'}
  elseif h.next_retry_at and tonumber(h.next_retry_at) > now + tolerance then
    r = {'not_due', h.next_retry_at}
    if entry ~= '' then
      redis.call('ZADD', KEYS[2], 'NX', math.ceil(tonumber(h.next_retry_at) / 1000), msg)
    end
  else
    redis.call('HSET', key, 'lease', token, 'lease_until', lease_until)
    local sub = h.subscription_id or ''
    if ARGV[4] ~= '' and not seen[sub] then
      seen[sub] = true
      subs[#subs + 1] = sub
      subs[#subs + 1] = redis.call('HGETALL', ARGV[4] .. sub)
    end
    -- The record as read (its lease fields are internal and not part of what the caller decodes).
    r = {'go', flat}
  end
  -- A busy entry stays pending: the live lease's holder may die, and then its entry is reclaimed.
  if r[1] ~= 'go' and r[1] ~= 'busy' and entry ~= '' then acks[#acks + 1] = entry end
  if r[1] ~= 'busy' and entry ~= '' and h.subscription_id then
    released[#released + 1] = {h.subscription_id, msg}
  end
  results[#results + 1] = r
end
if #acks > 0 then
  redis.call('XACK', KEYS[1], ARGV[5], unpack(acks))
  redis.call('XDEL', KEYS[1], unpack(acks))
end
for _, r in ipairs(released) do fair_release(fair, r[1], r[2]) end
return {results, subs}
