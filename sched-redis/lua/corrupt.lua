-- sched-redis test hook (feature `testing`): overwrite a worker's free capacity without touching
-- its ledger, i.e. break on purpose the rule the other scripts mirror from sched-core/src/rules.rs.
-- KEYS[1] worker state hash. ARGV: free cpu, memory, gpu.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'fc', ARGV[1], 'fm', ARGV[2], 'fg', ARGV[3])
return 1
