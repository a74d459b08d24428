#!lua
-- sched-redis: renew_leases, one worker's atomic section (one round trip for all its containers).
-- Mirrors sched-core/src/rules/lifecycle.rs (`WorkerState::renew`, judged by `expiry`), at the
-- server's TIME in ms (`now`), per container in order: not in this ledger -> 'not_held'; the sweep
-- would take it now (`expiry`: its deadline <= now -> 'lease_expired'; else the worker is stale
-- with stale policy 'release' -> 'worker_stale'); held without a lease -> 'no_lease'; otherwise
-- its deadline becomes now + lease (renewed). No capacity, no version change. The sweep
-- (expire.lua) judges by the same rule in the same slot, so a renewal racing it either runs first
-- (renewed: the sweep then sees the new deadline) or second (the entry is gone: 'not_held'), or
-- finds it due ('lease_expired' / 'worker_stale', nothing changed): never half.
-- KEYS[1] worker state hash, KEYS[2] worker ledger hash.
-- ARGV[1] lease ms, ARGV[2 ..] container ids.
-- Returns false (unknown worker) or {now, outcome per container}, an outcome being the new
-- deadline (renewed) or one of the words above.
local st, led = KEYS[1], KEYS[2]
local function fmt(x) return string.format('%.0f', x) end
if redis.call('EXISTS', st) == 0 then return false end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local s = redis.call('HMGET', st, 'hbt', 'hb', 'os')
local stale = s[1] and ((not s[2]) or now - tonumber(s[2]) > tonumber(s[1]))
local stale_release = stale and s[3] == 'release'
local deadline = fmt(now + tonumber(ARGV[1]))
local out = {}
for i = 2, #ARGV do
  local cid = ARGV[i]
  local val = redis.call('HGET', led, cid)
  if not val then
    out[#out + 1] = 'not_held'
  else
    local c, m, g, d, rest = string.match(val, '^(%d+) (%d+) (%d+)@?(%d*)(.*)$')
    if d ~= '' and tonumber(d) <= now then
      out[#out + 1] = 'lease_expired'
    elseif stale_release then
      out[#out + 1] = 'worker_stale'
    elseif d == '' then
      out[#out + 1] = 'no_lease'
    else
      redis.call('HSET', led, cid, c .. ' ' .. m .. ' ' .. g .. '@' .. deadline .. rest)
      out[#out + 1] = deadline
    end
  end
end
return {fmt(now), out}
