-- orch_lease 0.1.0 -> 0.2.0: the stage graph, the bypass guard, session-bound leases, and one
-- announcement trigger call per statement instead of per row. Hand-written; never edit it once released.
-- The result must equal a fresh 0.2.0 install: scripts/upgrade-test.sh compares them.

-- Announcements: a statement-level trigger (recover releases many leases in one statement).
DROP TRIGGER announce ON orch_lease.lease_event;
-- One trigger call per statement, however many leases it took away (recover may release thousands).
CREATE OR REPLACE FUNCTION orch_lease.announce_event() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    PERFORM pg_notify('orch_lease', row_to_json(e)::text)
       FROM (SELECT * FROM new_events ORDER BY event_id) e;
    RETURN NULL;
END
$$;
CREATE TRIGGER announce AFTER INSERT ON orch_lease.lease_event
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION orch_lease.announce_event();


-- Session-bound leases: their liveness is their session's, which the status view now reports.
CREATE FUNCTION orch_lease.session_alive(
	"boot_id" TEXT /* & str */
) RETURNS bool /* Option < bool > */
STRICT VOLATILE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'session_alive_wrapper';

CREATE OR REPLACE VIEW orch_lease.transition_lease_status AS
SELECT l.work_item,
       l.owner,
       l.owner_pid,
       l.owner_boot_id,
       b.instance,
       l.token,
       l.scope,
       l.acquired_at,
       round(extract(epoch FROM clock_timestamp() - l.acquired_at), 3) AS age_s,
       CASE orch_lease.session_alive(l.owner_boot_id)
            WHEN true THEN 'live'
            WHEN false THEN 'stale'
            ELSE CASE WHEN b.boot_id IS NULL THEN 'unknown'
                      WHEN b.superseded_at IS NOT NULL THEN 'stale'
                      ELSE 'live' END END AS liveness
  FROM orch_lease.transition_lease l
  LEFT JOIN orch_lease.boot b ON b.boot_id = l.owner_boot_id;
COMMENT ON VIEW orch_lease.transition_lease_status IS
    'Every held lease with its owner, age and liveness (live; stale = boot superseded or session gone; unknown = boot never registered).';

-- Stage rules: the stage graph and the bypass guard.
CREATE FUNCTION orch_lease.stage_write_allowed() RETURNS bool /* bool */
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'stage_write_allowed_wrapper';

CREATE TABLE orch_lease.stage_transition (
    from_stage text NOT NULL,
    to_stage   text NOT NULL,
    PRIMARY KEY (from_stage, to_stage)
);
COMMENT ON TABLE orch_lease.stage_transition IS
    'The allowed stage transitions. Empty: every transition is allowed.';
CREATE TABLE orch_lease.terminal_stage (stage text PRIMARY KEY);
COMMENT ON TABLE orch_lease.terminal_stage IS 'Stages no transition leaves.';
CREATE TABLE orch_lease.bypass_log (
    at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    task_table regclass NOT NULL,
    task_id    text,
    old_stage  text,
    new_stage  text,
    by_role    name NOT NULL DEFAULT current_user
);
COMMENT ON TABLE orch_lease.bypass_log IS
    'Stage writes that bypassed the CAS while the bypass guard was in warn mode.';
SELECT pg_catalog.pg_extension_config_dump('orch_lease.stage_transition', '');
SELECT pg_catalog.pg_extension_config_dump('orch_lease.terminal_stage', '');
SELECT pg_catalog.pg_extension_config_dump('orch_lease.bypass_log', '');

-- The bypass guard: a BEFORE UPDATE trigger on the task table. Arguments: mode, stage column, id column.
CREATE FUNCTION orch_lease.bypass_guard() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
    old_stage text := to_jsonb(OLD) ->> TG_ARGV[1];
    new_stage text := to_jsonb(NEW) ->> TG_ARGV[1];
    task_id   text := to_jsonb(NEW) ->> TG_ARGV[2];
BEGIN
    IF old_stage IS NOT DISTINCT FROM new_stage OR orch_lease.stage_write_allowed() THEN
        RETURN NEW;
    END IF;
    IF TG_ARGV[0] = 'reject' THEN
        RAISE EXCEPTION 'orch_lease: the stage of % % was written outside the stage CAS (% -> %)',
                        TG_TABLE_NAME, task_id, old_stage, new_stage
              USING ERRCODE = '55000',
                    HINT = 'Write the stage with orch_lease.update_task_stage_cas or orch_lease.commit_stage_cas.';
    END IF;
    INSERT INTO orch_lease.bypass_log (task_table, task_id, old_stage, new_stage)
    VALUES (TG_RELID, task_id, old_stage, new_stage);
    RAISE WARNING 'orch_lease: the stage of % % was written outside the stage CAS (% -> %)',
                  TG_TABLE_NAME, task_id, old_stage, new_stage;
    RETURN NEW;
END
$$;

CREATE FUNCTION orch_lease.register_stage_graph(
	"transitions" TEXT[], /* :: std :: option :: Option < Vec < Option < String > > > */
	"terminal_stages" TEXT[] DEFAULT '{}' /* :: std :: option :: Option < Vec < Option < String > > > */
) RETURNS void
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'register_stage_graph_wrapper';

CREATE FUNCTION orch_lease.install_bypass_guard(
	"mode" TEXT DEFAULT 'warn' /* Option < & str > */
) RETURNS void
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'install_bypass_guard_wrapper';

CREATE FUNCTION orch_lease.transition_lease_acquire_session(
	"work_item" TEXT, /* Option < & str > */
	"owner" TEXT, /* Option < & str > */
	"scope" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS orch_lease.lease_grant /* :: pgrx :: heap_tuple :: PgHeapTuple < '_, :: pgrx :: pgbox :: AllocatedByRust
> */
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'transition_lease_acquire_session_wrapper';
