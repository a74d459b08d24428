#!lua flags=allow-oom
-- sched-redis (cluster): put a registered worker's id into the worker set, after register.lua
-- created its state (on one node register.lua does this itself, in its own atomic step). Bumps the
-- id's generation, so a prune that read the id as removed before this ran leaves it in the set
-- (prune.lua; ARCHITECTURE.md, "The worker set").
-- KEYS[1] the worker set, KEYS[2] its generations hash (same slot). ARGV[1] the worker id.
-- Returns the id's new generation.
local g = redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
redis.call('SADD', KEYS[1], ARGV[1])
return g
