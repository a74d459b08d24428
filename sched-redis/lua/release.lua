#!lua flags=allow-oom
-- sched-redis: release_batch, atomic (runs when out of memory too: it frees more than it writes).
-- Mirrors sched-core/src/rules.rs (the reference rule): a container held here goes back to free
-- capacity (never above the total), one version bump per container released; one not held is a
-- no-op.
--
-- ARGV[1] 's' (one node: the whole call) | 'c' (cluster: one worker's part).
--
-- 's': KEYS[1 .. n] the containers' index keys, then per declared worker its state hash and its
--   ledger. ARGV[2] n, ARGV[3 .. 2+n] container ids, ARGV[3+n ..] the declared worker ids (the
--   workers the caller believes hold them). The script reads the index itself: a container held
--   by a worker that is not declared makes it change nothing and answer {'retry', w1, w2, ...}
--   (every such holder; the caller runs it again declaring them). Otherwise it answers
--   {'ok', e1, ..., en}, per container 0 (not held) or {cpu, mem, gpu, version, worker}.
-- 'c': KEYS[1] worker state hash, KEYS[2] worker ledger hash. ARGV[2] worker id,
--   ARGV[3 ..] container ids (the caller found their claims naming this worker). Answers per
--   container 0 (not held here) or {cpu, mem, gpu, version}.
local function fmt(x) return string.format('%.0f', x) end

-- One worker's state, read on first use; written back once at the end if it changed.
local function load(st)
  if redis.call('EXISTS', st) == 0 then return false end
  local s = redis.call('HMGET', st, 'v', 'fc', 'fm', 'fg', 'tc', 'tm', 'tg')
  return {
    st = st, v = tonumber(s[1]), changed = false,
    free = {tonumber(s[2]), tonumber(s[3]), tonumber(s[4])},
    total = {tonumber(s[5]), tonumber(s[6]), tonumber(s[7])},
  }
end

-- Takes container cid out of the ledger led of worker w (loaded): nil when not held there.
local function take(w, led, cid)
  local val = redis.call('HGET', led, cid)
  if not val then return nil end
  local c, m, g = string.match(val, '^(%d+) (%d+) (%d+)')
  local r = {tonumber(c), tonumber(m), tonumber(g)}
  redis.call('HDEL', led, cid)
  for k = 1, 3 do w.free[k] = math.min(w.free[k] + r[k], w.total[k]) end
  w.v = w.v + 1
  w.changed = true
  return {c, m, g, fmt(w.v)}
end

local function store(w)
  if w and w.changed then
    redis.call('HSET', w.st, 'v', fmt(w.v), 'fc', fmt(w.free[1]), 'fm', fmt(w.free[2]),
      'fg', fmt(w.free[3]))
  end
end

if ARGV[1] == 'c' then
  local w = load(KEYS[1])
  local out = {}
  for i = 3, #ARGV do
    out[i - 2] = (w and take(w, KEYS[2], ARGV[i])) or 0
  end
  store(w)
  return out
end

local n = tonumber(ARGV[2])
local declared = {}
for j = 3 + n, #ARGV do declared[ARGV[j]] = 2 * (j - 2 - n) - 1 + n end
-- Every holder first: nothing is changed unless all of them are declared.
local holders, missing, seen = {}, {'retry'}, {}
for i = 1, n do
  local h = redis.call('GET', KEYS[i])
  holders[i] = h
  if h and not declared[h] and not seen[h] then
    seen[h] = true
    missing[#missing + 1] = h
  end
end
if #missing > 1 then return missing end
local workers, out = {}, {'ok'}
for i = 1, n do
  local h, e = holders[i], 0
  if h then
    local k = declared[h]
    if workers[h] == nil then workers[h] = load(KEYS[k]) end
    local w = workers[h]
    -- A holder whose state is gone holds nothing (remove.lua drops the index keys too).
    local r = w and take(w, KEYS[k + 1], ARGV[2 + i])
    if r then
      redis.call('DEL', KEYS[i])
      r[5] = h
      e = r
      -- The next duplicate of this id reads the index again: not held any more.
      holders[i] = false
    end
  end
  out[i + 1] = e
end
for _, w in pairs(workers) do store(w) end
return out
