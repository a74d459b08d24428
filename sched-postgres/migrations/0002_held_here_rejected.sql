-- sched-postgres schema, version 2: a container already held on THIS worker is rejected.
--
-- The rule change of issue 10's contract (sched-core/src/rules.rs is the reference): a
-- reservation for a container held anywhere, including on the worker being reserved, is
-- rejected with {"kind": "already_reserved", "container_id": ..., "worker_id": <the holder>},
-- nothing charged, at the same place in the check order as before (first per-reservation check).
-- Version 1 accepted a container held here again without a second charge, which hid a repeated
-- request asked with other resources. Migration 0001 is left as it was (its checksum is
-- recorded in existing databases); this replaces the one function whose rule changed.
-- sched_reserve_worker still filters held containers out of its INSERT, which is now a no-op:
-- every accepted reservation is newly charged.

CREATE OR REPLACE FUNCTION sched_reserve_rule(w workers, item jsonb, holders jsonb,
                                              p_partial boolean)
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
