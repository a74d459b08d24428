#!lua
-- sched-redis: register or update a worker, atomic (refused before it starts when out of memory).
-- Mirrors sched-core/src/rules.rs (the reference rule): an update keeps the ledger, refuses a total below what is
-- reserved and recomputes free = total - reserved; a new worker continues its tombstone's version.
-- Cluster fence (ARCHITECTURE.md): an update keeps the fence epoch `f`; a new worker starts at
-- the tombstone's epoch + 1, so no script from before a removal runs after a re-registration.
-- KEYS[1] worker state hash, KEYS[2] worker ledger hash, KEYS[3] worker tombstone ('v f', or 'v'
-- from before the fence); on one node also KEYS[4] the worker set and KEYS[5] its generations
-- hash: a registration enlists the id in the same atomic step (enlist.lua; on a cluster the caller
-- runs enlist.lua after this script, since those keys are on another slot).
-- Lifecycle (sched-core/src/rules.rs `register`): stores the heartbeat timeout ('hbt', absent when
-- liveness is not tracked) and stale policy ('os'); registering counts as a heartbeat: 'hb' is the
-- server's TIME in ms.
-- ARGV: worker id, pool, status, priority, gpu type or '', requires pool selector (0/1),
--       preemptable (0/1), total cpu, total memory, total gpu, heartbeat timeout ms or '',
--       stale policy ('keep' | 'release').
-- Returns {'ok', version, fc, fm, fg, f, now} or {'below', kind, total, reserved}.
local st, led, tomb = KEYS[1], KEYS[2], KEYS[3]
local function fmt(x) return string.format('%.0f', x) end
local kinds = {'cpu', 'memory', 'gpu'}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local total = {tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])}
local free = {total[1], total[2], total[3]}
local v, f
if redis.call('EXISTS', st) == 1 then
  local reserved = {0, 0, 0}
  for _, val in ipairs(redis.call('HVALS', led)) do
    local c, m, g = string.match(val, '^(%d+) (%d+) (%d+)')
    reserved[1] = reserved[1] + tonumber(c)
    reserved[2] = reserved[2] + tonumber(m)
    reserved[3] = reserved[3] + tonumber(g)
  end
  for k = 1, 3 do
    if total[k] < reserved[k] then return {'below', kinds[k], ARGV[7 + k], fmt(reserved[k])} end
  end
  for k = 1, 3 do free[k] = total[k] - reserved[k] end
  v = tonumber(redis.call('HGET', st, 'v')) + 1
  f = tonumber(redis.call('HGET', st, 'f') or '1')
else
  local tv, tf = string.match(redis.call('GET', tomb) or '0 0', '^(%d+) ?(%d*)')
  v = tonumber(tv) + 1
  f = tonumber(tf ~= '' and tf or '0') + 1
end
redis.call('DEL', st)
redis.call('HSET', st, 'id', ARGV[1], 'pool', ARGV[2], 'status', ARGV[3], 'prio', ARGV[4],
  'rps', ARGV[6], 'pre', ARGV[7], 'tc', ARGV[8], 'tm', ARGV[9], 'tg', ARGV[10],
  'fc', fmt(free[1]), 'fm', fmt(free[2]), 'fg', fmt(free[3]), 'v', fmt(v), 'f', fmt(f),
  'os', ARGV[12], 'hb', fmt(now))
if ARGV[5] ~= '' then redis.call('HSET', st, 'gpu', ARGV[5]) end
if ARGV[11] ~= '' then redis.call('HSET', st, 'hbt', ARGV[11]) end
if KEYS[5] then
  redis.call('HINCRBY', KEYS[5], ARGV[1], 1)
  redis.call('SADD', KEYS[4], ARGV[1])
end
return {'ok', fmt(v), fmt(free[1]), fmt(free[2]), fmt(free[3]), fmt(f), fmt(now)}
