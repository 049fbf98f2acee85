-- One bounded step of the keyspace scan that finds per-subscription, per-event-type and per-addon delivery
-- indexes, adding their names to the registry cleanup prunes from. The record-creating scripts do not list
-- the index keys they create anywhere, so this scan is how cleanup learns of them (including the indexes of
-- deleted subscriptions and of event types no subscription names).
-- KEYS[1] index registry set
-- ARGV[1] SCAN cursor, ARGV[2] MATCH pattern, ARGV[3] COUNT, ARGV[4..] key prefixes of the index families
-- Returns {next cursor ('0' when the scan is complete), keys registered}.
local r = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', tonumber(ARGV[3]), 'TYPE', 'zset')
local added = 0
for _, key in ipairs(r[2]) do
  for i = 4, #ARGV do
    if string.sub(key, 1, #ARGV[i]) == ARGV[i] then
      added = added + redis.call('SADD', KEYS[1], key)
      break
    end
  end
end
return {r[1], added}
