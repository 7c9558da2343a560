//! Observability: the log of taken-away leases, its NOTIFY, and the read-only status view.
//!
//! Every lease that is reclaimed from a dead incarnation or forcibly released is written to
//! `orch_lease.lease_event`; a statement trigger announces each such row on channel `orch_lease` with
//! the row as its JSON payload, so an alerting bridge needs only `LISTEN orch_lease`.
use crate::guard;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

extension_sql!(
    r#"
CREATE TABLE orch_lease.lease_event (
    event_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    event       text NOT NULL CHECK (event IN ('reclaimed', 'forced')),
    work_item   text NOT NULL,
    old_owner   text,
    old_token   bigint,
    old_boot_id text,
    new_owner   text,
    new_token   bigint,
    reason      text NOT NULL
);
CREATE INDEX lease_event_work_item ON orch_lease.lease_event (work_item, at);
COMMENT ON TABLE orch_lease.lease_event IS
    'Leases taken away from their holder: reclaimed from a superseded boot, or forcibly released.';
SELECT pg_catalog.pg_extension_config_dump('orch_lease.lease_event', '');

-- One trigger call per statement, however many leases it took away (recover may release thousands).
CREATE FUNCTION orch_lease.announce_event() RETURNS trigger
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
"#,
    name = "events",
    requires = ["lease_table", "boot_table", recovery::session_alive]
);

/// One taken-away lease, as the event log records it.
pub struct Taken<'a> {
    pub event: &'a str,
    pub work_item: &'a str,
    pub old_owner: &'a str,
    pub old_token: i64,
    pub old_boot_id: &'a str,
    pub new_owner: Option<&'a str>,
    pub new_token: Option<i64>,
    pub reason: &'a str,
}

/// Logs (and so announces) one taken-away lease.
pub fn record(client: &SpiClient<'_>, taken: Taken<'_>) {
    guard::run(
        client,
        "INSERT INTO orch_lease.lease_event
             (event, work_item, old_owner, old_token, old_boot_id, new_owner, new_token, reason)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            taken.event.into(),
            taken.work_item.into(),
            taken.old_owner.into(),
            taken.old_token.into(),
            taken.old_boot_id.into(),
            taken.new_owner.into(),
            taken.new_token.into(),
            taken.reason.into(),
        ],
    );
}
