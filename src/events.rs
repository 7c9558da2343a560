//! The lease history and its alerts.
//!
//! `orch_lease.lease_event` is an append-only history: every grant, refusal, release and stage CAS
//! (with `orch_lease.history = all`, the default) and every lease taken away from its holder (always).
//! A takeover — reclaimed from a dead holder, reaped at the age ceiling, forced by hand — is also
//! announced on channel `orch_lease` with a JSON payload of a stable, versioned shape, so an alerting
//! bridge needs only `LISTEN orch_lease`. The statement that records it announces it: a history
//! restored from a dump, or written by hand, announces nothing. `transition_lease_prune` bounds the
//! history and folds what it removes into `event_count`, so the counters the metrics report never go
//! down.
//!
//! `Event` and `COLUMNS` are the one definition of a history row: every writer goes through `record`
//! or `record_all`.
use crate::{config, owner, plans};
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
-- Its identity sequence too: a restored history must go on numbering after the restored rows.
SELECT pg_catalog.pg_extension_config_dump('orch_lease.lease_event_event_id_seq', '');

CREATE TABLE orch_lease.event_count (
    event   text NOT NULL,
    outcome text NOT NULL,
    n       bigint NOT NULL,
    PRIMARY KEY (event, outcome)
);
COMMENT ON TABLE orch_lease.event_count IS
    'Counts of the history events that transition_lease_prune removed: the metrics add them back.';
SELECT pg_catalog.pg_extension_config_dump('orch_lease.event_count', '');

-- The alert: one NOTIFY per takeover, payload format version 1 (docs/sql-reference.md), sent by the
-- statement that records the takeover (so a restored history announces nothing). Every text value is
-- cut to 120 characters (a trailing … marks a cut, and "truncated" says whether any was), so the payload
-- stays far under NOTIFY's 8000 bytes for every accepted input; the history row keeps them whole.
CREATE FUNCTION orch_lease.announcement(e orch_lease.lease_event) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT row_to_json(payload)::text
      FROM (SELECT 1 AS version, e.event_id, e.at, e.event, e.outcome, cut.v[1] AS work_item,
                   cut.v[2] AS old_owner, e.old_token, cut.v[3] AS old_boot_id, cut.v[4] AS new_owner,
                   e.new_token, cut.v[5] AS reason, e.by_role, cut.truncated
              FROM (SELECT array_agg(CASE WHEN length(x) > 120 THEN left(x, 120) || '…' ELSE x END
                                     ORDER BY n) AS v,
                           coalesce(bool_or(length(x) > 120), false) AS truncated
                      FROM unnest(ARRAY[e.work_item, e.old_owner, e.old_boot_id, e.new_owner, e.reason])
                           WITH ORDINALITY AS u (x, n)) cut) payload
$$;
COMMENT ON FUNCTION orch_lease.announcement(orch_lease.lease_event) IS
    'The NOTIFY payload (format version 1) that announces a takeover recorded in lease_event.';

-- Bounded history: removes events older than `older_than` (default orch_lease.history_retention) and
-- adds their counts to event_count in the same statement, so no count is lost or counted twice. Boots
-- superseded before the cut-off that no lease names any more go too.
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
    DELETE FROM orch_lease.boot b
     WHERE b.superseded_at < clock_timestamp() - retention
       AND NOT EXISTS (SELECT FROM orch_lease.transition_lease l WHERE l.owner_boot_id = b.boot_id);
    RETURN removed;
END
$$;
COMMENT ON FUNCTION orch_lease.transition_lease_prune(interval) IS
    'Removes lease history older than older_than (default: orch_lease.history_retention), and boots superseded before then; returns how many events.';
"#,
    name = "events",
    requires = ["lease_table", "boot_table"]
);

/// One lease history event. `old_*` is the lease the event took away or ran into (for a CAS, the
/// token it ran under); `new_*` the lease it granted.
#[derive(Default, Clone, Copy)]
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

/// The columns an event fills, in the order `record` and `record_all` pass them; `by_role` last.
const COLUMNS: &str = "event, outcome, work_item, actor, old_owner, old_token, old_boot_id, \
                       new_owner, new_token, stage_from, stage_to, reason, by_role";

/// Takeovers: always recorded, whatever `orch_lease.history` says, and announced.
const TAKEOVERS: [&str; 3] = ["reclaimed", "reaped", "forced"];

fn recorded(event: &Event<'_>) -> bool {
    config::history_all() || TAKEOVERS.contains(&event.event)
}

/// The takeovers among the rows a statement recorded, announced. The rows come back as columns, not as
/// one whole-row value: Citus cannot ship a whole-row reference of a distributed table (docs/scale-out.md).
const ANNOUNCE: &str =
    "SELECT pg_catalog.pg_notify('orch_lease', orch_lease.announcement(ROW(r.*)::orch_lease.lease_event))
       FROM recorded r WHERE r.event IN ('reclaimed', 'reaped', 'forced')";

thread_local! {
    /// A routine event: recorded, not announced.
    static INSERT_ONE: String = format!(
        "INSERT INTO orch_lease.lease_event ({COLUMNS})
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, pg_catalog.pg_get_userbyid($13))"
    );
    /// A takeover: recorded and announced.
    static INSERT_ANNOUNCED: String = format!(
        "WITH recorded AS (
             INSERT INTO orch_lease.lease_event ({COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, pg_catalog.pg_get_userbyid($13))
             RETURNING *)
         {ANNOUNCE}"
    );
    static INSERT_ALL: String = format!(
        "WITH recorded AS (
             INSERT INTO orch_lease.lease_event ({COLUMNS})
             SELECT *, pg_catalog.pg_get_userbyid($13)
               FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[],
                           $7::text[], $8::text[], $9::bigint[], $10::text[], $11::text[], $12::text[])
             RETURNING *)
         {ANNOUNCE}"
    );
}

/// Records one event in the history, and announces it if it is a takeover. Run as the extension's
/// owner; `by_role` is the caller.
pub fn record(client: &SpiClient<'_>, event: Event<'_>) {
    if !recorded(&event) {
        return;
    }
    let statement = match TAKEOVERS.contains(&event.event) {
        true => &INSERT_ANNOUNCED,
        false => &INSERT_ONE,
    };
    statement.with(|sql| {
        plans::run(
            client,
            sql,
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
                owner::caller().into(),
            ],
        )
    });
}

/// Records many events with one statement (recover's and the reaper's takeovers), announcing each.
pub fn record_all(client: &SpiClient<'_>, events: &[Event<'_>]) {
    let events: Vec<&Event> = events.iter().filter(|event| recorded(event)).collect();
    if events.is_empty() {
        return;
    }
    fn text<'a>(
        events: &[&Event<'a>],
        field: fn(&Event<'a>) -> Option<&'a str>,
    ) -> Vec<Option<&'a str>> {
        events.iter().map(|event| field(event)).collect()
    }
    fn token(events: &[&Event<'_>], field: fn(&Event<'_>) -> Option<i64>) -> Vec<Option<i64>> {
        events.iter().map(|event| field(event)).collect()
    }
    INSERT_ALL.with(|sql| {
        plans::run(
            client,
            sql,
            &[
                text(&events, |e| Some(e.event)).into(),
                text(&events, |e| Some(e.outcome)).into(),
                text(&events, |e| Some(e.work_item)).into(),
                text(&events, |e| e.actor).into(),
                text(&events, |e| e.old_owner).into(),
                token(&events, |e| e.old_token).into(),
                text(&events, |e| e.old_boot_id).into(),
                text(&events, |e| e.new_owner).into(),
                token(&events, |e| e.new_token).into(),
                text(&events, |e| e.stage_from).into(),
                text(&events, |e| e.stage_to).into(),
                text(&events, |e| e.reason).into(),
                owner::caller().into(),
            ],
        )
    });
}
