#!lua
-- sched-redis: one worker's part of reserve_batch, atomic. The `#!lua` line (Redis >= 7.0) makes
-- the server refuse the script before it starts when it is out of memory.
-- Mirrors sched-core/src/rules.rs (the reference rule): check the version, then the status, then
-- the heartbeat (stale: 'hbt' set and TIME - 'hb' > 'hbt', or no 'hb' -> 'heartbeat'); take
-- the reservations in order; stop at the first one held anywhere (this worker included), needing
-- another GPU type or not fitting; all-or-nothing (or nothing accepted yet) rejects the worker's
-- whole part, partial commits what was accepted and reports the rest. A leased reservation's
-- ledger entry carries its deadline, TIME (ms) + lease. A committed part appends one entry to the
-- worker's events stream (wake-ups for `reservation_wakeups`, capped near 64 entries).
-- Cluster mode adds the fence of the claim protocol (ARCHITECTURE.md): a container claimed by this
-- call and already in the ledger was charged by an earlier copy of this call's script (a re-send):
-- it is accepted again, uncharged, and the version/status checks are skipped; a script carrying an
-- epoch below the worker's fence epoch `f` is refused ('fenced'); a token in the fence set was
-- revoked or consumed: its not yet charged containers are 'contended'. Every run past the epoch
-- check consumes the token (SADD), so a later copy can only re-confirm the ledger.
-- Few Redis calls per part, not per container: one MGET of the index keys (standalone) or one
-- HMGET of the ledger for the claimed containers (cluster), one HSET of the new ledger entries,
-- one MSET of the new index entries (standalone); each in chunks of 1000 entries (Lua's unpack
-- limit). Every read happens before any write, so this is the per-container rule, batched.
-- KEYS[1] state hash, KEYS[2] ledger hash, KEYS[3] fence set, KEYS[4] events stream,
-- KEYS[5 .. 4+n] container index keys (standalone mode only).
-- ARGV[1] worker id, ARGV[2] expected version or '', ARGV[3] 'all' | 'partial',
-- ARGV[4] 's' (standalone: index keys are in KEYS) | 'c' (cluster: holders are in ARGV),
-- ARGV[5] n, ARGV[6] epoch (cluster), ARGV[7] claim token (cluster), then 7 ARGV per reservation:
--   container id, cpu, memory, gpu, gpu type or '', holder
--   (cluster mode: '' = claimed by this call, otherwise the claiming worker; standalone: ignored),
--   lease ms or ''
-- Ledger entry: 'cpu mem gpu[@deadline][ gpu type]' (entries from before leases have no '@').
-- Returns {'rej', <rejection>}, {'fenced', f} or
-- {'ok', version, fc, fm, fg, accepted, {charged 1-based indexes}, f, [{<rejection>}]}, where a
-- <rejection> is one of: 'unknown' | 'version', expected, current | 'unavailable', status |
-- 'heartbeat', last heartbeat ms or '', timeout ms |
-- 'already', container, holder | 'gpu', container, requested, 1|0, worker's type |
-- 'insufficient', container, resource, requested, available | 'contended', container.
local st, led, fence = KEYS[1], KEYS[2], KEYS[3]
local wid = ARGV[1]
local standalone = ARGV[4] == 's'
local n = tonumber(ARGV[5])
local LIMIT = 1024
local CHUNK = 1000
local function fmt(x) return string.format('%.0f', x) end
local function base(i) return 7 + (i - 1) * 7 end
local function rej(stop)
  local r = {'rej'}
  for _, x in ipairs(stop) do r[#r + 1] = x end
  return r
end
if redis.call('EXISTS', st) == 0 then return {'rej', 'unknown'} end
local s = redis.call('HMGET', st, 'v', 'status', 'fc', 'fm', 'fg', 'gpu', 'f', 'hbt', 'hb')
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local v = s[1]
local f = tonumber(s[7] or '1')
local holder, mine = {}, {}
local resent, fresh = false, false
if standalone then
  -- One MGET of the part's index keys (in chunks: Lua's unpack has a stack limit).
  for i = 1, n, CHUNK do
    local last = math.min(i + CHUNK - 1, n)
    local got = redis.call('MGET', unpack(KEYS, 4 + i, 4 + last))
    for j = i, last do holder[j] = got[j - i + 1] end
  end
else
  -- One HMGET of the ledger for the containers this call claimed: found = a re-send.
  local ours = {}
  for i = 1, n do
    local b = base(i)
    if ARGV[b + 6] ~= '' then
      holder[i] = ARGV[b + 6]
    else
      holder[i] = false
      ours[#ours + 1] = i
    end
  end
  for o = 1, #ours, CHUNK do
    local last = math.min(o + CHUNK - 1, #ours)
    local cids = {}
    for j = o, last do cids[#cids + 1] = ARGV[base(ours[j]) + 1] end
    local got = redis.call('HMGET', led, unpack(cids))
    for j = o, last do
      if got[j - o + 1] then
        mine[ours[j]] = true
        resent = true
      else
        fresh = true
      end
    end
  end
end
local revoked = false
if fresh then
  local t = ARGV[7]
  if tonumber(ARGV[6]) < f then return {'fenced', fmt(f)} end
  revoked = redis.call('SISMEMBER', fence, t) == 1
  redis.call('SADD', fence, t)
  if redis.call('SCARD', fence) > LIMIT then
    f = f + 1
    redis.call('HSET', st, 'f', fmt(f))
    redis.call('DEL', fence)
  end
end
if not resent then
  if ARGV[2] ~= '' and ARGV[2] ~= v then return {'rej', 'version', ARGV[2], v} end
  if s[2] ~= 'available' then return {'rej', 'unavailable', s[2]} end
  if s[8] and ((not s[9]) or now - tonumber(s[9]) > tonumber(s[8])) then
    return {'rej', 'heartbeat', s[9] or '', s[8]}
  end
end
local free = {tonumber(s[3]), tonumber(s[4]), tonumber(s[5])}
local wgpu = s[6]
local kinds = {'cpu', 'memory', 'gpu'}
local charged, new = {}, {}
local accepted = 0
local stop = nil
for i = 1, n do
  local b = base(i)
  local cid = ARGV[b + 1]
  local gt = ARGV[b + 5]
  if mine[i] then
    charged[#charged + 1] = i
  elseif holder[i] then
    stop = {'already', cid, holder[i]}
  elseif revoked then
    stop = {'contended', cid}
  elseif gt ~= '' and gt ~= wgpu then
    if wgpu then stop = {'gpu', cid, gt, 1, wgpu} else stop = {'gpu', cid, gt, 0, ''} end
  else
    for k = 1, 3 do
      local req = tonumber(ARGV[b + 1 + k])
      if req > free[k] then
        stop = {'insufficient', cid, kinds[k], ARGV[b + 1 + k], fmt(free[k])}
        break
      end
    end
    if not stop then
      for k = 1, 3 do free[k] = free[k] - tonumber(ARGV[b + 1 + k]) end
      charged[#charged + 1] = i
      new[#new + 1] = i
    end
  end
  if stop then break end
  accepted = accepted + 1
end
if stop and (ARGV[3] == 'all' or accepted == 0) then return rej(stop) end
local nv = v
if #new > 0 then
  nv = fmt(tonumber(v) + 1)
  redis.call('HSET', st, 'v', nv, 'fc', fmt(free[1]), 'fm', fmt(free[2]), 'fg', fmt(free[3]))
  -- One HSET of the ledger and (standalone) one MSET of the index, in chunks of CHUNK entries.
  local entries, index = {}, {}
  for _, i in ipairs(new) do
    local b = base(i)
    local val = ARGV[b + 2] .. ' ' .. ARGV[b + 3] .. ' ' .. ARGV[b + 4]
    if ARGV[b + 7] ~= '' then val = val .. '@' .. fmt(now + tonumber(ARGV[b + 7])) end
    if ARGV[b + 5] ~= '' then val = val .. ' ' .. ARGV[b + 5] end
    entries[#entries + 1] = ARGV[b + 1]
    entries[#entries + 1] = val
    if standalone then
      index[#index + 1] = KEYS[4 + i]
      index[#index + 1] = wid
    end
  end
  for j = 1, #entries, 2 * CHUNK do
    redis.call('HSET', led, unpack(entries, j, math.min(j + 2 * CHUNK - 1, #entries)))
  end
  for j = 1, #index, 2 * CHUNK do
    redis.call('MSET', unpack(index, j, math.min(j + 2 * CHUNK - 1, #index)))
  end
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', '64', '*', 'v', nv)
end
local r = {'ok', nv, fmt(free[1]), fmt(free[2]), fmt(free[3]), accepted, charged, fmt(f)}
if stop then r[9] = stop end
return r
