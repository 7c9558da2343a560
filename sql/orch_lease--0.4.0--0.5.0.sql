-- orch_lease 0.4.0 -> 0.5.0. Hand-written; never edit it once released. The result must equal a fresh
-- 0.5.0 install: scripts/upgrade-test.sh compares them. Each change has its own headed section below.
\echo Use "ALTER EXTENSION orch_lease UPDATE TO '0.5.0'" to load this file. \quit

-- ---------------------------------------------------------------------------------------------------
-- Issue #29 part A (one key per row, one set of rules per transaction): the registry records the id
-- column's type and type modifier, so that a changed id type asks for a new registration. A table
-- registered before keeps the type it has now (what 0.4.0 keyed by); one that is gone gets NULL.
ALTER TABLE orch_lease.task_table ADD COLUMN id_type regtype, ADD COLUMN id_typmod integer;
COMMENT ON COLUMN orch_lease.task_table.id_type IS
    'The id column''s type and type modifier when it was registered: after a change the table must be registered again.';
UPDATE orch_lease.task_table t
   SET id_type = a.atttypid, id_typmod = a.atttypmod
  FROM pg_catalog.pg_attribute a
 WHERE a.attrelid = t.relid AND a.attname = t.id_column AND NOT a.attisdropped;

-- #29 part B (trust-b): recover never hangs, prune keeps boots, squatting repair, legacy rows assigned.

-- Prune keeps every boot: a boot forgotten was unknown again, and its zombie's acquires were granted.
CREATE OR REPLACE FUNCTION orch_lease.transition_lease_prune(older_than interval DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    retention interval := coalesce(older_than,
                                   current_setting('orch_lease.history_retention', true)::interval,
                                   interval '7 days');
    removed bigint;
    cutoff timestamptz;
BEGIN
    IF retention < interval '0' THEN
        RAISE EXCEPTION 'orch_lease: older_than must not be negative, not %', retention
              USING ERRCODE = '22023';
    END IF;
    -- The cut-off is a value, not a volatile call inside the DELETEs: Citus refuses those (docs/scale-out.md).
    cutoff := clock_timestamp() - retention;
    WITH gone AS (DELETE FROM orch_lease.lease_event WHERE at < cutoff RETURNING 1)
    SELECT count(*) INTO removed FROM gone;
    -- Counts a transaction made in a row of its own (shard below 0: a prepared transaction held its
    -- slot, or committed after its snapshot) join slot 0, so such rows do not pile up; the metrics' sums
    -- do not move. Nothing waits: a row locked right now, or slot 0 while another prune folds into it
    -- (its slot lock, class "cnts"), is left for the next prune.
    IF pg_catalog.pg_try_advisory_xact_lock(1668183155, 0) THEN
        WITH folded AS (
            DELETE FROM orch_lease.event_count c
             WHERE c.ctid = ANY (ARRAY(SELECT o.ctid FROM orch_lease.event_count o WHERE o.shard < 0
                                         FOR UPDATE SKIP LOCKED))
            RETURNING c.event, c.outcome, c.n)
        INSERT INTO orch_lease.event_count AS c (event, outcome, shard, n)
        SELECT f.event, f.outcome, 0, sum(f.n) FROM folded f GROUP BY f.event, f.outcome
            ON CONFLICT (event, outcome, shard) DO UPDATE SET n = c.n + EXCLUDED.n;
    END IF;
    RETURN removed;
END
$$;
COMMENT ON FUNCTION orch_lease.transition_lease_prune(interval) IS
    'Removes lease history older than older_than (default: orch_lease.history_retention) and folds counts made in transactions'' own rows into slot 0; returns how many events. Superseded boots are kept, so that their processes stay refused.';

-- The admins' repair for squatting: every boot of an instance becomes a role's.
CREATE  FUNCTION orch_lease."transition_lease_hand_over"(
	"instance" TEXT, /* Option < & str > */
	"to_role" TEXT /* Option < & str > */
) RETURNS INT /* i32 */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'transition_lease_hand_over_wrapper';
COMMENT ON FUNCTION orch_lease.transition_lease_hand_over(text, text) IS
    'For the people on call: every boot of an instance becomes the given role''s (the repair for an instance name or boot id another role registered first). Returns how many boots changed hands.';
REVOKE ALL ON FUNCTION orch_lease.transition_lease_hand_over(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION orch_lease.transition_lease_hand_over(text, text) TO orch_lease_admin;

-- Leases and boots from before 0.4.0 name no role: any actor could end such a lease with its (sequential,
-- guessable) token, or acquire under such a boot. They become the role that runs the update's.
UPDATE orch_lease.transition_lease SET holder_role = current_user WHERE holder_role IS NULL;
UPDATE orch_lease.boot SET registered_by = current_user WHERE registered_by IS NULL;
