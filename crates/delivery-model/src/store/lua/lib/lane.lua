-- FIFO lanes (issue #18, docs/flow.md §2): a lane is a LIST of delivery ids in input order, head first. Only
-- the head is ever on the queue or the schedule; the others are `pending` records that wait. The head leaves
-- the lane when it is terminal (delivered; failed, unless the subscription blocks its lanes on failure), and
-- the next still-pending delivery is queued in the same step. A lane's state, its records and the queue are
-- of one shard, so every move is one atomic script.
-- A delivery of a lane has the record fields `lane` (its lane id) and, when its subscription blocks lanes on
-- failure, `lane_block` = '1'.
-- `lane` = {prefix (of the lane LISTs), set (the shard's SET of non-empty lanes), records (delivery-key
-- prefix), ttl (s, the terminal TTL: a lane outlives the records it names), pre and post (a delivery's queue
-- message is pre .. id .. post), field (the queue's message field), queue (the queue stream)}.

-- The lane context from the 7 arguments a Rust caller passes from ARGV[a] (Store::lane_args).
local function lane_ctx(queue, a)
  return {prefix = ARGV[a], set = ARGV[a + 1], records = ARGV[a + 2], ttl = ARGV[a + 3],
    pre = ARGV[a + 4], post = ARGV[a + 5], field = ARGV[a + 6], queue = queue}
end

-- Queues the lane's head if it is pending, dropping heads that are not (failed by a disable, expired).
local function lane_release(lane, name)
  local key = lane.prefix .. name
  while true do
    local head = redis.call('LINDEX', key, 0)
    if not head then
      redis.call('SREM', lane.set, name)
      return
    end
    if redis.call('HGET', lane.records .. head, 'status') == 'pending' then
      redis.call('XADD', lane.queue, '*', lane.field, lane.pre .. head .. lane.post)
      redis.call('EXPIRE', key, lane.ttl)
      return
    end
    redis.call('LPOP', key)
  end
end

-- Appends delivery `id` to lane `name`. Returns true when it is the head: the caller queues it.
local function lane_push(lane, name, id)
  local key = lane.prefix .. name
  local n = redis.call('RPUSH', key, id)
  redis.call('EXPIRE', key, lane.ttl)
  if n == 1 then redis.call('SADD', lane.set, name) end
  return n == 1
end

-- Delivery `id` of lane `name` is done with: if it is the head, the lane moves on. Returns true when it did.
local function lane_advance(lane, name, id)
  local key = lane.prefix .. name
  if redis.call('LINDEX', key, 0) ~= id then return false end
  redis.call('LPOP', key)
  lane_release(lane, name)
  return true
end

-- Whether a terminal `status` of a record with lane fields `h_block` moves its lane on: a delivered head
-- always does; a failed one unless its subscription blocks lanes on failure.
local function lane_moves_on(status, h_block)
  return status == 'delivered' or h_block ~= '1'
end
