#!lua flags=allow-oom
-- sched-redis: drop removed workers' ids from the worker set, so list_workers reads only what is
-- registered (ARCHITECTURE.md, "The worker set"). list_workers found each id's state gone and read
-- its generation no later than it read the state; an id whose generation moved since was
-- registered again (register.lua on one node, enlist.lua on a cluster, bump it once the state
-- exists) and stays. On one node the states are declared too, and an id whose state exists stays
-- whatever its generation. Runs when out of memory too: it only frees.
-- KEYS[1] the worker set, KEYS[2] its generations hash (same slot); one node: KEYS[2 + j] the
-- state hash of the j-th id.
-- ARGV pairs: worker id, its generation as read ('' = none).
-- Returns the number of ids dropped.
local dropped = 0
for j = 1, #ARGV / 2 do
  local id, seen = ARGV[2 * j - 1], ARGV[2 * j]
  local st = KEYS[2 + j]
  if (redis.call('HGET', KEYS[2], id) or '') == seen
    and not (st and redis.call('EXISTS', st) == 1) then
    dropped = dropped + redis.call('SREM', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
  end
end
return dropped
