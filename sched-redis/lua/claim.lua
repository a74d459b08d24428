#!lua
-- sched-redis (cluster mode): claim a container before the worker script runs. Part of the
-- fenced claim protocol (src/cluster.rs, ARCHITECTURE.md), not of the scheduling rule.
-- KEYS[1] container index key. ARGV[1] claim value ('<worker id>' .. '\n' .. token).
-- ARGV[2] (optional) a claim value to replace: then the key is set to ARGV[1] only if it holds
-- exactly ARGV[2] (a call moving its own claim to a new token).
-- Returns '' when the key now holds ARGV[1] by this run, otherwise the current value ('-' if none).
local cur = redis.call('GET', KEYS[1])
if ARGV[2] then
  if cur ~= ARGV[2] then return cur or '-' end
elseif cur then
  return cur
end
redis.call('SET', KEYS[1], ARGV[1])
return ''
