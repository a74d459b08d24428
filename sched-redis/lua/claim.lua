-- sched-redis (cluster mode): claim a container for a worker before the worker script runs.
-- Part of the cluster claim protocol (src/cluster.rs, ARCHITECTURE.md), not of the scheduling
-- rule (which reserve.lua mirrors from sched-core/src/rules.rs).
-- KEYS[1] container index key. ARGV[1] claim value ('<worker id>' .. '\n' .. token .. '\n' .. ms).
-- Returns '' when this call created the claim, otherwise the current claim value.
local cur = redis.call('GET', KEYS[1])
if cur then return cur end
redis.call('SET', KEYS[1], ARGV[1])
return ''
