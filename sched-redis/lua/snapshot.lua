-- sched-redis: consistent read of one worker's state and ledger (for audit and
-- list_reservations; the audit arithmetic mirrors sched-core/src/rules.rs, on the Rust side).
-- KEYS[1] worker state hash, KEYS[2] worker ledger hash.
-- Returns false (unknown worker) or {HGETALL state, HGETALL ledger}.
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
return {redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2])}
