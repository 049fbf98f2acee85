-- Trims a stream below a floor computed from its consumer groups, if that floor still holds: no group's
-- last-delivered id and no group's oldest pending entry may be below it (a group created or rewound since
-- the floor was computed makes this a no-op). At most a limit of entries goes per call.
-- KEYS[1] stream
-- ARGV[1] floor id (entries strictly below it go), ARGV[2] limit
-- Returns {removed, more (1 when the limit cut the trim short)}, or {-1, 0} when the floor no longer holds.
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms or '0'), tonumber(seq or '0')
end
local function below(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  return am < bm or (am == bm and as < bs)
end
local floor = ARGV[1]
local groups = redis.pcall('XINFO', 'GROUPS', KEYS[1])
if type(groups) ~= 'table' or groups.err or #groups == 0 then return {-1, 0} end
for _, g in ipairs(groups) do
  local name, last
  for i = 1, #g, 2 do
    if g[i] == 'name' then name = g[i + 1] elseif g[i] == 'last-delivered-id' then last = g[i + 1] end
  end
  if not name or not last or below(last, floor) then return {-1, 0} end
  local p = redis.call('XPENDING', KEYS[1], name)
  if p[1] > 0 and below(p[2], floor) then return {-1, 0} end
end
local limit = tonumber(ARGV[2])
local head = redis.call('XRANGE', KEYS[1], '-', '(' .. floor, 'COUNT', limit + 1)
local more = 0
if #head > limit then
  floor = head[#head][1]
  more = 1
end
return {redis.call('XTRIM', KEYS[1], 'MINID', floor), more}
