-- orch_lease 0.2.0 -> 0.3.0: operations. The reaper tiers and the liveness probe, the full lease history
-- with its retention and versioned alert payload, metrics, and least-privilege roles.
-- Hand-written; never edit it once released. The result must equal a fresh 0.3.0 install:
-- scripts/upgrade-test.sh compares them.

-- The lease history: every event, not only takeovers. Existing rows keep their values; their outcome
-- is what the call that wrote them answered.
ALTER TABLE orch_lease.lease_event
    ADD COLUMN outcome text,
    ADD COLUMN actor text,
    ADD COLUMN stage_from text,
    ADD COLUMN stage_to text,
    ADD COLUMN by_role name,
    ALTER COLUMN reason DROP NOT NULL,
    DROP CONSTRAINT lease_event_event_check,
    ADD CONSTRAINT lease_event_event_check CHECK (event IN ('acquired', 'refused', 'released', 'reclaimed',
                                                            'reaped', 'forced', 'cas_applied', 'cas_lost'));
UPDATE orch_lease.lease_event
   SET outcome = CASE WHEN event = 'forced' THEN 'forced'
                      WHEN new_owner IS NULL THEN 'recovered'
                      ELSE 'reclaimed' END;
ALTER TABLE orch_lease.lease_event ALTER COLUMN outcome SET NOT NULL;
CREATE INDEX lease_event_at ON orch_lease.lease_event USING brin (at);
COMMENT ON TABLE orch_lease.lease_event IS
    'Lease history, append-only: grants, refusals, releases, takeovers (reclaimed, reaped, forced) and stage CAS outcomes.';

CREATE TABLE orch_lease.event_count (
    event   text NOT NULL,
    outcome text NOT NULL,
    n       bigint NOT NULL,
    PRIMARY KEY (event, outcome)
);
COMMENT ON TABLE orch_lease.event_count IS
    'Counts of the history events that transition_lease_prune removed: the metrics add them back.';
SELECT pg_catalog.pg_extension_config_dump('orch_lease.event_count', '');

-- The alert: one NOTIFY per takeover, payload format version 1 (docs/sql-reference.md).
DROP TRIGGER announce ON orch_lease.lease_event;
CREATE OR REPLACE FUNCTION orch_lease.announce_event() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pg_notify('orch_lease', row_to_json(payload)::text)
       FROM (SELECT 1 AS version, NEW.event_id, NEW.at, NEW.event, NEW.outcome, NEW.work_item,
                    NEW.old_owner, NEW.old_token, NEW.old_boot_id, NEW.new_owner, NEW.new_token,
                    NEW.reason, NEW.by_role) payload;
    RETURN NULL;
END
$$;
-- Row-level with a WHEN clause: routine events queue no trigger call at all.
CREATE TRIGGER announce AFTER INSERT ON orch_lease.lease_event
    FOR EACH ROW WHEN (NEW.event IN ('reclaimed', 'reaped', 'forced'))
    EXECUTE FUNCTION orch_lease.announce_event();

-- Liveness of a lease holder's boot: live, stale (boot superseded, or session gone), NULL if unknown.
CREATE FUNCTION orch_lease.boot_liveness(owner_boot_id text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE orch_lease.session_alive($1)
                WHEN true THEN 'live'
                WHEN false THEN 'stale'
                ELSE (SELECT CASE WHEN b.superseded_at IS NULL THEN 'live' ELSE 'stale' END
                        FROM orch_lease.boot b WHERE b.boot_id = $1) END
$$;

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
       coalesce(orch_lease.boot_liveness(l.owner_boot_id), 'unknown') AS liveness
  FROM orch_lease.transition_lease l
  LEFT JOIN orch_lease.boot b ON b.boot_id = l.owner_boot_id;

-- Bounded history: removes events older than `older_than` (default orch_lease.history_retention) and
-- adds their counts to event_count in the same statement, so no count is lost or counted twice.
CREATE FUNCTION orch_lease.transition_lease_prune(older_than interval DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    retention interval := coalesce(older_than,
                                   current_setting('orch_lease.history_retention', true)::interval,
                                   interval '7 days');
    removed bigint;
BEGIN
    IF retention < interval '0' THEN
        RAISE EXCEPTION 'orch_lease: older_than must not be negative, not %', retention
              USING ERRCODE = '22023';
    END IF;
    WITH gone AS (
             DELETE FROM orch_lease.lease_event WHERE at < clock_timestamp() - retention
             RETURNING event, outcome),
         tally AS (SELECT event, outcome, count(*) AS n FROM gone GROUP BY event, outcome),
         folded AS (
             INSERT INTO orch_lease.event_count AS c (event, outcome, n)
             SELECT event, outcome, n FROM tally
             ON CONFLICT (event, outcome) DO UPDATE SET n = c.n + EXCLUDED.n)
    SELECT coalesce(sum(n), 0) INTO removed FROM tally;
    RETURN removed;
END
$$;
COMMENT ON FUNCTION orch_lease.transition_lease_prune(interval) IS
    'Removes lease history older than older_than (default: orch_lease.history_retention); returns how many events.';

-- One query for a scraper: counters (never going down: pruned events live on in event_count) and gauges.
CREATE FUNCTION orch_lease.transition_lease_metrics()
RETURNS TABLE (metric text, label text, value double precision)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    WITH counted AS (
        SELECT event, outcome, count(*) AS n FROM orch_lease.lease_event GROUP BY event, outcome
        UNION ALL
        SELECT event, outcome, n FROM orch_lease.event_count),
    series (metric, label, event, outcome) AS (VALUES
        ('orch_lease_grants_total', 'acquired', 'acquired', NULL),
        ('orch_lease_grants_total', 'reclaimed', 'reclaimed', 'reclaimed'),
        ('orch_lease_refusals_total', 'held', 'refused', 'held'),
        ('orch_lease_refusals_total', 'busy', 'refused', 'busy'),
        ('orch_lease_refusals_total', 'superseded', 'refused', 'superseded'),
        ('orch_lease_releases_total', 'released', 'released', NULL),
        ('orch_lease_reclaims_total', 'stale', 'reclaimed', NULL),
        ('orch_lease_reclaims_total', 'ceiling', 'reaped', NULL),
        ('orch_lease_reclaims_total', 'manual', 'forced', NULL),
        ('orch_lease_cas_total', 'applied', 'cas_applied', NULL),
        ('orch_lease_cas_total', 'stage_mismatch', 'cas_lost', 'stage_mismatch'),
        ('orch_lease_cas_total', 'lease_lost', 'cas_lost', 'lease_lost'),
        ('orch_lease_cas_total', 'not_found', 'cas_lost', 'not_found'),
        ('orch_lease_cas_total', 'invalid_transition', 'cas_lost', 'invalid_transition'))
    SELECT s.metric, s.label, coalesce(sum(c.n), 0)::float8
      FROM series s
      LEFT JOIN counted c ON c.event = s.event AND c.outcome = coalesce(s.outcome, c.outcome)
     GROUP BY s.metric, s.label
    UNION ALL
    SELECT 'orch_lease_leases', v.liveness, count(l.work_item)::float8
      FROM (VALUES ('live'), ('stale'), ('unknown')) v (liveness)
      LEFT JOIN orch_lease.transition_lease_status l ON l.liveness = v.liveness
     GROUP BY v.liveness
    UNION ALL
    SELECT 'orch_lease_oldest_live_lease_age_seconds', '',
           coalesce(max(age_s) FILTER (WHERE liveness = 'live'), 0)::float8
      FROM orch_lease.transition_lease_status
     ORDER BY 1, 2
$$;
COMMENT ON FUNCTION orch_lease.transition_lease_metrics() IS
    'Counters (grants, refusals, releases, reclaims by kind, CAS outcomes) and gauges (leases by liveness, oldest live lease age).';
-- The bypass guard writes bypass_log for whoever bypassed the CAS, so it runs as the extension's owner.
CREATE OR REPLACE FUNCTION orch_lease.bypass_guard() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
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

-- The reaper tiers and the per-item liveness probe.
CREATE FUNCTION orch_lease.transition_lease_reap(
	"max_running_s" INT /* Option < i32 > */
) RETURNS TABLE (
	"work_item" TEXT,  /* String */
	"kind" TEXT,  /* String */
	"token" bigint,  /* i64 */
	"owner" TEXT,  /* String */
	"owner_pid" INT,  /* i32 */
	"owner_boot_id" TEXT,  /* String */
	"acquired_at" timestamp with time zone,  /* TimestampWithTimeZone */
	"age_s" double precision  /* f64 */
)
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'transition_lease_reap_wrapper';

CREATE FUNCTION orch_lease.transition_lease_liveness(
	"work_item" TEXT /* Option < & str > */
) RETURNS TEXT /* String */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'transition_lease_liveness_wrapper';

-- Least privilege (see src/roles.rs): two roles, PUBLIC gets nothing.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'orch_lease_actor') THEN
        CREATE ROLE orch_lease_actor NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'orch_lease_admin') THEN
        CREATE ROLE orch_lease_admin NOLOGIN;
    END IF;
    IF NOT pg_catalog.pg_has_role('orch_lease_admin', 'orch_lease_actor', 'MEMBER') THEN
        GRANT orch_lease_actor TO orch_lease_admin;
    END IF;
END
$$;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA orch_lease FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA orch_lease FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA orch_lease FROM PUBLIC;
GRANT USAGE ON SCHEMA orch_lease TO orch_lease_actor, pg_monitor;

GRANT EXECUTE ON FUNCTION
    orch_lease.transition_lease_acquire(text, text, integer, text, text),
    orch_lease.transition_lease_acquire_session(text, text, text),
    orch_lease.transition_lease_release(text, bigint),
    orch_lease.update_task_stage_cas(text, text, text, bigint),
    orch_lease.commit_stage_cas(text, bigint, text, text),
    orch_lease.transition_lease_liveness(text),
    orch_lease.stage_write_allowed()
    TO orch_lease_actor;
GRANT EXECUTE ON FUNCTION
    orch_lease.session_alive(text),
    orch_lease.boot_liveness(text),
    orch_lease.transition_lease_metrics()
    TO orch_lease_actor, pg_monitor;
GRANT SELECT ON
    orch_lease.transition_lease, orch_lease.boot, orch_lease.lease_event, orch_lease.event_count,
    orch_lease.task_table, orch_lease.stage_transition, orch_lease.terminal_stage, orch_lease.bypass_log,
    orch_lease.transition_lease_status
    TO orch_lease_actor;
GRANT SELECT ON orch_lease.transition_lease_status, orch_lease.boot TO pg_monitor;

GRANT EXECUTE ON FUNCTION
    orch_lease.transition_lease_force_release(text, bigint, text),
    orch_lease.transition_lease_recover(text, text, integer),
    orch_lease.transition_lease_reap(integer),
    orch_lease.transition_lease_prune(interval),
    orch_lease.register_task_table(regclass, name, name),
    orch_lease.register_stage_graph(text[], text[]),
    orch_lease.install_bypass_guard(text),
    orch_lease.bypass_guard()
    TO orch_lease_admin;
