#!lua flags=allow-oom
-- sched-redis: expire_leases (ARGV[3] = 'expired') and release_worker (ARGV[3] = 'all'), one
-- worker's atomic section (runs when out of memory too: it frees more than it writes).
-- Mirrors sched-core/src/rules/lifecycle.rs (`WorkerState::sweep` with `expiry`, and
-- `WorkerState::release_all`), at the server's TIME in ms (`now`): an entry goes when its deadline
-- <= now ('lease_expired'), else when the worker is stale with stale policy 'release'
-- ('worker_stale'); with 'all' every entry goes ('released'). Capacity comes back (never above
-- the total), the version goes up once if anything went.
-- Standalone mode: the index keys of what goes are deleted here, so they must be declared: when
-- an entry that goes is not among the declared containers nothing changes and the reply is
-- {'retry', container ids that go...}; the caller runs the script again declaring them.
-- Cluster mode: the caller drops the claims afterwards (fence + compare-and-delete).
-- KEYS[1] worker state hash, KEYS[2] worker ledger hash,
-- KEYS[3 .. 2+n] index keys of the declared containers (standalone mode only).
-- ARGV[1] worker id, ARGV[2] 's' | 'c', ARGV[3] 'expired' | 'all',
-- ARGV[4 .. 3+n] declared container ids (standalone mode only).
-- Returns false (unknown worker), {'retry', ids...} or
-- {'ok', now, version, fc, fm, fg, {container, ledger entry, reason}...}.
local st, led = KEYS[1], KEYS[2]
local wid = ARGV[1]
local standalone = ARGV[2] == 's'
local all = ARGV[3] == 'all'
local function fmt(x) return string.format('%.0f', x) end
if redis.call('EXISTS', st) == 0 then return false end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local s = redis.call('HMGET', st, 'v', 'fc', 'fm', 'fg', 'tc', 'tm', 'tg', 'hbt', 'hb', 'os')
local stale = s[8] and ((not s[9]) or now - tonumber(s[9]) > tonumber(s[8]))
local stale_release = stale and s[10] == 'release'
local entries = redis.call('HGETALL', led)
local due = {}
for i = 1, #entries, 2 do
  local cid, val = entries[i], entries[i + 1]
  local reason = nil
  if all then
    reason = 'released'
  else
    local d = string.match(val, '^%d+ %d+ %d+@(%d+)')
    if d and tonumber(d) <= now then
      reason = 'lease_expired'
    elseif stale_release then
      reason = 'worker_stale'
    end
  end
  if reason then due[#due + 1] = {cid, val, reason} end
end
local key = {}
if standalone then
  for i = 4, #ARGV do key[ARGV[i]] = KEYS[i - 1] end
  local missing = {'retry'}
  for _, e in ipairs(due) do
    if not key[e[1]] then missing[#missing + 1] = e[1] end
  end
  if #missing > 1 then return missing end
end
local v = tonumber(s[1])
local free = {tonumber(s[2]), tonumber(s[3]), tonumber(s[4])}
local total = {tonumber(s[5]), tonumber(s[6]), tonumber(s[7])}
for _, e in ipairs(due) do
  local c, m, g = string.match(e[2], '^(%d+) (%d+) (%d+)')
  local r = {tonumber(c), tonumber(m), tonumber(g)}
  redis.call('HDEL', led, e[1])
  if standalone and redis.call('GET', key[e[1]]) == wid then redis.call('DEL', key[e[1]]) end
  for k = 1, 3 do free[k] = math.min(free[k] + r[k], total[k]) end
end
if #due > 0 then
  v = v + 1
  redis.call('HSET', st, 'v', fmt(v), 'fc', fmt(free[1]), 'fm', fmt(free[2]), 'fg', fmt(free[3]))
end
local out = {'ok', fmt(now), fmt(v), fmt(free[1]), fmt(free[2]), fmt(free[3])}
for _, e in ipairs(due) do out[#out + 1] = e end
return out
