-- sched-postgres schema, version 7: an optimistic burst with a lean judging statement (issue 12,
-- performance). Two steps, measured one after the other and shipped as one migration (neither
-- was released alone).
--
-- Step 1, optimistic:
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
--
-- Step 2, the judging statement. The rule, the answers (same JSON, same order), the writes and
-- the errors are step 1's; only the statement that judges every part is written differently:
--
--   * one window pass instead of two: the running sums of the earlier reservations of a part
--     (and their count) are computed once; the first failing reservation of a part is picked by
--     the GROUP BY that follows, as min(ARRAY[position, count before, sums before, check,
--     index]) over the failing rows, and the accepted prefix's count and sums are that row's
--     "before" values (all of the part's when none fails). Step 1 took min(position) in a second
--     window pass and summed again with FILTERs. The two agree when the positions of a part are
--     distinct and not NULL, as reserve_batch and sched_reserve_batch send them (1, 2, ...; the
--     INSERT's "k <= accepted count" relies on that already);
--   * the rejection object is built only for that one reservation per part (at most one per
--     part: step 1 evaluated a CASE inside jsonb_agg with a FILTER over every reservation), from
--     the burst's arrays by its index; a holder is found by its position in the holder arrays;
--   * the answer is built as text and cast to jsonb once, instead of four nested
--     jsonb_build_object per part and a jsonb_agg (each level re-encodes the one inside it).
--     Keys, values and order are the same jsonb: strings go through to_json (escaping), numbers
--     are bigint text, the rejections and worker errors are the same jsonb objects as text.
--
-- Measured with examples/pg_burst.rs (track_functions = pl, 220 calls per run, burst of 100
-- onto 20 workers, min / median; step 1 alone and both steps interleaved, 2026-12-01):
-- 1.07 / 1.09 ms per call before (10.7 / 10.9 µs per container), 0.96 / 0.96 ms after (9.6 /
-- 9.6 µs) in 3 + 3 runs at load average 1.2; 1.10 / 1.11 -> 1.02 / 1.05 ms in another 3 + 3 at
-- 1.2-1.5; 1.07 / 1.09 -> 0.99 / 1.00 ms in 4 + 4 at 0.7-0.9; 1.12 / 1.22 -> 1.02 / 1.09 ms in
-- 7 + 7 at 4.6-7 (other builds on the 2 cores). So about 10 µs per container, not reliably
-- under it (runs of the same build differ by up to ±7 % here). The
-- judging statement alone, run 1000 times in a loop on the same burst: ~20-30 % less time
-- (0.65-0.8 -> 0.5-0.57 ms under load), about 0.1 ms of it the answer built as text.

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
            SELECT t.wpos, t.wid, t.ev, w.version,
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
        ), c AS (
            -- each reservation of a part without a worker error, with the count and the sums of
            -- the part's earlier reservations (what the rule's loop has left when every earlier
            -- one was accepted: only the first failure matters) and its first two checks
            SELECT u.wpos, u.k, u.i, u.cpu, u.mem, u.gpu,
                   CASE
                     WHEN h.holder IS NOT NULL THEN 1
                     WHEN u.gt IS NOT NULL AND it.wgt IS DISTINCT FROM u.gt THEN 2
                   END AS pre,
                   it.fc, it.fm, it.fg, h.holder,
                   count(*) OVER p AS pn,
                   coalesce(sum(u.cpu) OVER p, 0) AS pc,
                   coalesce(sum(u.mem) OVER p, 0) AS pm,
                   coalesce(sum(u.gpu) OVER p, 0) AS pg
              FROM unnest(p_rw, p_rk, p_cids, p_cpu, p_mem, p_gpu, p_gt) WITH ORDINALITY
                   AS u(wpos, k, cid, cpu, mem, gpu, gt, i)
              JOIN it ON it.wpos = u.wpos AND it.werr IS NULL
              LEFT JOIN unnest(h_cid, h_wid) AS h(cid, holder) ON h.cid = u.cid
            WINDOW p AS (PARTITION BY u.wpos ORDER BY u.k
                         ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
        ), g AS (
            -- per part: the totals, and x = the first failing reservation (lowest position):
            -- its position, the count and sums before it, its failing check in the rule's order
            -- (1 held, 2 GPU type, 3 cpu, 4 memory, 5 gpu) and its index in the arrays
            SELECT c.wpos, count(*) AS n, coalesce(sum(c.cpu), 0) AS sc,
                   coalesce(sum(c.mem), 0) AS sm, coalesce(sum(c.gpu), 0) AS sg,
                   min(ARRAY[c.k, c.pn, c.pc, c.pm, c.pg, coalesce(c.pre,
                       CASE WHEN c.cpu > c.fc - c.pc THEN 3
                            WHEN c.mem > c.fm - c.pm THEN 4
                            WHEN c.gpu > c.fg - c.pg THEN 5 END), c.i])
                     FILTER (WHERE c.k IS NOT NULL AND (c.pre IS NOT NULL
                             OR c.cpu > c.fc - c.pc OR c.mem > c.fm - c.pm
                             OR c.gpu > c.fg - c.pg)) AS x
              FROM c GROUP BY c.wpos
        ), o AS (
            SELECT it.wpos, it.wid, it.version, it.werr, it.fc, it.fm, it.fg, it.wgt,
                   coalesce(g.x[2], g.n, 0) AS n,
                   it.fc - coalesce(g.x[3], g.sc, 0) AS nc, it.fm - coalesce(g.x[4], g.sm, 0) AS nm,
                   it.fg - coalesce(g.x[5], g.sg, 0) AS ng,
                   g.x[6] AS fail, g.x[7]::integer AS fi
              FROM it LEFT JOIN g ON g.wpos = it.wpos
        ), q AS (
            -- the rejection, built for the failing reservation only (at most one per part)
            SELECT o.*, CASE o.fail
                       WHEN 1 THEN jsonb_build_object('kind', 'already_reserved',
                                       'container_id', p_cids[o.fi],
                                       'worker_id', h_wid[array_position(h_cid, p_cids[o.fi])])
                       WHEN 2 THEN jsonb_build_object('kind', 'gpu_type_mismatch',
                                       'container_id', p_cids[o.fi],
                                       'requested', to_jsonb(p_gt[o.fi]),
                                       'actual', to_jsonb(o.wgt))
                       WHEN 3 THEN jsonb_build_object('kind', 'insufficient_capacity',
                                       'container_id', p_cids[o.fi], 'resource', 'cpu',
                                       'requested', p_cpu[o.fi], 'available', o.nc)
                       WHEN 4 THEN jsonb_build_object('kind', 'insufficient_capacity',
                                       'container_id', p_cids[o.fi], 'resource', 'memory',
                                       'requested', p_mem[o.fi], 'available', o.nm)
                       WHEN 5 THEN jsonb_build_object('kind', 'insufficient_capacity',
                                       'container_id', p_cids[o.fi], 'resource', 'gpu',
                                       'requested', p_gpu[o.fi], 'available', o.ng)
                   END AS rej,
                   o.werr IS NULL AND (o.fail IS NULL OR (p_partial AND o.n > 0)) AS ok
              FROM o
        )
        SELECT ('[' || string_agg('{"worker_id":' || to_json(q.wid)::text || ',"outcome":' ||
                   CASE WHEN q.ok
                        THEN '{"Ok":{"new_version":'
                             || CASE WHEN q.n > 0 THEN q.version + 1 ELSE q.version END
                             || ',"free":{"cpu_millicores":' || q.nc || ',"memory_mib":' || q.nm
                             || ',"gpu_count":' || q.ng || '},"accepted":' || q.n
                             || ',"remainder":' || coalesce(q.rej::text, 'null') || '}}'
                        ELSE '{"Err":' || coalesce(coalesce(q.werr, q.rej)::text, 'null') || '}' END
                   || '}', ',' ORDER BY q.wpos) || ']')::jsonb,
               array_agg(CASE WHEN q.ok THEN q.n ELSE 0 END ORDER BY q.wpos),
               coalesce(sum(q.n) FILTER (WHERE q.ok), 0),
               array_agg(q.wid) FILTER (WHERE q.ok AND q.n > 0),
               array_agg(q.nc) FILTER (WHERE q.ok AND q.n > 0),
               array_agg(q.nm) FILTER (WHERE q.ok AND q.n > 0),
               array_agg(q.ng) FILTER (WHERE q.ok AND q.n > 0),
               coalesce(bool_or(q.fail IS NOT NULL), false)
          INTO out, nacc, n_exp, u_ids, u_cpu, u_mem, u_gpu, any_rej
          FROM q;

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
