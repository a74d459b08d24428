-- sched-postgres schema, version 1.
--
-- The per-worker rules written here in SQL -- reserve (sched_reserve_rule), release
-- (sched_release_batch) and audit/repair (sched_audit) -- mirror the reference rules that
-- sched-core keeps as pure functions in `src/rules.rs`: same checks, same order, same outcomes.
-- A change to one must be made to the other (the shared conformance suite checks they agree).
--
-- Every object is created unqualified, so it lands in the schema that the connection's
-- search_path names (PostgresConfig::schema). Functions that touch tables pin that schema with
-- `SET search_path FROM CURRENT`, so they work whatever the caller's search_path is.
--
-- Ids use COLLATE "C" so that ORDER BY id is byte order, the same as Rust's String order.
--
-- JSON crosses the wire in the serde shapes of sched-core's types (CapacityReservation,
-- WorkerResult, ReleaseOutcome, Worker, ReservationRecord, Resources, Rejection).

CREATE TABLE workers (
    id                     text COLLATE "C" PRIMARY KEY,
    pool                   text COLLATE "C" NOT NULL,
    status                 text NOT NULL CHECK (status IN ('available', 'draining', 'disabled')),
    priority               integer NOT NULL,
    gpu_type               text COLLATE "C",
    requires_pool_selector boolean NOT NULL,
    preemptable            boolean NOT NULL,
    total_cpu              bigint NOT NULL CHECK (total_cpu >= 0),
    total_mem              bigint NOT NULL CHECK (total_mem >= 0),
    total_gpu              bigint NOT NULL CHECK (total_gpu >= 0),
    free_cpu               bigint NOT NULL CHECK (free_cpu BETWEEN 0 AND total_cpu),
    free_mem               bigint NOT NULL CHECK (free_mem BETWEEN 0 AND total_mem),
    free_gpu               bigint NOT NULL CHECK (free_gpu BETWEEN 0 AND total_gpu),
    version                bigint NOT NULL CHECK (version > 0)
);

CREATE INDEX workers_pool_id ON workers (pool, id);

-- The ledger. The primary key makes the database enforce "one holder per container".
CREATE TABLE reservations (
    container_id text COLLATE "C" PRIMARY KEY,
    worker_id    text COLLATE "C" NOT NULL REFERENCES workers (id) ON DELETE CASCADE,
    cpu          bigint NOT NULL CHECK (cpu >= 0),
    mem          bigint NOT NULL CHECK (mem >= 0),
    gpu          bigint NOT NULL CHECK (gpu >= 0),
    gpu_type     text COLLATE "C",
    CHECK (cpu + mem + gpu > 0)
);

CREATE INDEX reservations_worker ON reservations (worker_id, container_id);

-- Last version of each removed worker, so a re-registered id continues above it.
CREATE TABLE worker_tombstones (
    id           text COLLATE "C" PRIMARY KEY,
    last_version bigint NOT NULL
);

-- ---- JSON shapes ----

-- sched_core::Resources.
CREATE FUNCTION sched_res(cpu numeric, mem numeric, gpu numeric) RETURNS jsonb
LANGUAGE sql IMMUTABLE
AS $fn$
    SELECT jsonb_build_object('cpu_millicores', cpu, 'memory_mib', mem, 'gpu_count', gpu)
$fn$;

-- sched_core::Worker.
CREATE FUNCTION sched_worker_json(w workers) RETURNS jsonb
LANGUAGE sql IMMUTABLE
AS $fn$
    SELECT jsonb_build_object(
        'id', w.id, 'pool', w.pool, 'status', w.status, 'priority', w.priority,
        'gpu_type', w.gpu_type, 'requires_pool_selector', w.requires_pool_selector,
        'preemptable', w.preemptable,
        'total', sched_res(w.total_cpu, w.total_mem, w.total_gpu),
        'free', sched_res(w.free_cpu, w.free_mem, w.free_gpu),
        'resource_version', w.version)
$fn$;

-- sched_core::ReservationRecord.
CREATE FUNCTION sched_record_json(x reservations) RETURNS jsonb
LANGUAGE sql IMMUTABLE
AS $fn$
    SELECT jsonb_build_object('worker_id', x.worker_id, 'container_id', x.container_id,
                              'resources', sched_res(x.cpu, x.mem, x.gpu), 'gpu_type', x.gpu_type)
$fn$;

-- ---- reserve ----

-- THE per-worker reserve rule (sched_core::rules), the one both reserve paths below use. Pure:
-- it reads no table and writes nothing. `w` is the worker's locked row (all NULL when the worker
-- is unknown), `item` a CapacityReservation, `holders` maps each of item's containers that is
-- already held to its holder. Checks in the contract's order: unknown worker, version, status,
-- then per reservation in request order: held here (accepted, no second charge), held elsewhere,
-- GPU type, capacity (cpu, memory, gpu) against the free amounts left by the ones before.
-- Returns {"err": Rejection}, or {"ok": Committed, "charged": n}: the first ok.accepted
-- reservations are held on w afterwards, n of them newly (those not in `holders`).
CREATE FUNCTION sched_reserve_rule(w workers, item jsonb, holders jsonb, p_partial boolean)
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
    charged  integer := 0;
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
    END IF;

    FOR r IN SELECT e.value
               FROM jsonb_array_elements(item->'reservations') WITH ORDINALITY AS e(value, ord)
              ORDER BY e.ord
    LOOP
        cid := r->>'container_id';
        IF holders ? cid THEN
            IF holders->>cid = w.id THEN
                accepted := accepted + 1;   -- idempotent re-reserve: no second charge
                CONTINUE;
            END IF;
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
        charged := charged + 1;
        accepted := accepted + 1;
    END LOOP;

    IF rej IS NOT NULL AND (NOT p_partial OR accepted = 0) THEN
        RETURN jsonb_build_object('err', rej);
    END IF;
    RETURN jsonb_build_object('charged', charged, 'ok', jsonb_build_object(
        'new_version', CASE WHEN charged > 0 THEN w.version + 1 ELSE w.version END,
        'free', sched_res(f_cpu, f_mem, f_gpu),
        'accepted', accepted,
        'remainder', rej));
END
$fn$;

-- One worker's part of a burst: lock its row, read the holders of its containers with ONE query,
-- apply sched_reserve_rule, insert the newly charged reservations with ONE statement and update
-- the row once. Returns the rule's answer.
--
-- The row lock does not cover one race: a concurrent burst inserting one of these containers
-- (for another worker) after the holder look-up. The INSERT's ON CONFLICT waits for that
-- transaction; if it commits, fewer rows are inserted and SQLSTATE SR002 undoes this worker's
-- part (row lock included). sched_reserve_batch then runs it again: its new look-up sees the
-- new holder, and the same rule decides.
CREATE FUNCTION sched_reserve_worker(item jsonb, p_partial boolean) RETURNS jsonb
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $fn$
DECLARE
    w       workers%ROWTYPE;
    holders jsonb := '{}'::jsonb;
    res     jsonb;
    n       integer;
BEGIN
    SELECT * INTO w FROM workers WHERE id = item->>'worker_id' FOR UPDATE;
    IF FOUND THEN
        SELECT coalesce(jsonb_object_agg(x.container_id, x.worker_id), '{}'::jsonb)
          INTO holders
          FROM reservations x
         WHERE x.container_id = ANY (ARRAY(
                   SELECT e->>'container_id' FROM jsonb_array_elements(item->'reservations') AS e));
    END IF;
    res := sched_reserve_rule(w, item, holders, p_partial);
    IF NOT (res ? 'ok') OR (res->>'charged')::integer = 0 THEN
        RETURN res;   -- nothing to write
    END IF;

    INSERT INTO reservations (container_id, worker_id, cpu, mem, gpu, gpu_type)
    SELECT e->>'container_id', w.id, (e#>>'{resources,cpu_millicores}')::bigint,
           (e#>>'{resources,memory_mib}')::bigint, (e#>>'{resources,gpu_count}')::bigint,
           e->>'gpu_type'
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
    RETURN res;
END
$fn$;

-- A whole reserve_batch (a JSON array of CapacityReservation) in one call: workers in id order
-- (so concurrent bursts lock rows in the same order), each in its own subtransaction (the
-- BEGIN ... EXCEPTION block) so one worker's rejection never undoes another's commit. A worker
-- that lost a container race (SR002) is run again, at most 3 more times; then the statement
-- fails with a serialization failure, which the client retries. Returns a JSON array of
-- WorkerResult in input order.
CREATE FUNCTION sched_reserve_batch(p_batch jsonb, p_partial boolean) RETURNS jsonb
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $fn$
DECLARE
    e    record;
    res  jsonb;
    outs jsonb[] := array_fill(NULL::jsonb, ARRAY[jsonb_array_length(p_batch)]);
BEGIN
    FOR e IN SELECT t.item, t.ord::integer AS ord
               FROM jsonb_array_elements(p_batch) WITH ORDINALITY AS t(item, ord)
              ORDER BY (t.item->>'worker_id') COLLATE "C"
    LOOP
        FOR attempt IN 1..4 LOOP
            BEGIN
                res := sched_reserve_worker(e.item, p_partial);
                EXIT;
            EXCEPTION WHEN SQLSTATE 'SR002' THEN
                IF attempt = 4 THEN
                    RAISE EXCEPTION 'sched: containers of worker % keep changing hands',
                        e.item->>'worker_id' USING ERRCODE = '40001';
                END IF;
            END;
        END LOOP;
        outs[e.ord] := jsonb_build_object('worker_id', e.item->'worker_id', 'outcome',
            CASE WHEN res ? 'ok' THEN jsonb_build_object('Ok', res->'ok')
                 ELSE jsonb_build_object('Err', res->'err') END);
    END LOOP;
    RETURN to_jsonb(outs);
END
$fn$;

-- ---- release ----

-- A whole release_batch in one call. All holders are locked in worker id order with one
-- statement, then one DELETE and one UPDATE (free = LEAST(free + released, total)). Within a
-- worker the version goes up by one per released container, in input order, like the reference
-- rule. Returns a JSON array of ReleaseOutcome in input order.
CREATE FUNCTION sched_release_batch(p_ids text[]) RETURNS jsonb
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $fn$
DECLARE
    wids text[];
    out  jsonb;
BEGIN
    SELECT array_agg(DISTINCT x.worker_id) INTO wids
      FROM reservations x WHERE x.container_id = ANY (p_ids);
    -- lock every holder, in id order
    PERFORM 1 FROM workers WHERE id = ANY (wids) ORDER BY id FOR UPDATE;
    -- Only ledgers of locked workers are touched. A container that moved to another worker
    -- since the lookup was released in between: it is not ours to release now.
    WITH d AS (
        DELETE FROM reservations x
         USING unnest(p_ids) WITH ORDINALITY AS t(cid, pos)
         WHERE x.container_id = t.cid AND x.worker_id = ANY (wids)
        RETURNING x.worker_id, t.pos, x.cpu, x.mem, x.gpu
    ), s AS (
        SELECT d.worker_id, count(*) AS n, sum(d.cpu) AS c, sum(d.mem) AS m, sum(d.gpu) AS g
          FROM d GROUP BY d.worker_id
    ), u AS (
        UPDATE workers w
           SET free_cpu = LEAST(w.free_cpu + s.c, w.total_cpu),
               free_mem = LEAST(w.free_mem + s.m, w.total_mem),
               free_gpu = LEAST(w.free_gpu + s.g, w.total_gpu),
               version  = w.version + s.n
          FROM s
         WHERE w.id = s.worker_id
        RETURNING w.id, w.version, s.n
    ), r AS (
        SELECT d.*, u.version - u.n + row_number() OVER (PARTITION BY d.worker_id ORDER BY d.pos) AS v
          FROM d JOIN u ON u.id = d.worker_id
    )
    SELECT coalesce(jsonb_agg(jsonb_build_object('container_id', t.cid, 'released',
               CASE WHEN r.pos IS NOT NULL THEN jsonb_build_object('worker_id', r.worker_id,
                   'resources', sched_res(r.cpu, r.mem, r.gpu), 'new_version', r.v) END)
               ORDER BY t.pos), '[]'::jsonb)
      INTO out
      FROM unnest(p_ids) WITH ORDINALITY AS t(cid, pos)
      LEFT JOIN r ON r.pos = t.pos;
    RETURN out;
END
$fn$;

-- ---- workers ----

-- Registers or re-registers a worker (`spec` is a WorkerSpec). Returns {"Ok": Worker}, or
-- {"Err": {"resource": ..., "total": n, "reserved": n}} when the new total is below what is
-- reserved (serde's shape of a Result).
CREATE FUNCTION sched_register_worker(spec jsonb) RETURNS jsonb
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $fn$
DECLARE
    p_id  text   := spec->>'id';
    p_cpu bigint := (spec#>>'{total,cpu_millicores}')::bigint;
    p_mem bigint := (spec#>>'{total,memory_mib}')::bigint;
    p_gpu bigint := (spec#>>'{total,gpu_count}')::bigint;
    w     workers%ROWTYPE;
    r_cpu numeric;
    r_mem numeric;
    r_gpu numeric;
    tomb  bigint;
BEGIN
    LOOP
        SELECT * INTO w FROM workers WHERE id = p_id FOR UPDATE;
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
                   version = version + 1
             WHERE id = p_id
            RETURNING * INTO w;
            RETURN jsonb_build_object('Ok', sched_worker_json(w));
        END IF;
        SELECT t.last_version INTO tomb FROM worker_tombstones t WHERE t.id = p_id;
        INSERT INTO workers (id, pool, status, priority, gpu_type, requires_pool_selector,
                             preemptable, total_cpu, total_mem, total_gpu,
                             free_cpu, free_mem, free_gpu, version)
        VALUES (p_id, spec->>'pool', spec->>'status', (spec->>'priority')::integer,
                spec->>'gpu_type', (spec->>'requires_pool_selector')::boolean,
                (spec->>'preemptable')::boolean, p_cpu, p_mem, p_gpu, p_cpu, p_mem, p_gpu,
                coalesce(tomb, 0) + 1)
        ON CONFLICT (id) DO NOTHING
        RETURNING * INTO w;
        IF FOUND THEN
            RETURN jsonb_build_object('Ok', sched_worker_json(w));
        END IF;
        -- a concurrent registration inserted it first: go round and update it
    END LOOP;
END
$fn$;

-- Removes a worker (its ledger goes with it, ON DELETE CASCADE) and remembers its version.
CREATE FUNCTION sched_remove_worker(p_id text) RETURNS boolean
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $fn$
DECLARE
    v bigint;
BEGIN
    DELETE FROM workers WHERE id = p_id RETURNING version INTO v;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    INSERT INTO worker_tombstones (id, last_version) VALUES (p_id, v)
    ON CONFLICT (id) DO UPDATE
        SET last_version = GREATEST(worker_tombstones.last_version, EXCLUDED.last_version);
    RETURN true;
END
$fn$;

-- ---- audit ----

-- Audits a worker and, when p_repair, sets free = total - sum(ledger) if that differs (bumping
-- the version). Returns the state before the repair, or NULL for an unknown worker. The worker
-- row and its ledger are read by ONE statement (one snapshot), so a concurrent write can never
-- show up as drift; when repairing, the row is locked first (every ledger writer holds it).
CREATE FUNCTION sched_audit(p_id text, p_repair boolean) RETURNS jsonb
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $fn$
DECLARE
    a     record;
    e_cpu bigint;
    e_mem bigint;
    e_gpu bigint;
BEGIN
    IF p_repair THEN
        PERFORM 1 FROM workers WHERE id = p_id FOR UPDATE;
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
    END IF;
    SELECT w.total_cpu, w.total_mem, w.total_gpu, w.free_cpu, w.free_mem, w.free_gpu, w.version,
           s.r_cpu, s.r_mem, s.r_gpu, s.n
      INTO a
      FROM workers w
      CROSS JOIN LATERAL (
          SELECT coalesce(sum(x.cpu), 0) AS r_cpu, coalesce(sum(x.mem), 0) AS r_mem,
                 coalesce(sum(x.gpu), 0) AS r_gpu, count(*) AS n
            FROM reservations x WHERE x.worker_id = w.id
      ) s
     WHERE w.id = p_id;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF p_repair THEN
        e_cpu := GREATEST(a.total_cpu - a.r_cpu, 0);
        e_mem := GREATEST(a.total_mem - a.r_mem, 0);
        e_gpu := GREATEST(a.total_gpu - a.r_gpu, 0);
        IF e_cpu <> a.free_cpu OR e_mem <> a.free_mem OR e_gpu <> a.free_gpu
           OR a.r_cpu > a.total_cpu OR a.r_mem > a.total_mem OR a.r_gpu > a.total_gpu THEN
            UPDATE workers SET free_cpu = e_cpu, free_mem = e_mem, free_gpu = e_gpu,
                               version = version + 1
             WHERE id = p_id;
        END IF;
    END IF;
    RETURN jsonb_build_object(
        'total', sched_res(a.total_cpu, a.total_mem, a.total_gpu),
        'free', sched_res(a.free_cpu, a.free_mem, a.free_gpu),
        'reserved', sched_res(a.r_cpu, a.r_mem, a.r_gpu),
        'reservations', a.n,
        'version', a.version);
END
$fn$;
