-- sched-postgres schema, version 2: fewer statements per burst.
--
-- reserve: per worker, the container holders are read with ONE query and the charged prefix is
-- inserted with ONE statement (instead of two statements per container). If a concurrent batch
-- inserts one of the containers between the two (a lost race), the worker's part is rolled back
-- and redone by the per-container version of 0001 (renamed sched_reserve_worker_slow), which
-- handles that race container by container.
-- release: all holders locked in id order with one statement, then one DELETE and one UPDATE.

ALTER FUNCTION sched_reserve_worker(jsonb, boolean) RENAME TO sched_reserve_worker_slow;

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

CREATE OR REPLACE FUNCTION sched_reserve_batch(p_batch jsonb, p_partial boolean) RETURNS jsonb
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

CREATE OR REPLACE FUNCTION sched_release_batch(p_ids text[]) RETURNS jsonb
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
