#!lua flags=allow-oom
-- sched-redis: remove a worker with its ledger, keeping its last version and fence epoch as a
-- tombstone (runs when out of memory too: it frees more than it writes).
-- Mirrors sched-core/src/rules.rs (the reference rule): removal drops the worker's reservations with it.
-- Cluster fence (ARCHITECTURE.md): the epoch is bumped into the tombstone ('v f') and the fence
-- set dropped: every script from before the removal carries an epoch below any later one.
-- KEYS[1] worker state hash, KEYS[2] worker ledger hash, KEYS[3] worker tombstone,
-- KEYS[4] fence set, KEYS[5 .. 4+n] index keys of the ledger's containers (standalone mode only).
-- ARGV[1] worker id, ARGV[2] 's' | 'c', ARGV[3 .. 2+n] the ledger's container ids (standalone).
-- Returns {'absent'}, {'retry'} (standalone: the ledger is not the declared set) or
-- {'ok', container ids of the removed ledger...}.
local st, led, tomb = KEYS[1], KEYS[2], KEYS[3]
local wid = ARGV[1]
local standalone = ARGV[2] == 's'
if redis.call('EXISTS', st) == 0 then return {'absent'} end
local cids = redis.call('HKEYS', led)
if standalone then
  local n = #ARGV - 2
  if #cids ~= n then return {'retry'} end
  for i = 1, n do
    if redis.call('HEXISTS', led, ARGV[2 + i]) == 0 then return {'retry'} end
  end
  for i = 1, n do
    if redis.call('GET', KEYS[4 + i]) == wid then redis.call('DEL', KEYS[4 + i]) end
  end
end
local s = redis.call('HMGET', st, 'v', 'f')
redis.call('SET', tomb, s[1] .. ' ' .. string.format('%.0f', tonumber(s[2] or '1') + 1))
redis.call('DEL', st, led, KEYS[4])
local r = {'ok'}
for _, c in ipairs(cids) do r[#r + 1] = c end
return r
