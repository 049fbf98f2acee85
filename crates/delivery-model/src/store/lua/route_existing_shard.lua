-- Cluster mode: routes a pre-created delivery (an addon invocation) to its shard's queue, once. The input
-- entry is acknowledged by the caller afterwards (another slot), so a crash in between makes the entry come
-- back: the record's `routed` flag, set in the same step as the queue entry, makes that second pass enqueue
-- nothing (docs/cluster.md §3).
-- KEYS[1] delivery hash, KEYS[2] shard queue stream
-- ARGV[1] queue message field, ARGV[2] queue message
-- Returns 1 when enqueued, 0 when the record is gone, no longer pending or already routed.
if redis.call('HGET', KEYS[1], 'status') == 'pending' and redis.call('HSETNX', KEYS[1], 'routed', '1') == 1 then
  redis.call('XADD', KEYS[2], '*', ARGV[1], ARGV[2])
  return 1
end
return 0
