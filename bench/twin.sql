-- A PL/pgSQL twin of orch_lease's acquire and commit_stage_cas, with the same semantics (the same
-- advisory gate, boot check and lost-race subtransactions) and the same durable writes (the lease row,
-- the stage, and one history row per grant, refusal and CAS, as orch_lease.history = all writes them),
-- written for the benchmark only: it is what a careful team would hand-write for its own task table
-- (bench_task) instead of installing the extension (its answer's stage, 0.5.0, is NULL: the twin's
-- cycle reads the stage itself, as before). Its statements are static SQL, planned once per
-- session (no EXECUTE format re-planned on every call).
CREATE SCHEMA IF NOT EXISTS twin;
CREATE TABLE IF NOT EXISTS twin.event (LIKE orch_lease.lease_event INCLUDING ALL);

CREATE OR REPLACE FUNCTION twin.acquire(p_item text, p_owner text, p_pid integer, p_boot text,
                                        p_scope text DEFAULT NULL)
RETURNS orch_lease.lease_grant LANGUAGE plpgsql AS $$
DECLARE
    superseded boolean;
    held orch_lease.transition_lease;
    holder_dead boolean;
    new_token bigint;
BEGIN
    IF p_item IS NULL OR p_owner IS NULL OR p_pid IS NULL OR p_boot IS NULL THEN
        RAISE EXCEPTION 'argument must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF current_setting('orch_lease.enabled', true) = 'off' THEN
        RETURN ROW(true, 'disabled', NULL, NULL, NULL, NULL, NULL, NULL)::orch_lease.lease_grant;
    END IF;
    BEGIN
        SELECT b.superseded_at IS NOT NULL INTO superseded FROM orch_lease.boot b
         WHERE b.boot_id = p_boot FOR SHARE NOWAIT;
        IF superseded THEN
            INSERT INTO twin.event (event, work_item, outcome, actor, by_role)
            VALUES ('refused', p_item, 'superseded', p_owner, current_user);
            RETURN ROW(false, 'superseded', NULL, NULL, NULL, NULL, NULL, NULL)::orch_lease.lease_grant;
        END IF;
        IF NOT pg_try_advisory_xact_lock(1869767528, hashtext(p_item)) THEN
            RETURN ROW(false, 'busy', NULL, NULL, NULL, NULL, NULL, NULL)::orch_lease.lease_grant;
        END IF;
        SELECT l.* INTO held FROM orch_lease.transition_lease l
         WHERE l.task_table = 'bench_task'::regclass AND l.work_item = p_item;
        IF NOT FOUND THEN
            INSERT INTO orch_lease.transition_lease (work_item, token, owner, owner_pid, owner_boot_id, scope, task_table)
            VALUES (p_item, nextval('orch_lease.token_seq'), p_owner, p_pid, p_boot, p_scope, 'bench_task'::regclass)
            ON CONFLICT (task_table, work_item) DO NOTHING RETURNING token INTO new_token;
            IF new_token IS NULL THEN
                INSERT INTO twin.event (event, work_item, outcome, actor, by_role)
                VALUES ('refused', p_item, 'busy', p_owner, current_user);
                RETURN ROW(false, 'busy', NULL, NULL, NULL, NULL, NULL, NULL)::orch_lease.lease_grant;
            END IF;
            INSERT INTO twin.event (event, work_item, outcome, actor, new_owner, new_token, by_role)
            VALUES ('acquired', p_item, 'acquired', p_owner, p_owner, new_token, current_user);
            RETURN ROW(true, 'acquired', new_token, NULL, NULL, NULL, NULL, NULL)::orch_lease.lease_grant;
        END IF;
        SELECT b.superseded_at IS NOT NULL INTO holder_dead FROM orch_lease.boot b
         WHERE b.boot_id = held.owner_boot_id;
        IF coalesce(holder_dead, false) THEN
            RAISE EXCEPTION 'the twin does not implement reclaim' USING ERRCODE = '0A000';
        END IF;
        INSERT INTO twin.event (event, work_item, outcome, actor, old_owner, by_role)
        VALUES ('refused', p_item, 'held', p_owner, held.owner, current_user);
        RETURN ROW(false, 'held', NULL, held.owner, held.owner_pid, held.owner_boot_id, held.acquired_at, NULL)::orch_lease.lease_grant;
    EXCEPTION WHEN serialization_failure OR lock_not_available OR deadlock_detected THEN
        RETURN ROW(false, 'retry', NULL, NULL, NULL, NULL, NULL, NULL)::orch_lease.lease_grant;
    END;
END $$;

CREATE OR REPLACE FUNCTION twin.commit(p_item text, p_token bigint, p_expected text, p_new text)
RETURNS orch_lease.cas_result LANGUAGE plpgsql AS $$
DECLARE
    current text;
BEGIN
    BEGIN
        DELETE FROM orch_lease.transition_lease
         WHERE task_table = 'bench_task'::regclass AND work_item = p_item AND token = p_token;
        IF NOT FOUND THEN
            INSERT INTO twin.event (event, work_item, outcome, old_token, stage_from, stage_to, by_role)
            VALUES ('cas_lost', p_item, 'lease_lost', p_token, p_expected, p_new, current_user);
            RETURN ROW(false, 'lease_lost', NULL)::orch_lease.cas_result;
        END IF;
        BEGIN
            UPDATE bench_task SET stage = p_new WHERE id = p_item::bigint AND stage = p_expected;
            IF FOUND THEN
                INSERT INTO twin.event (event, work_item, outcome, old_token, stage_from, stage_to, by_role)
                VALUES ('cas_applied', p_item, 'applied', p_token, p_expected, p_new, current_user);
                RETURN ROW(true, 'applied', NULL)::orch_lease.cas_result;
            END IF;
            SELECT stage INTO current FROM bench_task WHERE id = p_item::bigint;
            INSERT INTO twin.event (event, work_item, outcome, old_token, stage_from, stage_to, by_role)
            VALUES ('cas_lost', p_item, CASE WHEN current IS NULL THEN 'not_found' ELSE 'stage_mismatch' END,
                    p_token, p_expected, p_new, current_user);
            RETURN ROW(false, CASE WHEN current IS NULL THEN 'not_found' ELSE 'stage_mismatch' END, current)::orch_lease.cas_result;
        EXCEPTION WHEN serialization_failure OR lock_not_available OR deadlock_detected THEN
            RETURN ROW(false, 'retry', NULL)::orch_lease.cas_result;
        END;
    EXCEPTION WHEN serialization_failure OR lock_not_available OR deadlock_detected THEN
        RETURN ROW(false, 'retry', NULL)::orch_lease.cas_result;
    END;
END $$;
