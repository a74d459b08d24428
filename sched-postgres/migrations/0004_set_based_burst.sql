-- sched-postgres schema, version 4: a set-based burst (issue 12, performance).
--
-- sched_reserve_batch used to run every worker's part in its own subtransaction and, per part,
-- a plpgsql loop over the containers (sched_reserve_rule). This replaces it with a handful of
-- set-based statements for the whole burst, with no subtransaction:
--
--   1. lock every touched worker row at once, in id order (ORDER BY id FOR UPDATE: concurrent
--      bursts still lock rows in one global order);
--   2. read the server's clock once, after the locks;
--   3. one statement: the holders of all containers with one join, per-worker running sums
--      with a window function (the free amounts each reservation is judged against, as the
--      reference rule's loop leaves them), the first failing reservation of each worker, the
--      outcome of each worker, and one INSERT ... SELECT ... ON CONFLICT DO NOTHING of every
--      accepted reservation of the parts that commit;
--   4. one UPDATE ... FROM of the committing workers' free capacity and version (+1), and one
--      pg_notify per committing worker.
--
-- The rule is unchanged, check for check (sched-core/src/rules.rs; 0003's sched_reserve_rule):
-- unknown → version → status → heartbeat → per reservation, in order: held anywhere (this
-- worker included) → GPU type → cpu → memory → gpu against the free amounts left by the
-- earlier ones; the accepted reservations are the prefix before the first failure; all or
-- nothing unless partial (then a non-empty prefix is Ok with the failure as remainder).
--
-- The container race (0001, SR002): another burst may insert one of our containers, for a
-- worker we do not lock, after our holder look-up. ON CONFLICT waits for it; if it committed,
-- fewer rows are inserted than accepted. Nothing else has been written yet, so the rows this
-- attempt inserted are deleted again (they are our own, unseen by anyone) and step 3 runs again:
-- the new look-up sees the new holder and the same rule decides. After 3 such redos the statement
-- fails with 40001 and the client retries it. The outcome is that of one attempt, as if the burst
-- ran after the other commit.
--
-- Worker ids and container ids of a burst are distinct (sched_core::validate::validate_batch,
-- checked on the Rust side before any round trip). A burst that repeats one (a direct SQL call)
-- is handed to sched_reserve_batch_each, the previous worker-by-worker function, unchanged.

CREATE FUNCTION sched_reserve_batch_each(p_batch jsonb, p_partial boolean) RETURNS jsonb
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

CREATE OR REPLACE FUNCTION sched_reserve_batch(p_batch jsonb, p_partial boolean) RETURNS jsonb
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $fn$
DECLARE
    wids    text[];
    locked  text[];
    dup     boolean;
    now_    timestamptz;
    out     jsonb;
    n_exp   bigint;
    n_ins   bigint;
    ins_ids text[];
    u_ids   text[];
    u_cpu   bigint[];
    u_mem   bigint[];
    u_gpu   bigint[];
    channel text := sched_wake_channel();
BEGIN
    SELECT array_agg(t.wid), count(*) <> count(DISTINCT t.wid)
               OR (SELECT count(*) <> count(DISTINCT r->>'container_id')
                     FROM jsonb_array_elements(p_batch) AS i,
                          jsonb_array_elements(i->'reservations') AS r)
      INTO wids, dup
      FROM (SELECT i->>'worker_id' AS wid FROM jsonb_array_elements(p_batch) AS i) t;
    IF dup THEN
        RETURN sched_reserve_batch_each(p_batch, p_partial);
    END IF;

    -- 1. every touched worker row, in id order (COLLATE "C": byte order). A worker registered
    -- after this is unknown to this burst (it is not locked).
    SELECT coalesce(array_agg(l.id), '{}') INTO locked
      FROM (SELECT w.id FROM workers w WHERE w.id = ANY (wids) ORDER BY w.id FOR UPDATE) l;
    -- 2. the server's clock, after the locks
    now_ := sched_now();

    FOR attempt IN 1..4 LOOP
        -- 3. judge every worker's part and insert the accepted reservations of the committing ones
        WITH it AS (
            SELECT t.ord AS wpos, t.item, w.id AS wid, w.version,
                   w.free_cpu AS fc, w.free_mem AS fm, w.free_gpu AS fg, w.gpu_type AS wgt,
                   CASE
                     WHEN w.id IS NULL THEN jsonb_build_object('kind', 'unknown_worker')
                     WHEN jsonb_typeof(t.item->'expected_version') = 'number'
                          AND (t.item->>'expected_version')::numeric <> w.version
                       THEN jsonb_build_object('kind', 'version_conflict',
                                               'expected', t.item->'expected_version',
                                               'current', w.version)
                     WHEN w.status <> 'available'
                       THEN jsonb_build_object('kind', 'worker_unavailable', 'status', w.status)
                     WHEN sched_is_stale(w, now_)
                       THEN jsonb_build_object('kind', 'heartbeat_expired',
                                               'last_heartbeat_ms', sched_ms(w.last_heartbeat),
                                               'timeout_ms', w.heartbeat_timeout_ms)
                   END AS werr
              FROM jsonb_array_elements(p_batch) WITH ORDINALITY AS t(item, ord)
              LEFT JOIN workers w ON w.id = t.item->>'worker_id' AND w.id = ANY (locked)
        ), r AS (
            -- the reservations of the workers that pass the worker checks, with the holders
            -- (one join) and the amounts the earlier reservations of the same part take
            SELECT it.wpos, e.ord AS rpos, e.v AS e, e.v->>'container_id' AS cid,
                   (e.v#>>'{resources,cpu_millicores}')::bigint AS cpu,
                   (e.v#>>'{resources,memory_mib}')::bigint AS mem,
                   (e.v#>>'{resources,gpu_count}')::bigint AS gpu,
                   it.fc, it.fm, it.fg, it.wgt, x.worker_id AS holder
              FROM it
             CROSS JOIN LATERAL jsonb_array_elements(it.item->'reservations')
                        WITH ORDINALITY AS e(v, ord)
              LEFT JOIN reservations x ON x.container_id = e.v->>'container_id'
             WHERE it.werr IS NULL
        ), c AS (
            SELECT r.*,
                   coalesce(sum(r.cpu) OVER p, 0) AS pc,
                   coalesce(sum(r.mem) OVER p, 0) AS pm,
                   coalesce(sum(r.gpu) OVER p, 0) AS pg
              FROM r
            WINDOW p AS (PARTITION BY r.wpos ORDER BY r.rpos
                         ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
        ), f AS (
            -- the first failing check of each reservation, in the rule's order; it only
            -- matters for the first failing one, before which every earlier one was accepted,
            -- so free - (sum of the earlier ones) is what the rule's loop has left
            SELECT c.*,
                   CASE
                     WHEN c.holder IS NOT NULL THEN 1
                     WHEN c.e->>'gpu_type' IS NOT NULL AND c.wgt IS DISTINCT FROM c.e->>'gpu_type'
                       THEN 2
                     WHEN c.cpu > c.fc - c.pc THEN 3
                     WHEN c.mem > c.fm - c.pm THEN 4
                     WHEN c.gpu > c.fg - c.pg THEN 5
                   END AS fail
              FROM c
        ), k AS (
            SELECT f.*, min(f.rpos) FILTER (WHERE f.fail IS NOT NULL)
                            OVER (PARTITION BY f.wpos) AS kpos
              FROM f
        ), a AS (
            SELECT k.wpos,
                   count(*) FILTER (WHERE k.kpos IS NULL OR k.rpos < k.kpos) AS n,
                   coalesce(sum(k.cpu) FILTER (WHERE k.kpos IS NULL OR k.rpos < k.kpos), 0) AS sc,
                   coalesce(sum(k.mem) FILTER (WHERE k.kpos IS NULL OR k.rpos < k.kpos), 0) AS sm,
                   coalesce(sum(k.gpu) FILTER (WHERE k.kpos IS NULL OR k.rpos < k.kpos), 0) AS sg,
                   jsonb_agg(CASE k.fail
                       WHEN 1 THEN jsonb_build_object('kind', 'already_reserved',
                                                      'container_id', k.cid,
                                                      'worker_id', k.holder)
                       WHEN 2 THEN jsonb_build_object('kind', 'gpu_type_mismatch',
                                                      'container_id', k.cid,
                                                      'requested', k.e->'gpu_type',
                                                      'actual', to_jsonb(k.wgt))
                       WHEN 3 THEN jsonb_build_object('kind', 'insufficient_capacity',
                                                      'container_id', k.cid, 'resource', 'cpu',
                                                      'requested', k.cpu,
                                                      'available', k.fc - k.pc)
                       WHEN 4 THEN jsonb_build_object('kind', 'insufficient_capacity',
                                                      'container_id', k.cid, 'resource', 'memory',
                                                      'requested', k.mem,
                                                      'available', k.fm - k.pm)
                       WHEN 5 THEN jsonb_build_object('kind', 'insufficient_capacity',
                                                      'container_id', k.cid, 'resource', 'gpu',
                                                      'requested', k.gpu,
                                                      'available', k.fg - k.pg)
                   END) FILTER (WHERE k.rpos = k.kpos) -> 0 AS rej
              FROM k
             GROUP BY k.wpos
        ), o AS (
            SELECT it.wpos, it.item, it.wid, it.version, it.werr,
                   coalesce(a.n, 0) AS n, a.rej,
                   it.fc - coalesce(a.sc, 0) AS nc, it.fm - coalesce(a.sm, 0) AS nm,
                   it.fg - coalesce(a.sg, 0) AS ng,
                   it.werr IS NULL
                     AND NOT (a.rej IS NOT NULL AND (NOT p_partial OR coalesce(a.n, 0) = 0))
                     AS ok
              FROM it LEFT JOIN a ON a.wpos = it.wpos
        ), ins AS (
            INSERT INTO reservations (container_id, worker_id, cpu, mem, gpu, gpu_type,
                                      lease_expires_at)
            SELECT k.cid, o.wid, k.cpu, k.mem, k.gpu, k.e->>'gpu_type',
                   CASE WHEN jsonb_typeof(k.e->'lease_ms') = 'number'
                        THEN now_ + (k.e->>'lease_ms')::bigint * interval '1 millisecond' END
              FROM k JOIN o ON o.wpos = k.wpos
             WHERE o.ok AND (k.kpos IS NULL OR k.rpos < k.kpos)
            ON CONFLICT (container_id) DO NOTHING
            RETURNING container_id
        )
        SELECT jsonb_agg(jsonb_build_object('worker_id', o.item->'worker_id', 'outcome',
                   CASE WHEN o.ok
                        THEN jsonb_build_object('Ok', jsonb_build_object(
                                 'new_version',
                                 CASE WHEN o.n > 0 THEN o.version + 1 ELSE o.version END,
                                 'free', sched_res(o.nc, o.nm, o.ng),
                                 'accepted', o.n,
                                 'remainder', o.rej))
                        ELSE jsonb_build_object('Err', coalesce(o.werr, o.rej)) END)
                   ORDER BY o.wpos),
               coalesce(sum(o.n) FILTER (WHERE o.ok), 0),
               (SELECT count(*) FROM ins),
               (SELECT array_agg(ins.container_id) FROM ins),
               array_agg(o.wid ORDER BY o.wid) FILTER (WHERE o.ok AND o.n > 0),
               array_agg(o.nc ORDER BY o.wid) FILTER (WHERE o.ok AND o.n > 0),
               array_agg(o.nm ORDER BY o.wid) FILTER (WHERE o.ok AND o.n > 0),
               array_agg(o.ng ORDER BY o.wid) FILTER (WHERE o.ok AND o.n > 0)
          INTO out, n_exp, n_ins, ins_ids, u_ids, u_cpu, u_mem, u_gpu
          FROM o;

        IF n_ins = n_exp THEN
            -- 4. charge the committing workers, notify each once
            UPDATE workers w
               SET free_cpu = u.c, free_mem = u.m, free_gpu = u.g, version = w.version + 1
              FROM unnest(u_ids, u_cpu, u_mem, u_gpu) AS u(id, c, m, g)
             WHERE w.id = u.id;
            PERFORM pg_notify(channel, u.id)
               FROM unnest(u_ids) AS u(id);
            RETURN out;
        END IF;
        -- lost a container race: undo this attempt's inserts (nothing else was written)
        DELETE FROM reservations x WHERE x.container_id = ANY (ins_ids);
    END LOOP;
    RAISE EXCEPTION 'sched: containers of this burst keep changing hands'
        USING ERRCODE = '40001';
END
$fn$;
