-- Reads the input watermark (lib/lane.lua `lane_input_low`) in one step: the first entry still pending, or,
-- with none pending, just past the last one delivered to the group. The two reads must be atomic: between a
-- summary that shows nothing pending and a read of the group's last delivered id, a consumer could read
-- (and not yet fan out) new entries, and the watermark would pass them (a lane would then send a later
-- delivery first; seen on a cluster, where the consumer once made the two reads itself).
-- KEYS[1] input stream
-- ARGV[1] consumer group
-- Returns the watermark score, or 0 when the stream or group is missing.
return lane_input_low(KEYS[1], ARGV[1])
