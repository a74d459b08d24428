-- sched-postgres schema, version 7: an optimistic burst (issue 12, performance).
--
-- 0005's sched_reserve_burst looked up the holders of every container of a burst before
-- judging it, and inserted the accepted reservations with ON CONFLICT DO NOTHING (a speculative
-- insertion: one more primary-key probe and one speculative-insertion lock per row). Almost
-- every burst places containers nobody holds, so this version judges first and lets the
-- primary key find the holders; the rule, the answers and the errors are unchanged:
--
--   * the first judgement assumes no holders. When no part has a rejection, every reservation
--     judged is inserted, and a plain INSERT succeeds only if none of them is held at that
--     moment: the judgement is then exactly the rule's. A held one fails the primary key
--     (23505; a concurrent inserter is waited for, as ON CONFLICT did); an exception block
--     catches it, its subtransaction undoes this attempt's inserts (0005 deleted them), and the
--     holders are looked up and the burst judged again;
--   * when some part has a rejection, the holders are looked up before anything is written
--     (already_reserved is the rule's first check, so a holder could be the first failure):
--     none found, the judgement stands; else the burst is judged again with them;
--   * after 3 redos following a look-up the statement fails with 40001, as before;
--   * the committing workers' arrays are aggregated without ORDER BY (one sort instead of
--     four; the UPDATE does not care about order) and the notifications are sent in id order
--     by the pg_notify statement itself, as before;
--   * the wake-up channel is computed inline instead of by sched_wake_channel() (a SQL
--     function with a SET clause is parsed and planned on every call).
--
-- The cost moves to bursts that meet a held container (one more judgement, one rolled back
-- subtransaction); those are rejections, not the common path.
--
-- Measured with examples/pg_burst.rs (track_functions = pl, 3 runs of 220 calls, burst of 100
-- onto 20 workers, min / median; before and after runs interleaved, load average 3.4-3.8 with
-- another build on the 2 cores): 1.27 / 1.30 ms per call before (12.7 / 13.0 µs per
-- container), 1.10 / 1.11 ms after (11.0 / 11.1 µs). By statement (auto_explain, one call):
-- the holder look-up (~0.07 ms) and the speculative-insertion work (~0.05 ms) are gone; the
-- INSERT with its ledger trigger (~0.55 ms) and the judging statement (~0.35 ms) remain the
-- bulk.

CREATE OR REPLACE FUNCTION sched_reserve_burst(p_wids text[], p_evs numeric[], p_rw integer[],
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
    -- the locked worker rows, and the holders found (none until looked up)
    ws      workers[];
    h_cid   text[];
    h_wid   text[];
    now_    timestamptz;
    out     jsonb;
    n_exp   bigint;
    u_ids   text[];
    u_cpu   bigint[];
    u_mem   bigint[];
    u_gpu   bigint[];
    any_rej boolean;   -- some part has a rejection (its first failing reservation)
    looked  boolean := false;   -- the holders were looked up
    races   integer := 0;   -- inserts that lost a container race after a look-up
    clash   boolean;
    -- sched_wake_channel()'s expression (0003), inline: a SQL function with a SET clause is
    -- parsed and planned again on every call. Both pin the same schema, so the same channel.
    channel text := 'sched_wake_' || CASE
        WHEN octet_length(current_schema()) <= 52 THEN current_schema()
        ELSE left(encode(sha256(convert_to(current_schema(), 'UTF8')), 'hex'), 40)
    END;
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

    LOOP
        -- 4. judge every part, against the holders looked up so far (none, at first)
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
               array_agg(o.wid) FILTER (WHERE o.ok AND o.n > 0),
               array_agg(o.nc) FILTER (WHERE o.ok AND o.n > 0),
               array_agg(o.nm) FILTER (WHERE o.ok AND o.n > 0),
               array_agg(o.ng) FILTER (WHERE o.ok AND o.n > 0),
               coalesce(bool_or(o.rej IS NOT NULL), false)
          INTO out, nacc, n_exp, u_ids, u_cpu, u_mem, u_gpu, any_rej
          FROM o;

        -- A rejection may be a holder's (already_reserved comes first in the rule): look the
        -- holders up, one primary-key probe per container, and judge again if there are any.
        IF any_rej AND NOT looked THEN
            looked := true;
            SELECT array_agg(x.container_id), array_agg(x.worker_id) INTO h_cid, h_wid
              FROM reservations x WHERE x.container_id = ANY (p_cids);
            CONTINUE WHEN h_cid IS NOT NULL;
        END IF;
        IF n_exp = 0 THEN
            RETURN out;   -- nothing to write
        END IF;

        -- 5. the accepted reservations of the committing parts. No part was rejected, or the
        -- holders are known: if none of these containers is held when it is inserted, this
        -- judgement is the rule's. A container held (or committed meanwhile by another burst)
        -- fails the primary key: the block's subtransaction undoes this attempt's inserts, and
        -- the burst is judged again with the holders.
        BEGIN
            INSERT INTO reservations (container_id, worker_id, cpu, mem, gpu, gpu_type,
                                      lease_expires_at)
            SELECT u.cid, p_wids[u.wpos], u.cpu, u.mem, u.gpu, u.gt,
                   now_ + u.lease * interval '1 millisecond'
              FROM unnest(p_rw, p_rk, p_cids, p_cpu, p_mem, p_gpu, p_gt, p_lease)
                   AS u(wpos, k, cid, cpu, mem, gpu, gt, lease)
             WHERE u.k <= nacc[u.wpos];
            clash := false;
        EXCEPTION WHEN unique_violation THEN
            clash := true;
        END;
        IF NOT clash THEN
            -- 6. charge the committing workers, notify each once (in id order, as before)
            UPDATE workers w
               SET free_cpu = u.c, free_mem = u.m, free_gpu = u.g, version = w.version + 1
              FROM unnest(u_ids, u_cpu, u_mem, u_gpu) AS u(id, c, m, g)
             WHERE w.id = u.id;
            PERFORM pg_notify(channel, u.id) FROM unnest(u_ids) AS u(id) ORDER BY u.id;
            RETURN out;
        END IF;
        -- lost a container race (or met a holder not looked up yet)
        IF looked THEN
            races := races + 1;
            EXIT WHEN races > 3;
        END IF;
        looked := true;
        SELECT array_agg(x.container_id), array_agg(x.worker_id) INTO h_cid, h_wid
          FROM reservations x WHERE x.container_id = ANY (p_cids);
    END LOOP;
    RAISE EXCEPTION 'sched: containers of this burst keep changing hands'
        USING ERRCODE = '40001';
END
$fn$;
