-- A PL/pgSQL twin of orch_lease's acquire and commit_stage_cas, with the same semantics (the same
-- advisory gate, boot check, lost-race subtransactions and registry lookup), written for the benchmark
-- only: it is what a careful team would hand-write instead of installing the extension.
CREATE SCHEMA IF NOT EXISTS twin;

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
        RETURN ROW(true, 'disabled', NULL, NULL, NULL, NULL, NULL)::orch_lease.lease_grant;
    END IF;
    BEGIN
        SELECT b.superseded_at IS NOT NULL INTO superseded FROM orch_lease.boot b
         WHERE b.boot_id = p_boot FOR SHARE NOWAIT;
        IF superseded THEN
            RETURN ROW(false, 'superseded', NULL, NULL, NULL, NULL, NULL)::orch_lease.lease_grant;
        END IF;
        IF NOT pg_try_advisory_xact_lock(1869767528, hashtext(p_item)) THEN
            RETURN ROW(false, 'busy', NULL, NULL, NULL, NULL, NULL)::orch_lease.lease_grant;
        END IF;
        SELECT l.* INTO held FROM orch_lease.transition_lease l WHERE l.work_item = p_item;
        IF NOT FOUND THEN
            INSERT INTO orch_lease.transition_lease (work_item, token, owner, owner_pid, owner_boot_id, scope)
            VALUES (p_item, nextval('orch_lease.token_seq'), p_owner, p_pid, p_boot, p_scope)
            ON CONFLICT (work_item) DO NOTHING RETURNING token INTO new_token;
            IF new_token IS NULL THEN
                RETURN ROW(false, 'busy', NULL, NULL, NULL, NULL, NULL)::orch_lease.lease_grant;
            END IF;
            RETURN ROW(true, 'acquired', new_token, NULL, NULL, NULL, NULL)::orch_lease.lease_grant;
        END IF;
        SELECT b.superseded_at IS NOT NULL INTO holder_dead FROM orch_lease.boot b
         WHERE b.boot_id = held.owner_boot_id;
        IF coalesce(holder_dead, false) THEN
            RAISE EXCEPTION 'the twin does not implement reclaim' USING ERRCODE = '0A000';
        END IF;
        RETURN ROW(false, 'held', NULL, held.owner, held.owner_pid, held.owner_boot_id, held.acquired_at)::orch_lease.lease_grant;
    EXCEPTION WHEN serialization_failure OR lock_not_available OR deadlock_detected THEN
        RETURN ROW(false, 'busy', NULL, NULL, NULL, NULL, NULL)::orch_lease.lease_grant;
    END;
END $$;

CREATE OR REPLACE FUNCTION twin.commit(p_item text, p_token bigint, p_expected text, p_new text)
RETURNS orch_lease.cas_result LANGUAGE plpgsql AS $$
DECLARE
    reg record;
    written boolean;
    current text;
BEGIN
    SELECT t.relid::regclass::text AS tbl, quote_ident(t.id_column) AS id, quote_ident(t.stage_column) AS stage,
           (SELECT format_type(a.atttypid, NULL) FROM pg_attribute a
             WHERE a.attrelid = t.relid AND a.attname = t.id_column) AS id_type,
           (SELECT format_type(a.atttypid, NULL) FROM pg_attribute a
             WHERE a.attrelid = t.relid AND a.attname = t.stage_column) AS stage_type
      INTO reg
      FROM orch_lease.task_table t;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no task table is registered' USING ERRCODE = '55000';
    END IF;
    BEGIN
        DELETE FROM orch_lease.transition_lease WHERE work_item = p_item AND token = p_token;
        IF NOT FOUND THEN
            RETURN ROW(false, 'lease_lost', NULL)::orch_lease.cas_result;
        END IF;
        BEGIN
            EXECUTE format('UPDATE %s SET %s = $3::%s WHERE %s = $1::%s AND %s = $2::%s RETURNING true',
                           reg.tbl, reg.stage, reg.stage_type, reg.id, reg.id_type, reg.stage, reg.stage_type)
               INTO written USING p_item, p_expected, p_new;
            IF written THEN
                RETURN ROW(true, 'applied', NULL)::orch_lease.cas_result;
            END IF;
            EXECUTE format('SELECT %s::text FROM %s WHERE %s = $1::%s', reg.stage, reg.tbl, reg.id, reg.id_type)
               INTO current USING p_item;
            RETURN ROW(false, CASE WHEN current IS NULL THEN 'not_found' ELSE 'stage_mismatch' END, current)::orch_lease.cas_result;
        EXCEPTION WHEN serialization_failure OR lock_not_available OR deadlock_detected THEN
            RETURN ROW(false, 'stage_mismatch', NULL)::orch_lease.cas_result;
        END;
    EXCEPTION WHEN serialization_failure OR lock_not_available OR deadlock_detected THEN
        RETURN ROW(false, 'lease_lost', NULL)::orch_lease.cas_result;
    END;
END $$;
