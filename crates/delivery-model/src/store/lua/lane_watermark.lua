-- Raises one shard's FIFO lane watermark (issue #18) and sends the first delivery of every held lane it
-- passed: the consumer calls it after acknowledging input entries when the input stream is not in the
-- shard's slot (a cluster) or was acknowledged after the fan-out script (waiting for replicas); cleanup calls
-- it too, as a safety net. The caller read `low` after the acknowledgement (lib/lane.lua: every input entry
-- before it has been fanned out); a stale value is only lower, which raises less.
-- KEYS[1] queue stream
-- ARGV[1] the watermark score, ARGV[2..10] lane arguments (lib/lane.lua)
-- Returns the number of held lanes looked at.
return lane_watermark(lane_ctx(KEYS[1], 2), tonumber(ARGV[1]))
