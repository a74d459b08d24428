-- sched-redis (cluster mode): drop a container's claim. Part of the cluster claim protocol
-- (src/cluster.rs, ARCHITECTURE.md), not of the scheduling rule (sched-core/src/rules.rs).
-- KEYS[1] container index key.
-- ARGV[1] a claim value: deletes the key when it holds exactly that value (a call dropping its
--         own claim, or an abandoned one it read); or, with ARGV[2] == 'worker', a worker id:
--         deletes the key when it names that worker, whichever call claimed it (remove_worker).
-- Returns 1 when deleted, 0 otherwise.
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
if cur == ARGV[1] or (ARGV[2] == 'worker' and string.sub(cur, 1, #ARGV[1] + 1) == ARGV[1] .. '\n') then
  return redis.call('DEL', KEYS[1])
end
return 0
