-- sched-postgres schema, version 3: the reservation lifecycle (issue 11).
--
-- Leases, worker heartbeats and stale policy, status changes, bulk release by worker, and
-- wake-ups (NOTIFY) for the reservations committed on a worker. The reference semantics are
-- sched-core's pure rules (`src/rules.rs`: register, check_worker, Held::of;
-- `src/rules/lifecycle.rs`: expiry, renew, sweep, release_all, set_status, heartbeat, observe);
-- this file mirrors them check for check. Migrations 0001 and 0002 are left as they were (their
-- checksums are recorded in existing databases): this adds columns with defaults that keep
-- existing rows meaning what they meant (no heartbeat tracking, no leases) and replaces the
-- functions whose rule changed.
--
-- Time: every instant is the SERVER's clock, taken once per call with sched_now()
-- (clock_timestamp() truncated to whole milliseconds, after the worker row is locked), never the
-- client's. Stored instants are always whole milliseconds, so comparing timestamps here and
-- comparing the milliseconds the Rust side sees agree exactly.

ALTER TABLE workers
    ADD COLUMN heartbeat_timeout_ms bigint CHECK (heartbeat_timeout_ms > 0),
    ADD COLUMN on_stale             text NOT NULL DEFAULT 'keep'
                                    CHECK (on_stale IN ('keep', 'release')),
    ADD COLUMN last_heartbeat       timestamptz;

-- NULL: no lease (held until released).
ALTER TABLE reservations ADD COLUMN lease_expires_at timestamptz;

-- ---- clock and predicates ----

-- The server's clock now, in whole milliseconds (the unit of the contract).
CREATE FUNCTION sched_now() RETURNS timestamptz
LANGUAGE sql VOLATILE
AS $fn$
    SELECT date_trunc('milliseconds', clock_timestamp())
$fn$;

-- Milliseconds since the Unix epoch (NULL stays NULL).
CREATE FUNCTION sched_ms(t timestamptz) RETURNS bigint
LANGUAGE sql IMMUTABLE
AS $fn$
    SELECT floor(extract(epoch FROM t) * 1000)::bigint
$fn$;

-- Worker::is_stale_at: liveness tracked and the last heartbeat more than the timeout old (or
-- none recorded). A clock that went back (now before the heartbeat) is not stale (saturating).
CREATE FUNCTION sched_is_stale(w workers, p_now timestamptz) RETURNS boolean
LANGUAGE sql IMMUTABLE
AS $fn$
    SELECT w.heartbeat_timeout_ms IS NOT NULL
       AND (w.last_heartbeat IS NULL
            OR sched_ms(p_now) - sched_ms(w.last_heartbeat) > w.heartbeat_timeout_ms)
$fn$;

-- rules::expiry: whether the sweep takes reservation x of worker w at p_now, and why:
-- 'lease_expired' when its deadline is at or before p_now, else 'worker_stale' when w is stale
-- with on_stale = 'release', else NULL (kept). Renewal judges by the same function.
CREATE FUNCTION sched_expiry(w workers, x reservations, p_now timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE
AS $fn$
    SELECT CASE
        WHEN x.lease_expires_at <= p_now THEN 'lease_expired'
        WHEN w.on_stale = 'release' AND sched_is_stale(w, p_now) THEN 'worker_stale'
    END
$fn$;

-- The NOTIFY channel of this schema's wake-ups: 'sched_wake_' and the schema, or a SHA-256 of
-- the schema (40 hex digits) when the name would exceed the 63-byte identifier limit. Derived
-- from the schema, so deployments in different schemas of one database never hear each other.
CREATE FUNCTION sched_wake_channel() RETURNS text
LANGUAGE sql STABLE
SET search_path FROM CURRENT
AS $fn$
    SELECT 'sched_wake_' || CASE
        WHEN octet_length(current_schema()) <= 52 THEN current_schema()
        ELSE left(encode(sha256(convert_to(current_schema(), 'UTF8')), 'hex'), 40)
    END
$fn$;

-- ---- JSON shapes ----

-- sched_core::Worker as a read at p_now reports it (`stale` judged at p_now).
CREATE FUNCTION sched_worker_json(w workers, p_now timestamptz) RETURNS jsonb
LANGUAGE sql IMMUTABLE
AS $fn$
    SELECT jsonb_build_object(
        'id', w.id, 'pool', w.pool, 'status', w.status, 'priority', w.priority,
        'gpu_type', w.gpu_type, 'requires_pool_selector', w.requires_pool_selector,
        'preemptable', w.preemptable,
        'total', sched_res(w.total_cpu, w.total_mem, w.total_gpu),
        'free', sched_res(w.free_cpu, w.free_mem, w.free_gpu),
        'resource_version', w.version,
        'heartbeat_timeout_ms', w.heartbeat_timeout_ms,
        'on_stale', w.on_stale,
        'last_heartbeat_ms', sched_ms(w.last_heartbeat),
        'stale', sched_is_stale(w, p_now))
$fn$;

-- The one-argument form (0001's) now judges `stale` by the server's clock at the call.
CREATE OR REPLACE FUNCTION sched_worker_json(w workers) RETURNS jsonb
LANGUAGE sql VOLATILE
AS $fn$
    SELECT sched_worker_json(w, sched_now())
$fn$;

-- sched_core::ReservationRecord, with its lease deadline.
CREATE OR REPLACE FUNCTION sched_record_json(x reservations) RETURNS jsonb
LANGUAGE sql IMMUTABLE
AS $fn$
    SELECT jsonb_build_object('worker_id', x.worker_id, 'container_id', x.container_id,
                              'resources', sched_res(x.cpu, x.mem, x.gpu), 'gpu_type', x.gpu_type,
                              'lease_expires_at_ms', sched_ms(x.lease_expires_at))
$fn$;

-- ---- reserve ----

-- THE per-worker reserve rule at p_now (rules::reserve): 0002's rule with the heartbeat check
-- (rules::check_worker) after the status: unknown → version → status → heartbeat → per
-- reservation (held anywhere → GPU type → capacity cpu, memory, gpu). Pure, as before.
CREATE FUNCTION sched_reserve_rule(w workers, item jsonb, holders jsonb, p_partial boolean,
                                   p_now timestamptz)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
AS $fn$
DECLARE
    f_cpu    bigint := w.free_cpu;
    f_mem    bigint := w.free_mem;
    f_gpu    bigint := w.free_gpu;
    c_cpu    bigint;
    c_mem    bigint;
    c_gpu    bigint;
    r        jsonb;
    cid      text;
    accepted integer := 0;
    rej      jsonb;
BEGIN
    IF w.id IS NULL THEN
        RETURN jsonb_build_object('err', jsonb_build_object('kind', 'unknown_worker'));
    ELSIF jsonb_typeof(item->'expected_version') = 'number'
          AND (item->>'expected_version')::numeric <> w.version THEN
        RETURN jsonb_build_object('err', jsonb_build_object('kind', 'version_conflict',
            'expected', item->'expected_version', 'current', w.version));
    ELSIF w.status <> 'available' THEN
        RETURN jsonb_build_object('err', jsonb_build_object(
            'kind', 'worker_unavailable', 'status', w.status));
    ELSIF sched_is_stale(w, p_now) THEN
        RETURN jsonb_build_object('err', jsonb_build_object('kind', 'heartbeat_expired',
            'last_heartbeat_ms', sched_ms(w.last_heartbeat),
            'timeout_ms', w.heartbeat_timeout_ms));
    END IF;

    FOR r IN SELECT e.value
               FROM jsonb_array_elements(item->'reservations') WITH ORDINALITY AS e(value, ord)
              ORDER BY e.ord
    LOOP
        cid := r->>'container_id';
        -- Held anywhere, here included: rejected, naming the holder.
        IF holders ? cid THEN
            rej := jsonb_build_object('kind', 'already_reserved', 'container_id', cid,
                                      'worker_id', holders->>cid);
            EXIT;
        END IF;
        IF r->>'gpu_type' IS NOT NULL AND w.gpu_type IS DISTINCT FROM r->>'gpu_type' THEN
            rej := jsonb_build_object('kind', 'gpu_type_mismatch', 'container_id', cid,
                                      'requested', r->'gpu_type', 'actual', to_jsonb(w.gpu_type));
            EXIT;
        END IF;
        c_cpu := (r#>>'{resources,cpu_millicores}')::bigint;
        c_mem := (r#>>'{resources,memory_mib}')::bigint;
        c_gpu := (r#>>'{resources,gpu_count}')::bigint;
        IF c_cpu > f_cpu THEN
            rej := jsonb_build_object('kind', 'insufficient_capacity', 'container_id', cid,
                                      'resource', 'cpu', 'requested', c_cpu, 'available', f_cpu);
            EXIT;
        ELSIF c_mem > f_mem THEN
            rej := jsonb_build_object('kind', 'insufficient_capacity', 'container_id', cid,
                                      'resource', 'memory', 'requested', c_mem, 'available', f_mem);
            EXIT;
        ELSIF c_gpu > f_gpu THEN
            rej := jsonb_build_object('kind', 'insufficient_capacity', 'container_id', cid,
                                      'resource', 'gpu', 'requested', c_gpu, 'available', f_gpu);
            EXIT;
        END IF;
        f_cpu := f_cpu - c_cpu;
        f_mem := f_mem - c_mem;
        f_gpu := f_gpu - c_gpu;
        accepted := accepted + 1;
    END LOOP;

    IF rej IS NOT NULL AND (NOT p_partial OR accepted = 0) THEN
        RETURN jsonb_build_object('err', rej);
    END IF;
    -- Every accepted reservation is newly charged ("charged" is kept for sched_reserve_worker).
    RETURN jsonb_build_object('charged', accepted, 'ok', jsonb_build_object(
        'new_version', CASE WHEN accepted > 0 THEN w.version + 1 ELSE w.version END,
        'free', sched_res(f_cpu, f_mem, f_gpu),
        'accepted', accepted,
        'remainder', rej));
END
$fn$;

-- The rule without a clock is gone: nothing may judge a reserve without the heartbeat check.
DROP FUNCTION sched_reserve_rule(workers, jsonb, jsonb, boolean);

-- One worker's part of a burst (0001's, see there for the SR002 container race), now with the
-- server's clock taken once the row is locked: the rule judges the heartbeat at it, a leased
-- reservation's deadline is it + lease_ms (Held::of), and a committed part notifies the
-- schema's wake-up channel with the worker id. NOTIFY is transactional: a part undone by its
-- subtransaction (SR002) or a statement rolled back sends nothing.
CREATE OR REPLACE FUNCTION sched_reserve_worker(item jsonb, p_partial boolean) RETURNS jsonb
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $fn$
DECLARE
    w       workers%ROWTYPE;
    holders jsonb := '{}'::jsonb;
    res     jsonb;
    n       integer;
    now_    timestamptz;
BEGIN
    SELECT * INTO w FROM workers WHERE id = item->>'worker_id' FOR UPDATE;
    IF FOUND THEN
        SELECT coalesce(jsonb_object_agg(x.container_id, x.worker_id), '{}'::jsonb)
          INTO holders
          FROM reservations x
         WHERE x.container_id = ANY (ARRAY(
                   SELECT e->>'container_id' FROM jsonb_array_elements(item->'reservations') AS e));
    END IF;
    now_ := sched_now();   -- after the row lock
    res := sched_reserve_rule(w, item, holders, p_partial, now_);
    IF NOT (res ? 'ok') OR (res->>'charged')::integer = 0 THEN
        RETURN res;   -- nothing to write
    END IF;

    INSERT INTO reservations (container_id, worker_id, cpu, mem, gpu, gpu_type, lease_expires_at)
    SELECT e->>'container_id', w.id, (e#>>'{resources,cpu_millicores}')::bigint,
           (e#>>'{resources,memory_mib}')::bigint, (e#>>'{resources,gpu_count}')::bigint,
           e->>'gpu_type',
           CASE WHEN jsonb_typeof(e->'lease_ms') = 'number'
                THEN now_ + (e->>'lease_ms')::bigint * interval '1 millisecond' END
      FROM jsonb_array_elements(item->'reservations') WITH ORDINALITY AS t(e, ord)
     WHERE t.ord <= (res#>>'{ok,accepted}')::integer AND NOT (holders ? (e->>'container_id'))
    ON CONFLICT (container_id) DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n <> (res->>'charged')::integer THEN
        RAISE EXCEPTION 'sched: container race' USING ERRCODE = 'SR002';
    END IF;
    UPDATE workers
       SET free_cpu = (res#>>'{ok,free,cpu_millicores}')::bigint,
           free_mem = (res#>>'{ok,free,memory_mib}')::bigint,
           free_gpu = (res#>>'{ok,free,gpu_count}')::bigint,
           version = version + 1
     WHERE id = w.id;
    PERFORM pg_notify(sched_wake_channel(), w.id);
    RETURN res;
END
$fn$;

-- ---- workers ----

-- 0001's registration, storing heartbeat_timeout_ms and on_stale; registering (new or again)
-- counts as a heartbeat: last_heartbeat := the server's clock (rules::register).
CREATE OR REPLACE FUNCTION sched_register_worker(spec jsonb) RETURNS jsonb
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $fn$
DECLARE
    p_id      text   := spec->>'id';
    p_cpu     bigint := (spec#>>'{total,cpu_millicores}')::bigint;
    p_mem     bigint := (spec#>>'{total,memory_mib}')::bigint;
    p_gpu     bigint := (spec#>>'{total,gpu_count}')::bigint;
    p_timeout bigint := (spec->>'heartbeat_timeout_ms')::bigint;
    p_stale   text   := coalesce(spec->>'on_stale', 'keep');
    w         workers%ROWTYPE;
    r_cpu     numeric;
    r_mem     numeric;
    r_gpu     numeric;
    tomb      bigint;
    now_      timestamptz;
BEGIN
    LOOP
        SELECT * INTO w FROM workers WHERE id = p_id FOR UPDATE;
        now_ := sched_now();   -- after the row lock (an assignment leaves FOUND as it was)
        IF FOUND THEN
            SELECT coalesce(sum(x.cpu), 0), coalesce(sum(x.mem), 0), coalesce(sum(x.gpu), 0)
              INTO r_cpu, r_mem, r_gpu
              FROM reservations x WHERE x.worker_id = p_id;
            IF p_cpu < r_cpu THEN
                RETURN jsonb_build_object('Err', jsonb_build_object(
                    'resource', 'cpu', 'total', p_cpu, 'reserved', r_cpu));
            ELSIF p_mem < r_mem THEN
                RETURN jsonb_build_object('Err', jsonb_build_object(
                    'resource', 'memory', 'total', p_mem, 'reserved', r_mem));
            ELSIF p_gpu < r_gpu THEN
                RETURN jsonb_build_object('Err', jsonb_build_object(
                    'resource', 'gpu', 'total', p_gpu, 'reserved', r_gpu));
            END IF;
            UPDATE workers
               SET pool = spec->>'pool', status = spec->>'status',
                   priority = (spec->>'priority')::integer, gpu_type = spec->>'gpu_type',
                   requires_pool_selector = (spec->>'requires_pool_selector')::boolean,
                   preemptable = (spec->>'preemptable')::boolean,
                   total_cpu = p_cpu, total_mem = p_mem, total_gpu = p_gpu,
                   free_cpu = p_cpu - r_cpu, free_mem = p_mem - r_mem, free_gpu = p_gpu - r_gpu,
                   version = version + 1,
                   heartbeat_timeout_ms = p_timeout, on_stale = p_stale, last_heartbeat = now_
             WHERE id = p_id
            RETURNING * INTO w;
            RETURN jsonb_build_object('Ok', sched_worker_json(w, now_));
        END IF;
        SELECT t.last_version INTO tomb FROM worker_tombstones t WHERE t.id = p_id;
        INSERT INTO workers (id, pool, status, priority, gpu_type, requires_pool_selector,
                             preemptable, total_cpu, total_mem, total_gpu,
                             free_cpu, free_mem, free_gpu, version,
                             heartbeat_timeout_ms, on_stale, last_heartbeat)
        VALUES (p_id, spec->>'pool', spec->>'status', (spec->>'priority')::integer,
                spec->>'gpu_type', (spec->>'requires_pool_selector')::boolean,
                (spec->>'preemptable')::boolean, p_cpu, p_mem, p_gpu, p_cpu, p_mem, p_gpu,
                coalesce(tomb, 0) + 1, p_timeout, p_stale, now_)
        ON CONFLICT (id) DO NOTHING
        RETURNING * INTO w;
        IF FOUND THEN
            RETURN jsonb_build_object('Ok', sched_worker_json(w, now_));
        END IF;
        -- a concurrent registration inserted it first: go round and update it
    END LOOP;
END
$fn$;

-- ---- lifecycle: one call per worker, under its row lock ----

-- renew_leases (WorkerState::renew): per id, in input order: not in this worker's ledger →
-- not_held; sched_expiry says due → expired {reason} (nothing changes: the sweep takes it);
-- no lease → no_lease; else the deadline becomes now + p_lease_ms → renewed {expires_at_ms}.
-- No capacity or version change. NULL for an unknown worker. Ids are distinct (validated).
CREATE FUNCTION sched_renew_leases(p_worker text, p_ids text[], p_lease_ms bigint)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $fn$
DECLARE
    w        workers%ROWTYPE;
    now_     timestamptz;
    deadline timestamptz;
    out      jsonb;
BEGIN
    SELECT * INTO w FROM workers WHERE id = p_worker FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    now_ := sched_now();
    deadline := now_ + p_lease_ms * interval '1 millisecond';
    WITH j AS (
        SELECT t.cid, t.pos, x.container_id IS NOT NULL AS held,
               x.lease_expires_at IS NOT NULL AS leased,
               CASE WHEN x.container_id IS NOT NULL THEN sched_expiry(w, x, now_) END AS reason
          FROM unnest(p_ids) WITH ORDINALITY AS t(cid, pos)
          LEFT JOIN reservations x ON x.container_id = t.cid AND x.worker_id = w.id
    ), u AS (
        UPDATE reservations x SET lease_expires_at = deadline
          FROM j
         WHERE x.container_id = j.cid AND x.worker_id = w.id
           AND j.held AND j.leased AND j.reason IS NULL
    )
    SELECT coalesce(jsonb_agg(jsonb_build_object('container_id', j.cid, 'outcome',
               CASE WHEN NOT j.held THEN jsonb_build_object('kind', 'not_held')
                    WHEN j.reason IS NOT NULL
                         THEN jsonb_build_object('kind', 'expired', 'reason', j.reason)
                    WHEN NOT j.leased THEN jsonb_build_object('kind', 'no_lease')
                    ELSE jsonb_build_object('kind', 'renewed',
                                            'expires_at_ms', sched_ms(deadline))
               END) ORDER BY j.pos), '[]'::jsonb)
      INTO out
      FROM j;
    RETURN out;
END
$fn$;

-- Removes every reservation of the locked worker w that p_due selects (the sweep: sched_expiry
-- at p_now; release_worker: all), credits the capacity back once (capped at total, like
-- rules::release_credit) and bumps the version once if anything went. Returns
-- {"items": [{"record": ReservationRecord, "reason": text}] ordered by container id, "free",
-- "resource_version"}.
CREATE FUNCTION sched_take(w workers, p_all boolean, p_now timestamptz) RETURNS jsonb
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $fn$
DECLARE
    items jsonb;
    n     bigint;
    s_cpu bigint;
    s_mem bigint;
    s_gpu bigint;
BEGIN
    WITH d AS (
        DELETE FROM reservations x
         WHERE x.worker_id = w.id AND (p_all OR sched_expiry(w, x, p_now) IS NOT NULL)
        RETURNING x.container_id, x.cpu, x.mem, x.gpu, sched_record_json(x) AS rec,
                  CASE WHEN p_all THEN NULL ELSE sched_expiry(w, x, p_now) END AS reason
    )
    SELECT coalesce(jsonb_agg(jsonb_build_object('record', d.rec, 'reason', d.reason)
                              ORDER BY d.container_id), '[]'::jsonb),
           count(*), coalesce(sum(d.cpu), 0), coalesce(sum(d.mem), 0), coalesce(sum(d.gpu), 0)
      INTO items, n, s_cpu, s_mem, s_gpu
      FROM d;
    IF n > 0 THEN
        UPDATE workers
           SET free_cpu = LEAST(free_cpu + s_cpu, total_cpu),
               free_mem = LEAST(free_mem + s_mem, total_mem),
               free_gpu = LEAST(free_gpu + s_gpu, total_gpu),
               version  = version + 1
         WHERE id = w.id
        RETURNING * INTO w;
    END IF;
    RETURN jsonb_build_object('items', items,
                              'free', sched_res(w.free_cpu, w.free_mem, w.free_gpu),
                              'resource_version', w.version);
END
$fn$;

-- expire_leases (WorkerState::sweep): a LeaseSweep, or NULL for an unknown worker.
CREATE FUNCTION sched_expire_leases(p_worker text) RETURNS jsonb
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $fn$
DECLARE
    w    workers%ROWTYPE;
    now_ timestamptz;
    t    jsonb;
BEGIN
    SELECT * INTO w FROM workers WHERE id = p_worker FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    now_ := sched_now();
    t := sched_take(w, false, now_);
    RETURN jsonb_build_object('worker_id', w.id, 'swept_at_ms', sched_ms(now_),
                              'expired', t->'items', 'free', t->'free',
                              'resource_version', t->'resource_version');
END
$fn$;

-- release_worker (WorkerState::release_all): a WorkerRelease, or NULL for an unknown worker.
CREATE FUNCTION sched_release_worker(p_worker text) RETURNS jsonb
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $fn$
DECLARE
    w workers%ROWTYPE;
    t jsonb;
BEGIN
    SELECT * INTO w FROM workers WHERE id = p_worker FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    t := sched_take(w, true, sched_now());
    RETURN jsonb_build_object('worker_id', w.id,
        'released', coalesce((SELECT jsonb_agg(e->'record' ORDER BY ord)
                                FROM jsonb_array_elements(t->'items')
                                     WITH ORDINALITY AS a(e, ord)), '[]'::jsonb),
        'free', t->'free', 'resource_version', t->'resource_version');
END
$fn$;

-- heartbeat (WorkerState::heartbeat): last_heartbeat := now; {"at_ms", "was_stale"} (judged
-- just before), or NULL for an unknown worker. No version change.
CREATE FUNCTION sched_heartbeat(p_worker text) RETURNS jsonb
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $fn$
DECLARE
    w    workers%ROWTYPE;
    now_ timestamptz;
BEGIN
    SELECT * INTO w FROM workers WHERE id = p_worker FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    now_ := sched_now();
    UPDATE workers SET last_heartbeat = now_ WHERE id = w.id;
    RETURN jsonb_build_object('at_ms', sched_ms(now_), 'was_stale', sched_is_stale(w, now_));
END
$fn$;

-- set_worker_status (WorkerState::set_status): keeps capacity and ledger, always bumps the
-- version; the Worker after (as a read now reports it), or NULL for an unknown worker.
CREATE FUNCTION sched_set_worker_status(p_worker text, p_status text) RETURNS jsonb
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $fn$
DECLARE
    w workers%ROWTYPE;
BEGIN
    UPDATE workers SET status = p_status, version = version + 1
     WHERE id = p_worker
    RETURNING * INTO w;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    RETURN sched_worker_json(w, sched_now());
END
$fn$;
