-- FIFO lanes (issue #18, docs/flow.md §2). A lane is a ZSET of its deliveries scored by their input entry's
-- position (`lane_score`: entry ms * 1000 + sequence), so deliveries fanned out by several consumer replicas
-- in any order still line up in input order. At most one delivery of a lane is out (on the queue, on the
-- schedule, in flight, or failed and blocking): the lanes HASH names it. The next one goes out when the one
-- out is terminal (delivered; failed, unless its subscription blocks lanes on failure) — and only once the
-- input watermark has passed it: every input entry before the watermark has been fanned out, so nothing
-- earlier can still join the lane. A lane with nothing out that waits for the watermark is held, and is
-- released by whoever raises the watermark (fan-out on one node, the consumer after its acknowledgement on a
-- cluster, cleanup's sweep). A lane's keys, its records and the queue are of one shard: every move is one
-- atomic script.
-- A delivery of a lane has the record fields `lane` (its lane id), `lane_score` and, when its subscription
-- blocks lanes on failure, `lane_block` = '1'.
-- `lane` = {prefix (of the lane ZSETs), lanes (HASH lane id -> delivery out, '' when none), held (ZSET lane id
-- -> score of its first delivery, for lanes waiting on the watermark), low (STRING: the watermark score),
-- records (delivery-key prefix), ttl (s, the terminal TTL: a lane outlives the records it names), pre and post
-- (a delivery's queue message is pre .. id .. post), field (the queue's message field), queue (the queue
-- stream)}.

-- The lane context from the 9 arguments a Rust caller passes from ARGV[a] (Store::lane_args).
local function lane_ctx(queue, a)
  return {prefix = ARGV[a], lanes = ARGV[a + 1], held = ARGV[a + 2], low = ARGV[a + 3],
    records = ARGV[a + 4], ttl = ARGV[a + 5], pre = ARGV[a + 6], post = ARGV[a + 7], field = ARGV[a + 8],
    queue = queue}
end

-- Scores are integers up to ~2e15: never let Lua print them in its 14-digit %g form.
local function lane_num(n)
  return string.format('%.0f', n)
end

local function lane_low(lane)
  return tonumber(redis.call('GET', lane.low) or '0')
end

-- Nothing of lane `name` is out: sends its first delivery if the watermark has passed it, else holds the
-- lane. Drops deliveries that are no longer pending (failed by a disable, expired).
local function lane_next(lane, name, low)
  local key = lane.prefix .. name
  while true do
    local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    if #first == 0 then
      redis.call('HDEL', lane.lanes, name)
      redis.call('ZREM', lane.held, name)
      return
    end
    local id, score = first[1], tonumber(first[2])
    if redis.call('HGET', lane.records .. id, 'status') ~= 'pending' then
      redis.call('ZREM', key, id)
    elseif score < low then
      redis.call('HSET', lane.lanes, name, id)
      redis.call('ZREM', lane.held, name)
      redis.call('XADD', lane.queue, '*', lane.field, lane.pre .. id .. lane.post)
      redis.call('EXPIRE', key, lane.ttl)
      return
    else
      redis.call('HSET', lane.lanes, name, '')
      redis.call('ZADD', lane.held, first[2], name)
      return
    end
  end
end

-- Adds delivery `id` (input position `score`, a string) to lane `name`; sends it at once if it is first
-- and the watermark `low` allows.
local function lane_push(lane, name, id, score, low)
  local key = lane.prefix .. name
  redis.call('ZADD', key, score, id)
  redis.call('EXPIRE', key, lane.ttl)
  local out = redis.call('HGET', lane.lanes, name)
  if not out or out == '' then lane_next(lane, name, low) end
end

-- A new delivery `id` (record `record`) of lane `name` joins it at input position `score` (fan-out): the record
-- learns its lane, and the delivery goes at once if it is first and the watermark `low` allows. A lane's
-- delivery bypasses fair sharing: a lane never has more than one message out. Returns 1 when the delivery
-- waits behind an earlier one of its lane, else 0: the consumer counts these lane deferrals. (A first
-- delivery held only until the watermark passes it is not one: the fan-out's own acknowledgement raises the
-- watermark.)
local function lane_join(lane, record, name, block, id, score, low)
  redis.call('HSET', record, 'lane', name, 'lane_score', score)
  if block == '1' then redis.call('HSET', record, 'lane_block', '1') end
  lane_push(lane, name, id, score, low)
  if (redis.call('ZRANK', lane.prefix .. name, id) or 0) > 0 then return 1 end
  return 0
end

-- Delivery `id` of lane `name` is done with: if it is the one out, the lane moves on. Returns true when it
-- did.
local function lane_advance(lane, name, id)
  if redis.call('HGET', lane.lanes, name) ~= id then return false end
  redis.call('ZREM', lane.prefix .. name, id)
  redis.call('HSET', lane.lanes, name, '')
  lane_next(lane, name, lane_low(lane))
  return true
end

-- Raises the watermark to `low` (never lowers it) and sends the first delivery of every held lane it
-- passed. Returns how many lanes it looked at.
local function lane_watermark(lane, low)
  local cur = lane_low(lane)
  if low > cur then redis.call('SET', lane.low, lane_num(low)) else low = cur end
  local due = redis.call('ZRANGEBYSCORE', lane.held, '-inf', '(' .. lane_num(low), 'LIMIT', 0, 1000)
  for _, name in ipairs(due) do lane_next(lane, name, low) end
  return #due
end

-- Whether a terminal `status` of a record whose `lane_block` field is `block` moves its lane on: a delivered
-- delivery always does; a failed one unless its subscription blocks lanes on failure.
local function lane_moves_on(status, block)
  return status == 'delivered' or block ~= '1'
end

-- The lane score of input entry id `id` (`ms-seq`): ms * 1000 + seq (a sequence past 999 within one
-- millisecond counts as 999: order among those is not kept).
local function lane_entry_score(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  if not ms then return 0 end
  return tonumber(ms) * 1000 + math.min(tonumber(seq), 999)
end

-- The watermark group `group` of input stream `stream` allows (one node, where the input stream shares the
-- script's slot): the first entry still pending, or, with none pending, just past the last one delivered.
-- Without the group (Redis lost it with its data; the consumer recreates it) nothing is known: 0, which
-- raises nothing.
local function lane_input_low(stream, group)
  local p = redis.pcall('XPENDING', stream, group)
  if type(p) ~= 'table' or p.err then return 0 end
  if tonumber(p[1]) > 0 then return lane_entry_score(p[2]) end
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    local info = {}
    for j = 1, #g, 2 do info[g[j]] = g[j + 1] end
    if info.name == group then return lane_entry_score(info['last-delivered-id']) + 1 end
  end
  return 0
end
