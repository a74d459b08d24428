-- sched-redis: repair drift: free = total - sum(ledger), bumping the version if it changed.
-- Mirrors sched-core/src/rules.rs (the reference rule): the same repair, value for value.
-- KEYS[1] worker state hash, KEYS[2] worker ledger hash.
-- Returns false (unknown worker) or the snapshot taken before the repair, as snapshot.lua.
local st, led = KEYS[1], KEYS[2]
local function fmt(x) return string.format('%.0f', x) end
if redis.call('EXISTS', st) == 0 then return false end
local before = {redis.call('HGETALL', st), redis.call('HGETALL', led)}
local s = redis.call('HMGET', st, 'v', 'fc', 'fm', 'fg', 'tc', 'tm', 'tg')
local reserved = {0, 0, 0}
for _, val in ipairs(redis.call('HVALS', led)) do
  local c, m, g = string.match(val, '^(%d+) (%d+) (%d+)')
  reserved[1] = reserved[1] + tonumber(c)
  reserved[2] = reserved[2] + tonumber(m)
  reserved[3] = reserved[3] + tonumber(g)
end
local drift = false
local free = {}
for k = 1, 3 do
  local f, t = tonumber(s[1 + k]), tonumber(s[4 + k])
  if f + reserved[k] ~= t then drift = true end
  free[k] = math.max(t - reserved[k], 0)
end
if drift then
  redis.call('HSET', st, 'v', fmt(tonumber(s[1]) + 1), 'fc', fmt(free[1]), 'fm', fmt(free[2]),
    'fg', fmt(free[3]))
end
return before
