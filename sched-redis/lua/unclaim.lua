#!lua flags=allow-oom
-- sched-redis (cluster mode): compare-and-delete a container's claim. Part of the fenced claim
-- protocol (src/cluster.rs, ARCHITECTURE.md), not of the scheduling rule (sched-core/src/rules.rs).
-- A claim is deleted only by its exact value, and only when its token can no longer charge
-- (consumed or revoked in the worker's fence set, or fenced by the epoch): never a live claim.
-- KEYS[1] container index key. ARGV[1] the claim value.
-- Returns 1 when deleted, 0 otherwise.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
