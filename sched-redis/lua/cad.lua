-- sched-redis: compare-and-delete (lock release, claim clean-up).
-- KEYS[1] key, ARGV[1] expected value. Returns 1 when deleted, 0 otherwise.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
