-- sched-redis: one worker's part of reserve_batch, atomic.
-- Mirrors sched-core/src/rules.rs (the reference rule; until that file lands, the in-memory
-- backend sched-memory): check the version, then the status; take the reservations in
-- order (one already held here is accepted again, uncharged); stop at the first one held
-- elsewhere, needing another GPU type or not fitting; all-or-nothing (or nothing accepted yet)
-- rejects the worker's whole part, partial commits what was accepted and reports the rest.
-- KEYS[1] worker state hash, KEYS[2] worker ledger hash,
-- KEYS[3 .. 2+n] container index keys (standalone mode only; none in cluster mode).
-- ARGV[1] worker id, ARGV[2] expected version or '', ARGV[3] 'all' | 'partial',
-- ARGV[4] 's' (standalone: index keys are in KEYS) | 'c' (cluster: holders are in ARGV),
-- ARGV[5] n, then 6 ARGV per reservation:
--   container id, cpu, memory, gpu, gpu type or '', holder
--   (cluster mode: '' = claimed by this call, otherwise the claiming worker; standalone: ignored)
-- Returns {'rej', <rejection>} or
-- {'ok', version, fc, fm, fg, accepted, {charged 1-based indexes}, [{<rejection>}]}, where a
-- <rejection> is one of: 'unknown' | 'version', expected, current | 'unavailable', status |
-- 'already', container, holder | 'gpu', container, requested, 1|0, worker's type |
-- 'insufficient', container, resource, requested, available.
local st, led = KEYS[1], KEYS[2]
local wid = ARGV[1]
local function fmt(x) return string.format('%.0f', x) end
if redis.call('EXISTS', st) == 0 then return {'rej', 'unknown'} end
local s = redis.call('HMGET', st, 'v', 'status', 'fc', 'fm', 'fg', 'gpu')
local v = s[1]
if ARGV[2] ~= '' and ARGV[2] ~= v then return {'rej', 'version', ARGV[2], v} end
if s[2] ~= 'available' then return {'rej', 'unavailable', s[2]} end
local free = {tonumber(s[3]), tonumber(s[4]), tonumber(s[5])}
local wgpu = s[6]
local kinds = {'cpu', 'memory', 'gpu'}
local standalone = ARGV[4] == 's'
local n = tonumber(ARGV[5])
local charged = {}
local accepted = 0
local stop = nil
for i = 1, n do
  local b = 5 + (i - 1) * 6
  local cid = ARGV[b + 1]
  local gt = ARGV[b + 5]
  local holder
  if standalone then
    holder = redis.call('GET', KEYS[2 + i])
  else
    holder = ARGV[b + 6]
    if holder == '' then holder = false end
  end
  local here = false
  if holder then
    if holder == wid and redis.call('HEXISTS', led, cid) == 1 then
      here = true
    else
      stop = {'already', cid, holder}
      break
    end
  end
  if not here then
    if gt ~= '' and gt ~= wgpu then
      if wgpu then stop = {'gpu', cid, gt, 1, wgpu} else stop = {'gpu', cid, gt, 0, ''} end
      break
    end
    for k = 1, 3 do
      local req = tonumber(ARGV[b + 1 + k])
      if req > free[k] then
        stop = {'insufficient', cid, kinds[k], ARGV[b + 1 + k], fmt(free[k])}
        break
      end
    end
    if stop then break end
    for k = 1, 3 do free[k] = free[k] - tonumber(ARGV[b + 1 + k]) end
    charged[#charged + 1] = i
  end
  accepted = accepted + 1
end
if stop and (ARGV[3] == 'all' or accepted == 0) then
  local r = {'rej'}
  for _, x in ipairs(stop) do r[#r + 1] = x end
  return r
end
local nv = v
if #charged > 0 then
  nv = fmt(tonumber(v) + 1)
  redis.call('HSET', st, 'v', nv, 'fc', fmt(free[1]), 'fm', fmt(free[2]), 'fg', fmt(free[3]))
  for _, i in ipairs(charged) do
    local b = 5 + (i - 1) * 6
    local val = ARGV[b + 2] .. ' ' .. ARGV[b + 3] .. ' ' .. ARGV[b + 4]
    if ARGV[b + 5] ~= '' then val = val .. ' ' .. ARGV[b + 5] end
    redis.call('HSET', led, ARGV[b + 1], val)
    if standalone then redis.call('SET', KEYS[2 + i], wid) end
  end
end
local r = {'ok', nv, fmt(free[1]), fmt(free[2]), fmt(free[3]), accepted, charged}
if stop then r[8] = stop end
return r
