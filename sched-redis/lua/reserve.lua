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
-- Cost (issue 12, measured with INFO commandstats): every redis.call and every Lua step is paid
-- per part, so the code below keeps ARGV in a local, walks each reservation's 7 arguments by an
-- offset, converts each number once, skips TIME unless a heartbeat timeout or a lease needs it,
-- and asks EXISTS only when HMGET finds none of the state fields.
local A, K = ARGV, KEYS
local st, led, fence = K[1], K[2], K[3]
local tonumber, unpack, format, min = tonumber, unpack, string.format, math.min
local wid = A[1]
local standalone = A[4] == 's'
local n = tonumber(A[5])
local LIMIT = 1024
local CHUNK = 1000
local function fmt(x) return format('%.0f', x) end
local s = redis.call('HMGET', st, 'v', 'status', 'fc', 'fm', 'fg', 'gpu', 'f', 'hbt', 'hb')
if not (s[1] or s[2] or s[3] or s[4] or s[5] or s[6] or s[7] or s[8] or s[9])
  and redis.call('EXISTS', st) == 0 then
  return {'rej', 'unknown'}
end
local now = nil
local function clock()
  if not now then
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return now
end
local v = s[1]
local f = tonumber(s[7] or '1')
local holder, mine = {}, {}
local resent, fresh = false, false
if standalone then
  -- One MGET of the part's index keys (in chunks: Lua's unpack has a stack limit).
  if n <= CHUNK then
    holder = redis.call('MGET', unpack(K, 5, 4 + n))
  else
    for i = 1, n, CHUNK do
      local last = min(i + CHUNK - 1, n)
      local got = redis.call('MGET', unpack(K, 4 + i, 4 + last))
      for j = i, last do holder[j] = got[j - i + 1] end
    end
  end
else
  -- One HMGET of the ledger for the containers this call claimed: found = a re-send.
  local ours, cids = {}, {}
  for i = 1, n do
    local h = A[i * 7 + 6]
    if h ~= '' then
      holder[i] = h
    else
      holder[i] = false
      ours[#ours + 1] = i
      cids[#cids + 1] = A[i * 7 + 1]
    end
  end
  for o = 1, #ours, CHUNK do
    local last = min(o + CHUNK - 1, #ours)
    local got = redis.call('HMGET', led, unpack(cids, o, last))
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
  local t = A[7]
  if tonumber(A[6]) < f then return {'fenced', fmt(f)} end
  revoked = redis.call('SISMEMBER', fence, t) == 1
  redis.call('SADD', fence, t)
  if redis.call('SCARD', fence) > LIMIT then
    f = f + 1
    redis.call('HSET', st, 'f', fmt(f))
    redis.call('DEL', fence)
  end
end
if not resent then
  if A[2] ~= '' and A[2] ~= v then return {'rej', 'version', A[2], v} end
  if s[2] ~= 'available' then return {'rej', 'unavailable', s[2]} end
  if s[8] and ((not s[9]) or clock() - tonumber(s[9]) > tonumber(s[8])) then
    return {'rej', 'heartbeat', s[9] or '', s[8]}
  end
end
local fc, fm, fg = tonumber(s[3]), tonumber(s[4]), tonumber(s[5])
local wgpu = s[6]
-- New ledger entries (container, value) and, standalone, index entries (key, worker), as found.
local charged, entries, index = {}, {}, {}
local nc, ne = 0, 0
local accepted = 0
local stop = nil
for i = 1, n do
  local b = i * 7
  local cid = A[b + 1]
  local gt = A[b + 5]
  if mine[i] then
    nc = nc + 1
    charged[nc] = i
  elseif holder[i] then
    stop = {'already', cid, holder[i]}
  elseif revoked then
    stop = {'contended', cid}
  elseif gt ~= '' and gt ~= wgpu then
    if wgpu then stop = {'gpu', cid, gt, 1, wgpu} else stop = {'gpu', cid, gt, 0, ''} end
  else
    local cs, ms, gs = A[b + 2], A[b + 3], A[b + 4]
    local c, m, g = tonumber(cs), tonumber(ms), tonumber(gs)
    if c > fc then
      stop = {'insufficient', cid, 'cpu', cs, fmt(fc)}
    elseif m > fm then
      stop = {'insufficient', cid, 'memory', ms, fmt(fm)}
    elseif g > fg then
      stop = {'insufficient', cid, 'gpu', gs, fmt(fg)}
    else
      fc, fm, fg = fc - c, fm - m, fg - g
      nc = nc + 1
      charged[nc] = i
      local val = cs .. ' ' .. ms .. ' ' .. gs
      local lease = A[b + 7]
      if lease ~= '' then val = val .. '@' .. fmt(clock() + tonumber(lease)) end
      if gt ~= '' then val = val .. ' ' .. gt end
      entries[ne + 1] = cid
      entries[ne + 2] = val
      if standalone then
        index[ne + 1] = K[4 + i]
        index[ne + 2] = wid
      end
      ne = ne + 2
    end
  end
  if stop then break end
  accepted = accepted + 1
end
if stop and (A[3] == 'all' or accepted == 0) then
  local r = {'rej'}
  for _, x in ipairs(stop) do r[#r + 1] = x end
  return r
end
local nv = v
if ne > 0 then
  nv = fmt(tonumber(v) + 1)
  redis.call('HSET', st, 'v', nv, 'fc', fmt(fc), 'fm', fmt(fm), 'fg', fmt(fg))
  -- One HSET of the ledger and (standalone) one MSET of the index, in chunks of CHUNK entries.
  for j = 1, ne, 2 * CHUNK do
    local last = min(j + 2 * CHUNK - 1, ne)
    redis.call('HSET', led, unpack(entries, j, last))
    if standalone then redis.call('MSET', unpack(index, j, last)) end
  end
  redis.call('XADD', K[4], 'MAXLEN', '~', '64', '*', 'v', nv)
end
local r = {'ok', nv, fmt(fc), fmt(fm), fmt(fg), accepted, charged, fmt(f)}
if stop then r[9] = stop end
return r
