-- sched-postgres schema, version 5: a leaner set-based burst (issue 12, performance).
--
-- 0004's sched_reserve_batch judged the whole burst in one statement, but looked up the holders
-- with a join the planner ran as a sequential scan of the whole ledger once per worker part (a
-- hash join inside the lateral loop over each part's reservations): its time grew with the
-- ledger (~50 µs per container at a few thousand entries, ~100 µs at 10,000). This version
-- keeps the rule and the answers exactly, and does a fixed number of simply planned statements:
--
--   1. unpack the burst once into typed arrays (one pass over the JSON);
--   2. lock every touched worker row in id order, reading the locked rows into an array
--      (the rows are not read again);
--   3. read the server's clock once, after the locks;
--   4. look up the holders of all containers with one index probe each
--      (container_id = ANY (...) on the primary key: independent of the ledger's size);
--   5. one statement judges every part over the arrays (window sums per part, as in 0004) and
--      returns the answer, the accepted count of each committing part and the new free amounts;
--   6. one INSERT ... SELECT ... ON CONFLICT DO NOTHING of the accepted reservations
--      (no RETURNING: the count is enough);
--   7. one UPDATE ... FROM unnest(...) of the committing workers, one pg_notify per worker.
--
-- The container race is handled as in 0004: when fewer rows were inserted than accepted,
-- another burst committed one of our containers for a worker we do not lock. The rows this
-- attempt inserted are exactly the accepted (container, worker) pairs now in the ledger (nobody
-- else can insert for a worker whose row we hold, and none of those pairs existed at the
-- look-up, or the container would have been rejected), so they are deleted again and steps 4-6
-- run again. After 3 redos the statement fails with 40001 and the client retries it.
--
-- A burst that repeats a worker or container id still goes to sched_reserve_batch_each (0004).

-- The burst as arrays (what reserve_batch sends: no JSON to parse on the way in). Part i
-- (1-based, input order) is worker p_wids[i] with expected version p_evs[i] (NULL: none);
-- reservation j is p_cids[j] with p_cpu/p_mem/p_gpu/p_gt/p_lease[j] (p_lease: lease_ms, NULL:
-- no lease) for part p_rw[j], at position p_rk[j] (1-based) within it. Returns the JSON array
-- of WorkerResult in part order, like sched_reserve_batch.
CREATE FUNCTION sched_reserve_burst(p_wids text[], p_evs numeric[], p_rw integer[],
                                    p_rk integer[], p_cids text[], p_cpu bigint[],
                                    p_mem bigint[], p_gpu bigint[], p_gt text[],
                                    p_lease bigint[], p_partial boolean)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path FROM CURRENT
SET enable_seqscan = off
AS $fn$
DECLARE
    nacc    integer[];
    -- the locked worker rows, and the holders found
    ws      workers[];
    h_cid   text[];
    h_wid   text[];
    now_    timestamptz;
    out     jsonb;
    n_exp   bigint;
    n_ins   bigint;
    u_ids   text[];
    u_cpu   bigint[];
    u_mem   bigint[];
    u_gpu   bigint[];
    channel text := sched_wake_channel();
BEGIN
    IF cardinality(p_evs) IS DISTINCT FROM cardinality(p_wids)
       OR NOT (cardinality(p_cids) = ALL (ARRAY[cardinality(p_rw), cardinality(p_rk),
                   cardinality(p_cpu), cardinality(p_mem), cardinality(p_gpu),
                   cardinality(p_gt), cardinality(p_lease)])) THEN
        RAISE EXCEPTION 'sched_reserve_burst: arrays of different lengths'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- A NULL or repeated id: the worker-by-worker function (0004), with the burst as JSON.
    IF (SELECT count(*) <> count(DISTINCT x) FROM unnest(p_wids) AS x)
       OR (SELECT count(*) <> count(DISTINCT x) FROM unnest(p_cids) AS x) THEN
        RETURN sched_reserve_batch_each(
            (SELECT jsonb_agg(jsonb_build_object(
                        'worker_id', t.wid, 'expected_version', t.ev,
                        'reservations', coalesce((
                            SELECT jsonb_agg(jsonb_build_object(
                                       'container_id', u.cid,
                                       'resources', jsonb_build_object(
                                           'cpu_millicores', u.cpu, 'memory_mib', u.mem,
                                           'gpu_count', u.gpu),
                                       'gpu_type', u.gt, 'lease_ms', u.lease) ORDER BY u.k)
                              FROM unnest(p_rw, p_rk, p_cids, p_cpu, p_mem, p_gpu, p_gt, p_lease)
                                   AS u(wpos, k, cid, cpu, mem, gpu, gt, lease)
                             WHERE u.wpos = t.wpos), '[]'::jsonb)) ORDER BY t.wpos)
               FROM unnest(p_wids, p_evs) WITH ORDINALITY AS t(wid, ev, wpos)),
            p_partial);
    END IF;

    -- 2. every touched worker row, in id order (COLLATE "C": byte order). A worker registered
    -- after this is unknown to this burst (it is not locked).
    SELECT array_agg(l.w) INTO ws
      FROM (SELECT w FROM workers w WHERE w.id = ANY (p_wids) ORDER BY w.id FOR UPDATE) AS l;
    -- 3. the server's clock, after the locks
    now_ := sched_now();

    FOR attempt IN 1..4 LOOP
        -- 4. the holders, one primary-key probe per container
        SELECT array_agg(x.container_id), array_agg(x.worker_id) INTO h_cid, h_wid
          FROM reservations x WHERE x.container_id = ANY (p_cids);

        -- 5. judge every part
        WITH it AS (
            SELECT t.wpos, t.wid, t.ev, w.id AS lid, w.version,
                   w.free_cpu AS fc, w.free_mem AS fm, w.free_gpu AS fg, w.gpu_type AS wgt,
                   CASE
                     WHEN w.id IS NULL THEN jsonb_build_object('kind', 'unknown_worker')
                     WHEN t.ev <> w.version
                       THEN jsonb_build_object('kind', 'version_conflict', 'expected', t.ev,
                                               'current', w.version)
                     WHEN w.status <> 'available'
                       THEN jsonb_build_object('kind', 'worker_unavailable', 'status', w.status)
                     WHEN w.heartbeat_timeout_ms IS NOT NULL
                          AND (w.last_heartbeat IS NULL
                               OR sched_ms(now_) - sched_ms(w.last_heartbeat)
                                  > w.heartbeat_timeout_ms)
                       THEN jsonb_build_object('kind', 'heartbeat_expired',
                                               'last_heartbeat_ms', sched_ms(w.last_heartbeat),
                                               'timeout_ms', w.heartbeat_timeout_ms)
                   END AS werr
              FROM unnest(p_wids, p_evs) WITH ORDINALITY AS t(wid, ev, wpos)
              LEFT JOIN unnest(ws) AS w ON w.id = t.wid
        ), r AS (
            SELECT u.wpos, u.k, u.cid, u.cpu, u.mem, u.gpu, u.gt,
                   it.fc, it.fm, it.wgt, it.fg, h.holder
              FROM unnest(p_rw, p_rk, p_cids, p_cpu, p_mem, p_gpu, p_gt) AS u(wpos, k, cid, cpu, mem, gpu, gt)
              JOIN it ON it.wpos = u.wpos AND it.werr IS NULL
              LEFT JOIN unnest(h_cid, h_wid) AS h(cid, holder) ON h.cid = u.cid
        ), c AS (
            SELECT r.*,
                   coalesce(sum(r.cpu) OVER p, 0) AS pc,
                   coalesce(sum(r.mem) OVER p, 0) AS pm,
                   coalesce(sum(r.gpu) OVER p, 0) AS pg
              FROM r
            WINDOW p AS (PARTITION BY r.wpos ORDER BY r.k
                         ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
        ), f AS (
            -- the first failing check of each reservation, in the rule's order, against the
            -- free amounts minus the earlier reservations of the part (what the rule's loop
            -- has left when every earlier one was accepted: only the first failure matters)
            SELECT c.*,
                   CASE
                     WHEN c.holder IS NOT NULL THEN 1
                     WHEN c.gt IS NOT NULL AND c.wgt IS DISTINCT FROM c.gt THEN 2
                     WHEN c.cpu > c.fc - c.pc THEN 3
                     WHEN c.mem > c.fm - c.pm THEN 4
                     WHEN c.gpu > c.fg - c.pg THEN 5
                   END AS fail
              FROM c
        ), a AS (
            -- kpos: the first failing reservation of the part (the accepted prefix ends there)
            SELECT f.*, min(f.k) FILTER (WHERE f.fail IS NOT NULL) OVER (PARTITION BY f.wpos)
                            AS kpos
              FROM f
        ), g AS (
            SELECT f.wpos,
                   count(*) FILTER (WHERE f.kpos IS NULL OR f.k < f.kpos) AS n,
                   coalesce(sum(f.cpu) FILTER (WHERE f.kpos IS NULL OR f.k < f.kpos), 0) AS sc,
                   coalesce(sum(f.mem) FILTER (WHERE f.kpos IS NULL OR f.k < f.kpos), 0) AS sm,
                   coalesce(sum(f.gpu) FILTER (WHERE f.kpos IS NULL OR f.k < f.kpos), 0) AS sg,
                   jsonb_agg(CASE f.fail
                       WHEN 1 THEN jsonb_build_object('kind', 'already_reserved',
                                                      'container_id', f.cid,
                                                      'worker_id', f.holder)
                       WHEN 2 THEN jsonb_build_object('kind', 'gpu_type_mismatch',
                                                      'container_id', f.cid,
                                                      'requested', to_jsonb(f.gt),
                                                      'actual', to_jsonb(f.wgt))
                       WHEN 3 THEN jsonb_build_object('kind', 'insufficient_capacity',
                                                      'container_id', f.cid, 'resource', 'cpu',
                                                      'requested', f.cpu,
                                                      'available', f.fc - f.pc)
                       WHEN 4 THEN jsonb_build_object('kind', 'insufficient_capacity',
                                                      'container_id', f.cid, 'resource', 'memory',
                                                      'requested', f.mem,
                                                      'available', f.fm - f.pm)
                       WHEN 5 THEN jsonb_build_object('kind', 'insufficient_capacity',
                                                      'container_id', f.cid, 'resource', 'gpu',
                                                      'requested', f.gpu,
                                                      'available', f.fg - f.pg)
                   END) FILTER (WHERE f.k = f.kpos) -> 0 AS rej
              FROM a AS f
             GROUP BY f.wpos
        ), o AS (
            SELECT it.wpos, it.wid, it.version, it.werr,
                   coalesce(g.n, 0) AS n, g.rej,
                   it.fc - coalesce(g.sc, 0) AS nc, it.fm - coalesce(g.sm, 0) AS nm,
                   it.fg - coalesce(g.sg, 0) AS ng,
                   it.werr IS NULL
                     AND NOT (g.rej IS NOT NULL AND (NOT p_partial OR coalesce(g.n, 0) = 0))
                     AS ok
              FROM it LEFT JOIN g ON g.wpos = it.wpos
        )
        SELECT jsonb_agg(jsonb_build_object('worker_id', o.wid, 'outcome',
                   CASE WHEN o.ok
                        THEN jsonb_build_object('Ok', jsonb_build_object(
                                 'new_version',
                                 CASE WHEN o.n > 0 THEN o.version + 1 ELSE o.version END,
                                 'free', jsonb_build_object('cpu_millicores', o.nc,
                                                            'memory_mib', o.nm,
                                                            'gpu_count', o.ng),
                                 'accepted', o.n,
                                 'remainder', o.rej))
                        ELSE jsonb_build_object('Err', coalesce(o.werr, o.rej)) END)
                   ORDER BY o.wpos),
               array_agg(CASE WHEN o.ok THEN o.n ELSE 0 END ORDER BY o.wpos),
               coalesce(sum(o.n) FILTER (WHERE o.ok), 0),
               array_agg(o.wid ORDER BY o.wid) FILTER (WHERE o.ok AND o.n > 0),
               array_agg(o.nc ORDER BY o.wid) FILTER (WHERE o.ok AND o.n > 0),
               array_agg(o.nm ORDER BY o.wid) FILTER (WHERE o.ok AND o.n > 0),
               array_agg(o.ng ORDER BY o.wid) FILTER (WHERE o.ok AND o.n > 0)
          INTO out, nacc, n_exp, u_ids, u_cpu, u_mem, u_gpu
          FROM o;

        IF n_exp = 0 THEN
            RETURN out;   -- nothing to write
        END IF;

        -- 6. the accepted reservations of the committing parts
        INSERT INTO reservations (container_id, worker_id, cpu, mem, gpu, gpu_type,
                                  lease_expires_at)
        SELECT u.cid, p_wids[u.wpos], u.cpu, u.mem, u.gpu, u.gt,
               now_ + u.lease * interval '1 millisecond'
          FROM unnest(p_rw, p_rk, p_cids, p_cpu, p_mem, p_gpu, p_gt, p_lease)
               AS u(wpos, k, cid, cpu, mem, gpu, gt, lease)
         WHERE u.k <= nacc[u.wpos]
        ON CONFLICT (container_id) DO NOTHING;
        GET DIAGNOSTICS n_ins = ROW_COUNT;

        IF n_ins = n_exp THEN
            -- 7. charge the committing workers, notify each once
            UPDATE workers w
               SET free_cpu = u.c, free_mem = u.m, free_gpu = u.g, version = w.version + 1
              FROM unnest(u_ids, u_cpu, u_mem, u_gpu) AS u(id, c, m, g)
             WHERE w.id = u.id;
            PERFORM pg_notify(channel, u.id) FROM unnest(u_ids) AS u(id);
            RETURN out;
        END IF;
        -- lost a container race: undo this attempt's inserts (nothing else was written)
        DELETE FROM reservations x
         USING unnest(p_rw, p_rk, p_cids) AS u(wpos, k, cid)
         WHERE u.k <= nacc[u.wpos] AND x.container_id = u.cid AND x.worker_id = p_wids[u.wpos];
    END LOOP;
    RAISE EXCEPTION 'sched: containers of this burst keep changing hands'
        USING ERRCODE = '40001';
END
$fn$;

-- The burst as JSON (a JSON array of CapacityReservation; direct SQL calls and older
-- clients): unpacked into arrays in one pass and handed to sched_reserve_burst.
CREATE OR REPLACE FUNCTION sched_reserve_batch(p_batch jsonb, p_partial boolean) RETURNS jsonb
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $fn$
DECLARE
    wids    text[];
    evs     numeric[];
    rw      integer[];
    rk      integer[];
    cids    text[];
    cpus    bigint[];
    mems    bigint[];
    gpus    bigint[];
    gts     text[];
    leases  bigint[];
BEGIN
    SELECT array_agg(t.item->>'worker_id' ORDER BY t.ord),
           array_agg(CASE WHEN jsonb_typeof(t.item->'expected_version') = 'number'
                          THEN (t.item->>'expected_version')::numeric END ORDER BY t.ord)
      INTO wids, evs
      FROM jsonb_array_elements(p_batch) WITH ORDINALITY AS t(item, ord);
    -- (no ORDER BY: these arrays only need to be aligned with each other, which one pass
    -- gives; every later step orders by the part and reservation positions carried along)
    SELECT array_agg(t.ord::integer), array_agg(e.ord::integer), array_agg(e.v->>'container_id'),
           array_agg((e.v#>>'{resources,cpu_millicores}')::bigint),
           array_agg((e.v#>>'{resources,memory_mib}')::bigint),
           array_agg((e.v#>>'{resources,gpu_count}')::bigint),
           array_agg(e.v->>'gpu_type'),
           array_agg(CASE WHEN jsonb_typeof(e.v->'lease_ms') = 'number'
                          THEN (e.v->>'lease_ms')::bigint END)
      INTO rw, rk, cids, cpus, mems, gpus, gts, leases
      FROM jsonb_array_elements(p_batch) WITH ORDINALITY AS t(item, ord)
     CROSS JOIN LATERAL jsonb_array_elements(t.item->'reservations') WITH ORDINALITY AS e(v, ord);
    -- a repeated id: the worker-by-worker function with the JSON as sent
    IF (SELECT count(*) <> count(DISTINCT x) FROM unnest(wids) AS x)
       OR (SELECT count(*) <> count(DISTINCT x) FROM unnest(cids) AS x) THEN
        RETURN sched_reserve_batch_each(p_batch, p_partial);
    END IF;
    RETURN sched_reserve_burst(wids, evs, coalesce(rw, '{}'), coalesce(rk, '{}'),
                               coalesce(cids, '{}'), coalesce(cpus, '{}'),
                               coalesce(mems, '{}'), coalesce(gpus, '{}'),
                               coalesce(gts, '{}'), coalesce(leases, '{}'), p_partial);
END
$fn$;

-- release_batch, the same answers with index probes only. 0001's version found the holders with
-- `container_id = ANY (…)`, which the planner ran as a sequential scan of the ledger once a
-- release named more than a few ids, and deleted with a join it ran as a scan of every entry of
-- the touched workers (108 ms for 1,000 ids on a 35,000-entry ledger). Now both are probes of
-- the primary key (enable_seqscan = off inside the function: the ledger lives in memory, and a
-- generic plan made while the ledger was small would otherwise keep scanning it as it grows).
-- A container id named twice (only a direct SQL call can: validate_release refuses it) is
-- released once, at its first position, and the other position answers not released.
CREATE OR REPLACE FUNCTION sched_release_batch(p_ids text[]) RETURNS jsonb
LANGUAGE plpgsql
SET search_path FROM CURRENT
SET enable_seqscan = off
AS $fn$
DECLARE
    wids text[];
    dels text[];
    out  jsonb;
BEGIN
    SELECT array_agg(DISTINCT x.worker_id) INTO wids
      FROM reservations x WHERE x.container_id = ANY (p_ids);
    -- lock every holder, in id order
    PERFORM 1 FROM workers WHERE id = ANY (wids) ORDER BY id FOR UPDATE;
    -- Only ledgers of locked workers are touched. A container that moved to another worker
    -- since the lookup was released in between: it is not ours to release now. The entries
    -- of the locked workers cannot change until this transaction ends (every ledger writer
    -- holds the worker's row lock), so they are picked first (a FILTER, not a WHERE, so
    -- that the planner probes the primary key rather than scanning the workers' ledgers)
    -- and then deleted by key.
    SELECT array_agg(x.container_id) FILTER (WHERE x.worker_id = ANY (wids)) INTO dels
      FROM reservations x WHERE x.container_id = ANY (p_ids);
    WITH t AS (
        SELECT t.cid, min(t.pos) AS pos
          FROM unnest(p_ids) WITH ORDINALITY AS t(cid, pos)
         GROUP BY t.cid
    ), d AS (
        DELETE FROM reservations x
         WHERE x.container_id = ANY (dels)
        RETURNING x.container_id, x.worker_id, x.cpu, x.mem, x.gpu
    ), dp AS (
        SELECT d.*, t.pos FROM d JOIN t ON t.cid = d.container_id
    ), s AS (
        SELECT dp.worker_id, count(*) AS n, sum(dp.cpu) AS c, sum(dp.mem) AS m,
               sum(dp.gpu) AS g
          FROM dp GROUP BY dp.worker_id
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
        SELECT dp.*,
               u.version - u.n + row_number() OVER (PARTITION BY dp.worker_id ORDER BY dp.pos)
                   AS v
          FROM dp JOIN u ON u.id = dp.worker_id
    )
    SELECT coalesce(jsonb_agg(jsonb_build_object('container_id', t.cid, 'released',
               CASE WHEN r.pos IS NOT NULL THEN jsonb_build_object('worker_id', r.worker_id,
                   'resources', jsonb_build_object('cpu_millicores', r.cpu,
                                                   'memory_mib', r.mem, 'gpu_count', r.gpu),
                   'new_version', r.v) END)
               ORDER BY t.pos), '[]'::jsonb)
      INTO out
      FROM unnest(p_ids) WITH ORDINALITY AS t(cid, pos)
      LEFT JOIN r ON r.pos = t.pos;
    RETURN out;
END
$fn$;
