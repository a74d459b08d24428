#!lua flags=allow-oom
-- sched-redis: heartbeat, atomic on the worker's state hash (runs when out of memory too: it
-- overwrites one field, and a refused heartbeat could get a live worker's reservations released).
-- Mirrors sched-core/src/rules/lifecycle.rs (`WorkerState::heartbeat`): 'hb' := the server's TIME
-- in ms; reports whether the worker was stale just before. No capacity or version change.
-- KEYS[1] worker state hash.
-- Returns false (unknown worker) or {now, 1 | 0 (was stale)}.
local st = KEYS[1]
if redis.call('EXISTS', st) == 0 then return false end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local s = redis.call('HMGET', st, 'hbt', 'hb')
local stale = s[1] and ((not s[2]) or now - tonumber(s[2]) > tonumber(s[1]))
local now_s = string.format('%.0f', now)
redis.call('HSET', st, 'hb', now_s)
if stale then return {now_s, 1} end
return {now_s, 0}
