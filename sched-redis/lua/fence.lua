#!lua flags=allow-oom
-- sched-redis (cluster mode): resolve claims naming this worker, atomic on the worker's slot.
-- Part of the fenced claim protocol (src/cluster.rs, ARCHITECTURE.md), not of the scheduling rule.
-- Runs even when the server is out of memory (`allow-oom`): it adds at most one small set member
-- per claim, and resolving claims is what lets a failed call clean up.
-- For each claim (container c, token t): worker absent -> 'absent'; c in the ledger -> 'held'
-- (the claim is real: keep it); otherwise t joins the fence set (revoked: a later script carrying
-- t is refused) -> 'revoked'. Only after 'absent' / 'revoked' may the claim be compare-and-deleted.
-- KEYS[1] state hash, KEYS[2] ledger hash, KEYS[3] fence set.
-- ARGV: c1, t1, c2, t2, ...
-- Returns one entry per claim: {'absent'} | {'revoked'} | {'held', ledger entry}.
local st, led, fence = KEYS[1], KEYS[2], KEYS[3]
local LIMIT = 1024
local out = {}
local exists = redis.call('EXISTS', st) == 1
for i = 1, #ARGV, 2 do
  if not exists then
    out[#out + 1] = {'absent'}
  else
    local e = redis.call('HGET', led, ARGV[i])
    if e then
      out[#out + 1] = {'held', e}
    else
      redis.call('SADD', fence, ARGV[i + 1])
      out[#out + 1] = {'revoked'}
    end
  end
end
if exists and redis.call('SCARD', fence) > LIMIT then
  local f = tonumber(redis.call('HGET', st, 'f') or '1') + 1
  redis.call('HSET', st, 'f', string.format('%.0f', f))
  redis.call('DEL', fence)
end
return out
