#!lua flags=allow-oom
-- sched-redis: one worker's part of release_batch, atomic (runs when out of memory too: it
-- frees more than it writes).
-- Mirrors sched-core/src/rules.rs (the reference rule): a container held here goes back to free capacity (never
-- above the total), one version bump per container released; one not held here is a no-op.
-- KEYS[1] worker state hash, KEYS[2] worker ledger hash,
-- KEYS[3 .. 2+n] container index keys (standalone mode only).
-- ARGV[1] worker id, ARGV[2] 's' | 'c', ARGV[3 .. 2+n] container ids.
-- Returns one entry per container: 0 (not held here) or {cpu, mem, gpu, version}.
local st, led = KEYS[1], KEYS[2]
local wid = ARGV[1]
local standalone = ARGV[2] == 's'
local n = #ARGV - 2
local out = {}
local function fmt(x) return string.format('%.0f', x) end
if redis.call('EXISTS', st) == 0 then
  for i = 1, n do out[i] = 0 end
  return out
end
local s = redis.call('HMGET', st, 'v', 'fc', 'fm', 'fg', 'tc', 'tm', 'tg')
local v = tonumber(s[1])
local free = {tonumber(s[2]), tonumber(s[3]), tonumber(s[4])}
local total = {tonumber(s[5]), tonumber(s[6]), tonumber(s[7])}
local changed = false
for i = 1, n do
  local cid = ARGV[2 + i]
  local val = false
  if (not standalone) or redis.call('GET', KEYS[2 + i]) == wid then
    val = redis.call('HGET', led, cid)
  end
  if val then
    local c, m, g = string.match(val, '^(%d+) (%d+) (%d+)')
    local r = {tonumber(c), tonumber(m), tonumber(g)}
    redis.call('HDEL', led, cid)
    if standalone then redis.call('DEL', KEYS[2 + i]) end
    for k = 1, 3 do free[k] = math.min(free[k] + r[k], total[k]) end
    v = v + 1
    changed = true
    out[i] = {c, m, g, fmt(v)}
  else
    out[i] = 0
  end
end
if changed then
  redis.call('HSET', st, 'v', fmt(v), 'fc', fmt(free[1]), 'fm', fmt(free[2]), 'fg', fmt(free[3]))
end
return out
