#!lua flags=no-writes
-- sched-redis: read one worker's state hash with the server's TIME in ms, so that `stale` is judged
-- by the store's clock at the read (sched-core/src/rules/lifecycle.rs `WorkerState::observe`,
-- computed on the Rust side from these two values).
-- KEYS[1] worker state hash.
-- Returns {now, HGETALL of the state} (empty: unknown worker).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return {string.format('%.0f', now), redis.call('HGETALL', KEYS[1])}
