//! Observability: the lease history, its alerts, the status view and the metrics.
//!
//! `orch_lease.lease_event` is an append-only history: every grant, refusal, release and stage CAS
//! (with `orch_lease.history = all`, the default) and every lease taken away from its holder (always).
//! A takeover — reclaimed from a dead holder, reaped at the age ceiling, forced by hand — is also
//! announced on channel `orch_lease` with a JSON payload of a stable, versioned shape, so an alerting
//! bridge needs only `LISTEN orch_lease`. `transition_lease_prune` bounds the history and folds what it
//! removes into `event_count`, so the counters `transition_lease_metrics` reports never go down.
use crate::{config, guard};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

extension_sql!(
    r#"
CREATE TABLE orch_lease.lease_event (
    event_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    event       text NOT NULL CHECK (event IN ('acquired', 'refused', 'released', 'reclaimed', 'reaped',
                                               'forced', 'cas_applied', 'cas_lost')),
    work_item   text NOT NULL,
    old_owner   text,
    old_token   bigint,
    old_boot_id text,
    new_owner   text,
    new_token   bigint,
    reason      text,
    outcome     text NOT NULL,
    actor       text,
    stage_from  text,
    stage_to    text,
    by_role     name
);
CREATE INDEX lease_event_work_item ON orch_lease.lease_event (work_item, at);
CREATE INDEX lease_event_at ON orch_lease.lease_event USING brin (at);
COMMENT ON TABLE orch_lease.lease_event IS
    'Lease history, append-only: grants, refusals, releases, takeovers (reclaimed, reaped, forced) and stage CAS outcomes.';
SELECT pg_catalog.pg_extension_config_dump('orch_lease.lease_event', '');

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
CREATE FUNCTION orch_lease.announce_event() RETURNS trigger
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

CREATE VIEW orch_lease.transition_lease_status AS
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
COMMENT ON VIEW orch_lease.transition_lease_status IS
    'Every held lease with its owner, age and liveness (live; stale = boot superseded or session gone; unknown = boot never registered).';

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
"#,
    name = "events",
    requires = ["lease_table", "boot_table", recovery::session_alive]
);

/// One lease history event. `old_*` is the lease the event took away or ran into (for a CAS, the
/// token it ran under); `new_*` the lease it granted.
#[derive(Default)]
pub struct Event<'a> {
    pub event: &'a str,
    pub outcome: &'a str,
    pub work_item: &'a str,
    /// The owner named in the call (the would-be holder of a refused acquire, the releaser…).
    pub actor: Option<&'a str>,
    pub old_owner: Option<&'a str>,
    pub old_token: Option<i64>,
    pub old_boot_id: Option<&'a str>,
    pub new_owner: Option<&'a str>,
    pub new_token: Option<i64>,
    pub stage_from: Option<&'a str>,
    pub stage_to: Option<&'a str>,
    pub reason: Option<&'a str>,
}

/// Takeovers: always recorded, whatever `orch_lease.history` says, and announced.
const TAKEOVERS: [&str; 3] = ["reclaimed", "reaped", "forced"];

/// Records one event in the history (a takeover is announced by the table's trigger).
pub fn record(client: &SpiClient<'_>, event: Event<'_>) {
    if !(config::history_all() || TAKEOVERS.contains(&event.event)) {
        return;
    }
    guard::run(
        client,
        "INSERT INTO orch_lease.lease_event
             (event, outcome, work_item, actor, old_owner, old_token, old_boot_id, new_owner, new_token,
              stage_from, stage_to, reason, by_role)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, pg_catalog.pg_get_userbyid($13))",
        &[
            event.event.into(),
            event.outcome.into(),
            event.work_item.into(),
            event.actor.into(),
            event.old_owner.into(),
            event.old_token.into(),
            event.old_boot_id.into(),
            event.new_owner.into(),
            event.new_token.into(),
            event.stage_from.into(),
            event.stage_to.into(),
            event.reason.into(),
            guard::caller().into(),
        ],
    );
}
