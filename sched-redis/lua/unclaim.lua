-- sched-redis (cluster mode): drop a removed worker's claim on a container.
-- KEYS[1] container index key, ARGV[1] worker id.
-- Deletes the key when it names this worker (plain '<worker id>' or '<worker id>\n...').
local cur = redis.call('GET', KEYS[1])
if cur and (cur == ARGV[1] or string.sub(cur, 1, #ARGV[1] + 1) == ARGV[1] .. '\n') then
  return redis.call('DEL', KEYS[1])
end
return 0
