-- sched-postgres schema, version 1.
--
-- Every object is created unqualified, so it lands in the schema that the connection's
-- search_path names (PostgresConfig::schema). Functions pin that schema with
-- `SET search_path FROM CURRENT`, so they work whatever the caller's search_path is.
--
-- Ids use COLLATE "C" so that ORDER BY id is byte order, the same as Rust's String order.

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

-- One row per worker id, locked with SELECT ... FOR UPDATE by PostgresLocks (the simulator's
-- lock-based baseline). Kept apart from `workers` so holding a lock never blocks reserve_batch.
CREATE TABLE worker_locks (
    worker_id text COLLATE "C" PRIMARY KEY
);

-- Raised inside sched_reserve_worker_slow to undo a worker's partial writes; caught per worker.
-- SQLSTATE 'SR001' carries the outcome as JSON in DETAIL.

-- One worker's part of a batch, container by container (the fallback when the bulk version below
-- loses a race with a concurrent insert of one of its containers). `item` is {"i": index, "w": worker id, "v": expected version or
-- null, "r": [{"c": container, "cpu": n, "mem": n, "gpu": n, "g": gpu type or null}, ...]}.
-- Returns {"i": index, "ok": Committed} or {"i": index, "err": Rejection} (serde shapes of
-- sched_core::Committed / Rejection).
CREATE FUNCTION sched_reserve_worker_slow(item jsonb, p_partial boolean) RETURNS jsonb
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $fn$
DECLARE
    w        workers%ROWTYPE;
    r        jsonb;
    cid      text;
    gt       text;
    holder   text;
    c_cpu    bigint;
    c_mem    bigint;
    c_gpu    bigint;
    f_cpu    bigint;
    f_mem    bigint;
    f_gpu    bigint;
    accepted integer := 0;
    charged  integer := 0;
    rej      jsonb := NULL;
    n        integer;
    tries    integer;
    out      jsonb;
BEGIN
    SELECT * INTO w FROM workers WHERE id = item->>'w' FOR UPDATE;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('i', item->'i', 'err', jsonb_build_object('kind', 'unknown_worker'));
    END IF;
    IF jsonb_typeof(item->'v') = 'number' AND (item->>'v')::numeric <> w.version THEN
        RETURN jsonb_build_object('i', item->'i', 'err', jsonb_build_object(
            'kind', 'version_conflict', 'expected', item->'v', 'current', w.version));
    END IF;
    IF w.status <> 'available' THEN
        RETURN jsonb_build_object('i', item->'i', 'err', jsonb_build_object(
            'kind', 'worker_unavailable', 'status', w.status));
    END IF;

    f_cpu := w.free_cpu;
    f_mem := w.free_mem;
    f_gpu := w.free_gpu;

    FOR r IN SELECT e.value FROM jsonb_array_elements(item->'r') WITH ORDINALITY AS e(value, ord)
             ORDER BY e.ord
    LOOP
        cid := r->>'c';
        SELECT x.worker_id INTO holder FROM reservations x WHERE x.container_id = cid;
        IF FOUND THEN
            IF holder = w.id THEN
                accepted := accepted + 1;   -- idempotent re-reserve: no second charge
                CONTINUE;
            END IF;
            rej := jsonb_build_object('kind', 'already_reserved', 'container_id', cid, 'worker_id', holder);
            EXIT;
        END IF;
        gt := r->>'g';
        IF gt IS NOT NULL AND (w.gpu_type IS NULL OR w.gpu_type <> gt) THEN
            rej := jsonb_build_object('kind', 'gpu_type_mismatch', 'container_id', cid,
                                      'requested', gt, 'actual', to_jsonb(w.gpu_type));
            EXIT;
        END IF;
        c_cpu := (r->>'cpu')::bigint;
        c_mem := (r->>'mem')::bigint;
        c_gpu := (r->>'gpu')::bigint;
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

        -- A concurrent batch may be inserting the same container for another worker. ON CONFLICT
        -- waits for it; if it committed, the container is held elsewhere.
        tries := 0;
        LOOP
            INSERT INTO reservations (container_id, worker_id, cpu, mem, gpu, gpu_type)
            VALUES (cid, w.id, c_cpu, c_mem, c_gpu, gt)
            ON CONFLICT (container_id) DO NOTHING;
            GET DIAGNOSTICS n = ROW_COUNT;
            EXIT WHEN n = 1;
            SELECT x.worker_id INTO holder FROM reservations x WHERE x.container_id = cid;
            IF FOUND THEN
                rej := jsonb_build_object('kind', 'already_reserved', 'container_id', cid, 'worker_id', holder);
                EXIT;
            END IF;
            tries := tries + 1;
            IF tries >= 3 THEN
                RAISE EXCEPTION 'container % keeps changing hands', cid USING ERRCODE = '40001';
            END IF;
        END LOOP;
        EXIT WHEN rej IS NOT NULL;

        f_cpu := f_cpu - c_cpu;
        f_mem := f_mem - c_mem;
        f_gpu := f_gpu - c_gpu;
        charged := charged + 1;
        accepted := accepted + 1;
    END LOOP;

    IF rej IS NOT NULL AND (NOT p_partial OR accepted = 0) THEN
        out := jsonb_build_object('i', item->'i', 'err', rej);
        IF charged > 0 THEN
            -- undo this worker's inserts (the caller's EXCEPTION block rolls back to its savepoint)
            RAISE EXCEPTION 'sched: worker part rejected' USING ERRCODE = 'SR001', DETAIL = out::text;
        END IF;
        RETURN out;
    END IF;

    IF charged > 0 THEN
        UPDATE workers
           SET free_cpu = f_cpu, free_mem = f_mem, free_gpu = f_gpu, version = version + 1
         WHERE id = w.id
        RETURNING version INTO w.version;
    END IF;

    RETURN jsonb_build_object('i', item->'i', 'ok', jsonb_build_object(
        'new_version', w.version,
        'free', jsonb_build_object('cpu_millicores', f_cpu, 'memory_mib', f_mem, 'gpu_count', f_gpu),
        'accepted', accepted,
        'remainder', rej));
END
$fn$;

-- One worker's part of a batch, in bulk: the container holders are read with ONE query and the
-- charged prefix is inserted with ONE statement. If a concurrent batch inserts one of the
-- containers between the two (a lost race), it raises SR002 and the batch redoes the worker with
-- sched_reserve_worker_slow, which handles that race container by container.
CREATE FUNCTION sched_reserve_worker(item jsonb, p_partial boolean) RETURNS jsonb
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $fn$
DECLARE
    w        workers%ROWTYPE;
    r        jsonb;
    holders  jsonb;
    cid      text;
    gt       text;
    holder   text;
    c_cpu    bigint;
    c_mem    bigint;
    c_gpu    bigint;
    f_cpu    bigint;
    f_mem    bigint;
    f_gpu    bigint;
    accepted integer := 0;
    charged  jsonb := '[]'::jsonb;
    n_charge integer := 0;
    rej      jsonb := NULL;
    n        integer;
BEGIN
    SELECT * INTO w FROM workers WHERE id = item->>'w' FOR UPDATE;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('i', item->'i', 'err', jsonb_build_object('kind', 'unknown_worker'));
    END IF;
    IF jsonb_typeof(item->'v') = 'number' AND (item->>'v')::numeric <> w.version THEN
        RETURN jsonb_build_object('i', item->'i', 'err', jsonb_build_object(
            'kind', 'version_conflict', 'expected', item->'v', 'current', w.version));
    END IF;
    IF w.status <> 'available' THEN
        RETURN jsonb_build_object('i', item->'i', 'err', jsonb_build_object(
            'kind', 'worker_unavailable', 'status', w.status));
    END IF;

    SELECT coalesce(jsonb_object_agg(x.container_id, x.worker_id), '{}'::jsonb)
      INTO holders
      FROM reservations x
     WHERE x.container_id = ANY (ARRAY(SELECT e->>'c' FROM jsonb_array_elements(item->'r') AS e));

    f_cpu := w.free_cpu;
    f_mem := w.free_mem;
    f_gpu := w.free_gpu;

    FOR r IN SELECT e.value FROM jsonb_array_elements(item->'r') WITH ORDINALITY AS e(value, ord)
             ORDER BY e.ord
    LOOP
        cid := r->>'c';
        holder := holders->>cid;
        IF holder IS NOT NULL THEN
            IF holder = w.id THEN
                accepted := accepted + 1;   -- idempotent re-reserve: no second charge
                CONTINUE;
            END IF;
            rej := jsonb_build_object('kind', 'already_reserved', 'container_id', cid, 'worker_id', holder);
            EXIT;
        END IF;
        gt := r->>'g';
        IF gt IS NOT NULL AND (w.gpu_type IS NULL OR w.gpu_type <> gt) THEN
            rej := jsonb_build_object('kind', 'gpu_type_mismatch', 'container_id', cid,
                                      'requested', gt, 'actual', to_jsonb(w.gpu_type));
            EXIT;
        END IF;
        c_cpu := (r->>'cpu')::bigint;
        c_mem := (r->>'mem')::bigint;
        c_gpu := (r->>'gpu')::bigint;
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
        charged := charged || jsonb_build_array(r);
        n_charge := n_charge + 1;
        accepted := accepted + 1;
    END LOOP;

    IF rej IS NOT NULL AND (NOT p_partial OR accepted = 0) THEN
        -- nothing was written yet
        RETURN jsonb_build_object('i', item->'i', 'err', rej);
    END IF;

    IF n_charge > 0 THEN
        INSERT INTO reservations (container_id, worker_id, cpu, mem, gpu, gpu_type)
        SELECT t.c, w.id, t.cpu, t.mem, t.gpu, t.g
          FROM jsonb_to_recordset(charged) AS t(c text, cpu bigint, mem bigint, gpu bigint, g text)
        ON CONFLICT (container_id) DO NOTHING;
        GET DIAGNOSTICS n = ROW_COUNT;
        IF n <> n_charge THEN
            -- lost a race for a container: undo and redo this worker container by container
            RAISE EXCEPTION 'sched: container race' USING ERRCODE = 'SR002';
        END IF;
        UPDATE workers
           SET free_cpu = f_cpu, free_mem = f_mem, free_gpu = f_gpu, version = version + 1
         WHERE id = w.id
        RETURNING version INTO w.version;
    END IF;

    RETURN jsonb_build_object('i', item->'i', 'ok', jsonb_build_object(
        'new_version', w.version,
        'free', jsonb_build_object('cpu_millicores', f_cpu, 'memory_mib', f_mem, 'gpu_count', f_gpu),
        'accepted', accepted,
        'remainder', rej));
END
$fn$;

-- A whole reserve_batch in one call: workers in id order (so concurrent batches lock rows in the
-- same order), each in its own subtransaction so one worker's rejection never undoes another's
-- commit. Returns the per-worker outcomes (in id order; each carries its input index "i").
CREATE FUNCTION sched_reserve_batch(p_batch jsonb, p_partial boolean) RETURNS jsonb
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $fn$
DECLARE
    item   jsonb;
    res    jsonb;
    detail text;
    out    jsonb := '[]'::jsonb;
BEGIN
    FOR item IN SELECT e.value FROM jsonb_array_elements(p_batch) AS e(value)
                ORDER BY (e.value->>'w') COLLATE "C"
    LOOP
        BEGIN
            res := sched_reserve_worker(item, p_partial);
        EXCEPTION WHEN SQLSTATE 'SR002' THEN
            BEGIN
                res := sched_reserve_worker_slow(item, p_partial);
            EXCEPTION WHEN SQLSTATE 'SR001' THEN
                GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
                res := detail::jsonb;
            END;
        END;
        out := out || jsonb_build_array(res);
    END LOOP;
    RETURN out;
END
$fn$;

-- A whole release_batch in one call. All holders are locked in worker id order with one statement, then one DELETE and one UPDATE. Within a worker the
-- version goes up by one per released container, in input order, like the reference backend.
-- Returns [{"p": 1-based input position, "w": worker, "cpu": n, "mem": n, "gpu": n, "v": version}].
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
    IF wids IS NULL THEN
        RETURN '[]'::jsonb;
    END IF;
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
        SELECT d.*, row_number() OVER (PARTITION BY d.worker_id ORDER BY d.pos) AS k FROM d
    )
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'p', r.pos, 'w', r.worker_id, 'cpu', r.cpu, 'mem', r.mem, 'gpu', r.gpu,
               'v', u.version - u.n + r.k)), '[]'::jsonb)
      INTO out
      FROM r JOIN u ON u.id = r.worker_id;
    RETURN out;
END
$fn$;

-- Registers or re-registers a worker. Returns {"ok": true} with the row's columns, or
-- {"error": "total_below_reserved", "resource": ..., "total": n, "reserved": n}.
CREATE FUNCTION sched_register_worker(
    p_id text, p_pool text, p_status text, p_priority integer, p_gpu_type text,
    p_requires_pool_selector boolean, p_preemptable boolean,
    p_cpu bigint, p_mem bigint, p_gpu bigint
) RETURNS jsonb
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $fn$
DECLARE
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
                RETURN jsonb_build_object('error', 'total_below_reserved', 'resource', 'cpu',
                                          'total', p_cpu, 'reserved', r_cpu);
            ELSIF p_mem < r_mem THEN
                RETURN jsonb_build_object('error', 'total_below_reserved', 'resource', 'memory',
                                          'total', p_mem, 'reserved', r_mem);
            ELSIF p_gpu < r_gpu THEN
                RETURN jsonb_build_object('error', 'total_below_reserved', 'resource', 'gpu',
                                          'total', p_gpu, 'reserved', r_gpu);
            END IF;
            UPDATE workers
               SET pool = p_pool, status = p_status, priority = p_priority, gpu_type = p_gpu_type,
                   requires_pool_selector = p_requires_pool_selector, preemptable = p_preemptable,
                   total_cpu = p_cpu, total_mem = p_mem, total_gpu = p_gpu,
                   free_cpu = p_cpu - r_cpu, free_mem = p_mem - r_mem, free_gpu = p_gpu - r_gpu,
                   version = version + 1
             WHERE id = p_id
            RETURNING * INTO w;
            RETURN jsonb_build_object('ok', true, 'version', w.version, 'free_cpu', w.free_cpu,
                                      'free_mem', w.free_mem, 'free_gpu', w.free_gpu);
        END IF;
        SELECT t.last_version INTO tomb FROM worker_tombstones t WHERE t.id = p_id;
        INSERT INTO workers (id, pool, status, priority, gpu_type, requires_pool_selector,
                             preemptable, total_cpu, total_mem, total_gpu,
                             free_cpu, free_mem, free_gpu, version)
        VALUES (p_id, p_pool, p_status, p_priority, p_gpu_type, p_requires_pool_selector,
                p_preemptable, p_cpu, p_mem, p_gpu, p_cpu, p_mem, p_gpu, coalesce(tomb, 0) + 1)
        ON CONFLICT (id) DO NOTHING
        RETURNING * INTO w;
        IF FOUND THEN
            INSERT INTO worker_locks (worker_id) VALUES (p_id) ON CONFLICT (worker_id) DO NOTHING;
            RETURN jsonb_build_object('ok', true, 'version', w.version, 'free_cpu', w.free_cpu,
                                      'free_mem', w.free_mem, 'free_gpu', w.free_gpu);
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
        'total', jsonb_build_object('cpu_millicores', a.total_cpu, 'memory_mib', a.total_mem, 'gpu_count', a.total_gpu),
        'free', jsonb_build_object('cpu_millicores', a.free_cpu, 'memory_mib', a.free_mem, 'gpu_count', a.free_gpu),
        'reserved', jsonb_build_object('cpu_millicores', a.r_cpu, 'memory_mib', a.r_mem, 'gpu_count', a.r_gpu),
        'reservations', a.n,
        'version', a.version);
END
$fn$;

-- Tries to take a worker's baseline lock in the caller's open transaction: true when taken,
-- false when someone holds it, NULL when the worker has no lock row yet. Lock rows are created
-- at registration, or by the client in a short separate statement before retrying, never inside
-- a lock-holding transaction (an insert racing a holder's uncommitted insert would wait for it).
CREATE FUNCTION sched_try_lock(p_id text) RETURNS boolean
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $fn$
BEGIN
    PERFORM 1 FROM worker_locks WHERE worker_id = p_id FOR UPDATE NOWAIT;
    IF FOUND THEN
        RETURN true;
    END IF;
    RETURN NULL;
EXCEPTION WHEN lock_not_available THEN
    RETURN false;
END
$fn$;
