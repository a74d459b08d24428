#!lua flags=no-writes
-- sched-redis (one node): list_workers in one round trip. Reads the worker set and the state hash
-- of every worker in it, with the server's TIME in ms (as worker.lua does for one worker), in one
-- atomic step. The state keys must be declared, so the caller declares the ids it expects (the
-- set as it last saw it); when the set holds an id not declared, nothing is read and the script
-- answers 'retry' with the set, to be run again declaring those.
-- An id in the set whose state is gone was removed: it is answered with its generation, for
-- prune.lua to drop it from the set (ARCHITECTURE.md, "The worker set").
-- KEYS[1] the worker set, KEYS[2] its generations hash, KEYS[2 + i] the state hash of ARGV[i].
-- ARGV[i] a worker id.
-- Returns {'retry', {ids of the set}} or {now, {HGETALL of each declared state that is in the set
-- and not removed, in ARGV order}, {removed id, its generation or '', ...}}.
local members = redis.call('SMEMBERS', KEYS[1])
local declared = {}
for i = 1, #ARGV do declared[ARGV[i]] = i end
local inset = {}
for _, id in ipairs(members) do
  if not declared[id] then return {'retry', members} end
  inset[id] = true
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out, removed = {}, {}
for i = 1, #ARGV do
  if inset[ARGV[i]] then
    local h = redis.call('HGETALL', KEYS[2 + i])
    if #h > 0 then
      out[#out + 1] = h
    else
      removed[#removed + 1] = ARGV[i]
      removed[#removed + 1] = redis.call('HGET', KEYS[2], ARGV[i]) or ''
    end
  end
end
return {string.format('%.0f', now), out, removed}
