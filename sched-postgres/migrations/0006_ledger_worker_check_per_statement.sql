-- sched-postgres schema, version 6: the ledger's "needs its worker" check once per statement
-- (issue 12, performance).
--
-- The foreign key reservations.worker_id -> workers.id (0001, ON DELETE CASCADE) checks every
-- inserted ledger entry with its own query (PostgreSQL's RI trigger: one SPI query and one
-- FOR KEY SHARE row lock per row). In a burst of 100 that was the largest single cost of the
-- burst function: 2-7 ms of the INSERT's 2.7-8 ms, measured with auto_explain on this machine
-- under load (0.7-0.9 ms without it). These triggers enforce the same rules with one check per
-- statement:
--
--   * an INSERT into the ledger locks the workers it names FOR KEY SHARE (as the foreign key
--     did: a concurrent removal waits for this transaction, and one that committed first leaves
--     no row) and fails with 23503 foreign_key_violation when one is missing;
--   * an UPDATE that moves an entry to another worker is checked the same way (a row trigger,
--     fired only when worker_id changes: no ledger writer does that);
--   * removing a worker deletes its ledger (the cascade), in the same statement;
--   * changing a referenced worker's id fails with 23503 (the key's NO ACTION);
--   * TRUNCATE of workers fails while the ledger is not empty (as the foreign key refused it).
--
-- Every ledger writer of this schema already holds the worker's row lock (FOR UPDATE) when it
-- inserts, so the KEY SHARE lock taken here is granted at once.

ALTER TABLE reservations DROP CONSTRAINT reservations_worker_id_fkey;

CREATE FUNCTION sched_ledger_fk_violation(p_worker text) RETURNS void
LANGUAGE plpgsql
AS $fn$
BEGIN
    RAISE EXCEPTION 'insert or update on table "reservations" violates foreign key constraint "reservations_worker_id_fkey"'
        USING ERRCODE = 'foreign_key_violation',
              DETAIL = format('Key (worker_id)=(%s) is not present in table "workers".', p_worker),
              TABLE = 'reservations', CONSTRAINT = 'reservations_worker_id_fkey';
END
$fn$;

-- AFTER INSERT ... FOR EACH STATEMENT on reservations (transition table new_rows).
CREATE FUNCTION sched_ledger_needs_worker() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $fn$
DECLARE
    missing text;
BEGIN
    PERFORM 1 FROM workers w
     WHERE w.id IN (SELECT n.worker_id FROM new_rows n)
     ORDER BY w.id
       FOR KEY SHARE;
    SELECT n.worker_id INTO missing
      FROM new_rows n
     WHERE NOT EXISTS (SELECT FROM workers w WHERE w.id = n.worker_id)
     LIMIT 1;
    IF FOUND THEN
        PERFORM sched_ledger_fk_violation(missing);
    END IF;
    RETURN NULL;
END
$fn$;

CREATE TRIGGER reservations_need_worker
    AFTER INSERT ON reservations
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sched_ledger_needs_worker();

-- AFTER UPDATE OF worker_id ... FOR EACH ROW on reservations, when the worker changes.
CREATE FUNCTION sched_ledger_row_needs_worker() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $fn$
BEGIN
    PERFORM 1 FROM workers w WHERE w.id = NEW.worker_id FOR KEY SHARE;
    IF NOT FOUND THEN
        PERFORM sched_ledger_fk_violation(NEW.worker_id);
    END IF;
    RETURN NULL;
END
$fn$;

CREATE TRIGGER reservations_moved_need_worker
    AFTER UPDATE OF worker_id ON reservations
    FOR EACH ROW WHEN (OLD.worker_id IS DISTINCT FROM NEW.worker_id)
    EXECUTE FUNCTION sched_ledger_row_needs_worker();

-- AFTER DELETE ... FOR EACH STATEMENT on workers (transition table old_rows): the cascade.
CREATE FUNCTION sched_ledger_cascade() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $fn$
BEGIN
    DELETE FROM reservations x USING old_rows o WHERE x.worker_id = o.id;
    RETURN NULL;
END
$fn$;

CREATE TRIGGER workers_cascade_ledger
    AFTER DELETE ON workers
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sched_ledger_cascade();

-- AFTER UPDATE OF id ... FOR EACH ROW on workers, when the id changes: refused while referenced.
CREATE FUNCTION sched_worker_id_referenced() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $fn$
BEGIN
    IF EXISTS (SELECT FROM reservations x WHERE x.worker_id = OLD.id) THEN
        RAISE EXCEPTION 'update or delete on table "workers" violates foreign key constraint "reservations_worker_id_fkey" on table "reservations"'
            USING ERRCODE = 'foreign_key_violation',
                  DETAIL = format('Key (id)=(%s) is still referenced from table "reservations".', OLD.id),
                  TABLE = 'workers', CONSTRAINT = 'reservations_worker_id_fkey';
    END IF;
    RETURN NULL;
END
$fn$;

CREATE TRIGGER workers_id_referenced
    AFTER UPDATE OF id ON workers
    FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id)
    EXECUTE FUNCTION sched_worker_id_referenced();

-- BEFORE TRUNCATE on workers: refused while the ledger is not empty.
CREATE FUNCTION sched_workers_truncate() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $fn$
BEGIN
    IF EXISTS (SELECT FROM reservations) THEN
        RAISE EXCEPTION 'cannot truncate table "workers" while table "reservations" holds entries'
            USING ERRCODE = 'feature_not_supported';
    END IF;
    RETURN NULL;
END
$fn$;

CREATE TRIGGER workers_truncate
    BEFORE TRUNCATE ON workers
    FOR EACH STATEMENT EXECUTE FUNCTION sched_workers_truncate();
