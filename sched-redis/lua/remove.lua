-- sched-redis: remove a worker with its ledger, keeping its last version as a tombstone.
-- Mirrors sched-core/src/rules.rs (the reference rule; until that file lands, the in-memory
-- backend sched-memory): removal drops the worker's reservations with it.
-- KEYS[1] worker state hash, KEYS[2] worker ledger hash, KEYS[3] worker tombstone,
-- KEYS[4 .. 3+n] index keys of the ledger's containers (standalone mode only).
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
    if redis.call('GET', KEYS[3 + i]) == wid then redis.call('DEL', KEYS[3 + i]) end
  end
end
redis.call('SET', tomb, redis.call('HGET', st, 'v'))
redis.call('DEL', st, led)
local r = {'ok'}
for _, c in ipairs(cids) do r[#r + 1] = c end
return r
