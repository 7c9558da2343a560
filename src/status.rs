//! What the people on call and the scrapers read: the status of every lease (and of the kill-switch),
//! the history as each role may see it, and the metrics. Reads only: the tables they read are written
//! elsewhere.
//!
//! What an actor sees: only the leases and history of its own role, and no token but its own role's
//! (a token is a capability). Members of `orch_lease_admin` and `pg_monitor` see everything. The task
//! table's row-level security does not reach orch_lease's rows: an actor of one role never sees the
//! work items of another role here, whatever the task table lets it read.
use pgrx::prelude::*;

extension_sql!(
    r#"
CREATE VIEW orch_lease.transition_lease_status WITH (security_barrier) AS
SELECT l.work_item,
       l.owner,
       l.owner_pid,
       l.owner_boot_id,
       b.instance,
       CASE WHEN pg_catalog.pg_has_role('orch_lease_admin', 'USAGE')
              OR pg_catalog.pg_has_role('pg_monitor', 'USAGE')
              OR l.holder_role = CURRENT_USER THEN l.token END AS token,
       l.scope,
       l.acquired_at,
       round(extract(epoch FROM clock_timestamp() - l.acquired_at), 3) AS age_s,
       coalesce(orch_lease.boot_liveness(l.owner_boot_id), 'unknown') AS liveness,
       l.holder_role,
       (SELECT s.enabled FROM orch_lease.kill_switch() s) AS enabled,
       l.task_table,
       NOT orch_lease.session_alive(b.registered_session) AS session_gone
  FROM orch_lease.transition_lease l
  LEFT JOIN orch_lease.boot b ON b.boot_id = l.owner_boot_id
 WHERE pg_catalog.pg_has_role('orch_lease_admin', 'USAGE')
    OR pg_catalog.pg_has_role('pg_monitor', 'USAGE')
    OR l.holder_role = CURRENT_USER;
COMMENT ON VIEW orch_lease.transition_lease_status IS
    'Every held lease with its task table, owner, age and liveness (live; stale = boot superseded or session gone; unknown = boot never registered), whether orch_lease is on for the reader''s calls (the kill-switch), and whether the database session that registered the holder''s boot is gone (session_gone; NULL when none was recorded). Actors see their own role''s leases only.';

CREATE VIEW orch_lease.lease_history WITH (security_barrier) AS
SELECT e.event_id, e.at, e.event, e.work_item, e.old_owner,
       CASE WHEN pg_catalog.pg_has_role('orch_lease_admin', 'USAGE')
              OR pg_catalog.pg_has_role('pg_monitor', 'USAGE') THEN e.old_token END AS old_token,
       e.old_boot_id, e.new_owner,
       CASE WHEN pg_catalog.pg_has_role('orch_lease_admin', 'USAGE')
              OR pg_catalog.pg_has_role('pg_monitor', 'USAGE') THEN e.new_token END AS new_token,
       e.reason, e.outcome, e.actor, e.stage_from, e.stage_to, e.by_role, e.task_table
  FROM orch_lease.lease_event e
 WHERE pg_catalog.pg_has_role('orch_lease_admin', 'USAGE')
    OR pg_catalog.pg_has_role('pg_monitor', 'USAGE')
    OR e.by_role = CURRENT_USER;
COMMENT ON VIEW orch_lease.lease_history IS
    'The lease history as the reader may see it: actors see the events their own role caused, without tokens.';

-- One query for a scraper: counters (the running counts, a sequence per event and outcome, never going
-- down but by a crash's or a restore's reset, whatever the history keeps: a scrape costs the same at any
-- history size) and gauges.
CREATE FUNCTION orch_lease.transition_lease_metrics()
RETURNS TABLE (metric text, label text, value double precision)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    WITH counted AS (SELECT c.event, c.outcome, coalesce(pg_catalog.pg_sequence_last_value(c.counter), 0) AS n
                       FROM orch_lease.event_counter c),
    series (metric, label, event, outcome) AS (VALUES
        ('orch_lease_grants_total', 'acquired', 'acquired', NULL),
        ('orch_lease_grants_total', 'reclaimed', 'reclaimed', 'reclaimed'),
        ('orch_lease_refusals_total', 'held', 'refused', 'held'),
        ('orch_lease_refusals_total', 'busy', 'refused', 'busy'),
        ('orch_lease_refusals_total', 'superseded', 'refused', 'superseded'),
        ('orch_lease_refusals_total', 'retry', 'refused', 'retry'),
        ('orch_lease_refusals_total', 'not_found', 'refused', 'not_found'),
        ('orch_lease_releases_total', 'released', 'released', NULL),
        ('orch_lease_reclaims_total', 'stale', 'reclaimed', NULL),
        ('orch_lease_reclaims_total', 'ceiling', 'reaped', NULL),
        ('orch_lease_reclaims_total', 'manual', 'forced', NULL),
        ('orch_lease_cas_total', 'applied', 'cas_applied', NULL),
        ('orch_lease_cas_total', 'stage_mismatch', 'cas_lost', 'stage_mismatch'),
        ('orch_lease_cas_total', 'lease_lost', 'cas_lost', 'lease_lost'),
        ('orch_lease_cas_total', 'not_held', 'cas_lost', 'not_held'),
        ('orch_lease_cas_total', 'not_found', 'cas_lost', 'not_found'),
        ('orch_lease_cas_total', 'invalid_transition', 'cas_lost', 'invalid_transition'),
        ('orch_lease_cas_total', 'retry', 'cas_lost', 'retry'))
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
    UNION ALL
    SELECT m.metric, '', m.value
      FROM orch_lease.kill_switch() s,
           LATERAL (VALUES ('orch_lease_enabled', s.enabled::integer::float8),
                           ('orch_lease_enabled_changed_timestamp_seconds',
                            coalesce(extract(epoch FROM s.changed_at), 0)::float8)) m (metric, value)
     ORDER BY 1, 2
$$;
COMMENT ON FUNCTION orch_lease.transition_lease_metrics() IS
    'Counters (grants, refusals, releases, reclaims by kind, CAS outcomes) and gauges (leases by liveness, oldest live lease age, the kill-switch and when it last switched).';
"#,
    name = "status",
    requires = [
        "lease_table",
        "boot_table",
        "events",
        "liveness",
        "kill_switch_comments"
    ]
);
