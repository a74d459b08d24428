#!lua flags=allow-oom
-- sched-redis: set_worker_status, atomic on the worker's state hash (runs when out of memory too:
-- draining a worker must work on a full node; it overwrites two fields).
-- Mirrors sched-core/src/rules/lifecycle.rs (`WorkerState::set_status`): the status changes,
-- capacity and ledger stay, the version always goes up.
-- KEYS[1] worker state hash. ARGV[1] status ('available' | 'draining' | 'disabled').
-- Returns false (unknown worker) or {now, HGETALL of the state after}.
local st = KEYS[1]
if redis.call('EXISTS', st) == 0 then return false end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local v = tonumber(redis.call('HGET', st, 'v')) + 1
redis.call('HSET', st, 'status', ARGV[1], 'v', string.format('%.0f', v))
return {string.format('%.0f', now), redis.call('HGETALL', st)}
