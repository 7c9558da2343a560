//! The lease history and its alerts.
//!
//! `orch_lease.lease_event` is an append-only history: every grant, release and stage CAS and the
//! refusals that say something is wrong (`superseded`, `retry`) with `orch_lease.history = changes`, the
//! default; the `held` and `busy` refusals of a polling fleet too with `all`; every lease taken away
//! from its holder always.
//! A takeover — reclaimed from a dead holder, reaped at the age ceiling, forced by hand — is also
//! announced on channel `orch_lease` with a JSON payload of a stable, versioned shape, so an alerting
//! bridge needs only `LISTEN orch_lease`. The statement that records it announces it: a history
//! restored from a dump, or written by hand, announces nothing. Every event, recorded or not, is
//! counted, and the metrics read the counts: a scrape costs the same whatever the history holds, and
//! `transition_lease_prune` bounds the history without touching a count. A count is a sequence per
//! (event, outcome) (`orch_lease.event_counter`), drawn by the statement that records the event: it
//! writes nothing per call (`nextval` is WAL-logged once in 32 calls) and never waits, so a refusal
//! writes nothing; it is not transactional (an event rolled back still counts).
//!
//! `Event` and `COLUMNS` are the one definition of a history row: every writer goes through `record`
//! or `record_all`.
use crate::config::{self, History};
use crate::rows::{column, nullable};
use crate::{errors, owner, plans};
use pgrx::prelude::*;
use pgrx::spi::{SpiClient, SpiTupleTable};
use std::cell::RefCell;

extension_sql!(
    r#"
CREATE TABLE orch_lease.lease_event (
    event_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    event       text NOT NULL CHECK (event IN ('acquired', 'refused', 'released', 'reclaimed', 'reaped',
                                               'forced', 'cas_applied', 'cas_lost', 'switched')),
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
    by_role     name,
    task_table  regclass
);
-- What each index serves: the key, the order of the history and logical replication's identity (prune
-- deletes); the BRIN, prune's range of old events and a reader's look at a recent span; the takeovers by
-- item and token, a CAS's tell of a lease taken away (lease_lost) from one never held (not_held). No
-- index by item over every event (0.5.0): its inserts land on random pages, a full-page image per page
-- after each checkpoint, on every grant and CAS; a reader's look at one item scans the span it names.
CREATE INDEX lease_event_takeover ON orch_lease.lease_event (work_item, old_token)
    WHERE event IN ('reclaimed', 'reaped', 'forced');
CREATE INDEX lease_event_at ON orch_lease.lease_event USING brin (at);
COMMENT ON TABLE orch_lease.lease_event IS
    'Lease history, append-only: grants, refusals, releases, takeovers (reclaimed, reaped, forced) and stage CAS outcomes.';
COMMENT ON COLUMN orch_lease.lease_event.task_table IS
    'The task table of the work item (NULL: no table was registered, the event concerns no work item, or it was recorded before 0.5.0).';
SELECT pg_catalog.pg_extension_config_dump('orch_lease.lease_event', '');
-- Its identity sequence too: a restored history must go on numbering after the restored rows.
SELECT pg_catalog.pg_extension_config_dump('orch_lease.lease_event_event_id_seq', '');

-- The running counts: a sequence per (event, outcome), named by orch_lease.event_counter, drawn once per
-- event (0.5.0; before, a row per backend slot in event_count). A count writes nothing per event
-- (nextval is WAL-logged once in 32 calls) and never waits; it is not transactional (an event rolled
-- back still counts) and after a crash it may be up to 32 ahead, as a Prometheus counter may. A view,
-- not a table: logical replication (FOR ALL TABLES) would copy its rows onto the subscriber's own.
CREATE VIEW orch_lease.event_counter AS
SELECT v.event, v.outcome, v.sequence_name,
       pg_catalog.to_regclass(pg_catalog.format('orch_lease.%I', v.sequence_name)) AS counter
  FROM (VALUES
        ('acquired', 'acquired', 'acquired_count'),
        ('refused', 'held', 'refused_held_count'),
        ('refused', 'busy', 'refused_busy_count'),
        ('refused', 'superseded', 'refused_superseded_count'),
        ('refused', 'retry', 'refused_retry_count'),
        ('refused', 'not_found', 'refused_not_found_count'),
        ('released', 'released', 'released_count'),
        ('reclaimed', 'reclaimed', 'reclaimed_count'),
        ('reclaimed', 'recovered', 'reclaimed_recovered_count'),
        ('reclaimed', 'stale', 'reclaimed_stale_count'),
        ('reaped', 'ceiling', 'reaped_ceiling_count'),
        ('forced', 'forced', 'forced_count'),
        ('cas_applied', 'applied', 'cas_applied_count'),
        ('cas_lost', 'stage_mismatch', 'cas_lost_stage_mismatch_count'),
        ('cas_lost', 'lease_lost', 'cas_lost_lease_lost_count'),
        ('cas_lost', 'not_held', 'cas_lost_not_held_count'),
        ('cas_lost', 'not_found', 'cas_lost_not_found_count'),
        ('cas_lost', 'invalid_transition', 'cas_lost_invalid_transition_count'),
        ('cas_lost', 'retry', 'cas_lost_retry_count'),
        ('switched', 'on', 'switched_on_count'),
        ('switched', 'off', 'switched_off_count')) v (event, outcome, sequence_name);
COMMENT ON VIEW orch_lease.event_counter IS
    'The sequence that counts each (event, outcome), whatever the history keeps; the metrics read them.';
DO $$
DECLARE
    c record;
BEGIN
    FOR c IN SELECT * FROM orch_lease.event_counter LOOP
        EXECUTE pg_catalog.format('CREATE SEQUENCE IF NOT EXISTS orch_lease.%I AS bigint', c.sequence_name);
        EXECUTE pg_catalog.format('COMMENT ON SEQUENCE orch_lease.%I IS %L', c.sequence_name,
            pg_catalog.format('How many %s events with outcome %s: not transactional (orch_lease.event_counter).',
                              c.event, c.outcome));
        EXECUTE pg_catalog.format('REVOKE ALL ON SEQUENCE orch_lease.%I FROM PUBLIC', c.sequence_name);
        PERFORM pg_catalog.pg_extension_config_dump(pg_catalog.format('orch_lease.%I', c.sequence_name), '');
    END LOOP;
END
$$;

-- Bounded history: removes events older than `older_than` (default orch_lease.history_retention). The
-- counts live in their sequences, which pruning leaves alone. Superseded boots stay, however old: a boot
-- forgotten would be an unknown one, and its zombie's acquires granted again (#29 item 9).
CREATE FUNCTION orch_lease.transition_lease_prune(older_than interval DEFAULT NULL) RETURNS bigint
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
    RETURN removed;
END
$$;
COMMENT ON FUNCTION orch_lease.transition_lease_prune(interval) IS
    'Removes lease history older than older_than (default: orch_lease.history_retention); returns how many events. The counts are kept apart; superseded boots are kept, so that their processes stay refused.';
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
    /// The work item's task table (`task_table::Item`); None for an event of no work item.
    pub task_table: Option<pg_sys::Oid>,
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
                       new_owner, new_token, stage_from, stage_to, reason, task_table, by_role";

/// Takeovers, and the kill-switch switched (`switch::set_enabled`, work item ''): always recorded,
/// whatever `orch_lease.history` says, and announced.
const ANNOUNCED: [&str; 4] = ["reclaimed", "reaped", "forced", "switched"];

/// The refusals of a polling fleet: a `held` or `busy` acquire. They change nothing, and are neither
/// recorded (but with `orch_lease.history = all`) nor counted by a write.
fn polling(event: &Event<'_>) -> bool {
    event.event == "refused" && matches!(event.outcome, "held" | "busy")
}

fn recorded(event: &Event<'_>) -> bool {
    match config::history() {
        History::All => true,
        History::Changes => !polling(event),
        History::Takeovers => ANNOUNCED.contains(&event.event),
    }
}

/// The text values an announcement cuts to 120 characters (a trailing … marks a cut).
const CUT: [&str; 5] = [
    "work_item",
    "old_owner",
    "old_boot_id",
    "new_owner",
    "reason",
];

/// Draws one count of each `(event, outcome)` in `source`'s rows (one per event) from the sequence
/// `orch_lease.event_counter` names for it; `counted` says how many were (`counted` checks them all).
fn count(source: &str) -> String {
    format!(
        "SELECT pg_catalog.count(pg_catalog.nextval(c.counter)) AS counted
           FROM {source} LEFT JOIN orch_lease.event_counter c USING (event, outcome)"
    )
}

/// Raises unless every one of `events` was counted: a pair `event_counter` misses must fail its tests,
/// never go uncounted.
fn counted(rows: SpiTupleTable<'_>, events: &[Event<'_>]) {
    let counted: i64 = column(&rows.first(), "counted");
    if counted != events.len() as i64 {
        let pairs: Vec<String> = events
            .iter()
            .map(|e| format!("{}/{}", e.event, e.outcome))
            .collect();
        errors::internal(
            "cannot count",
            &pairs.join(", "),
            format!("{counted} counted"),
        );
    }
}

thread_local! {
    /// The sequence counting each (event, outcome), as `event_counter` named it: kept for the backend
    /// until an invalidation of one of them (DROP EXTENSION drops them) or of every relation.
    static COUNTERS: RefCell<Vec<(String, String, pg_sys::Oid)>> = const { RefCell::new(Vec::new()) };
}

/// A relation cache invalidation: of a kept counter (DROP EXTENSION), or of every relation (InvalidOid).
pub fn counters_invalidated(relid: pg_sys::Oid) {
    COUNTERS.with(|counters| {
        // Never borrowed across a statement: the borrow is free whenever PostgreSQL calls this.
        if let Ok(mut counters) = counters.try_borrow_mut() {
            if relid == pg_sys::InvalidOid || counters.iter().any(|(_, _, oid)| *oid == relid) {
                counters.clear();
            }
        }
    });
}

/// The sequence that counts `event`'s (event, outcome): looked up once per backend, so that counting
/// one event is a bare `nextval`. A pair `event_counter` misses raises, never goes uncounted.
fn counter(client: &SpiClient<'_>, event: &Event<'_>) -> pg_sys::Oid {
    // SAFETY: what every lock acquisition does; one shared flag's read when nothing has arrived.
    unsafe { pg_sys::AcceptInvalidationMessages() };
    let kept = COUNTERS.with(|counters| {
        counters
            .borrow()
            .iter()
            .find(|(e, o, _)| e == event.event && o == event.outcome)
            .map(|(_, _, oid)| *oid)
    });
    if let Some(oid) = kept {
        return oid;
    }
    let found = plans::run(
        client,
        "SELECT c.counter::pg_catalog.oid AS counter FROM orch_lease.event_counter c
          WHERE c.event = $1 AND c.outcome = $2",
        &[event.event.into(), event.outcome.into()],
    )
    .next()
    .and_then(|row| nullable::<pg_sys::Oid>(&row, "counter"));
    let Some(oid) = found else {
        errors::internal(
            "cannot count",
            &format!("{}/{}", event.event, event.outcome),
            "no counter in orch_lease.event_counter",
        );
    };
    COUNTERS.with(|counters| {
        counters
            .borrow_mut()
            .push((event.event.to_string(), event.outcome.to_string(), oid))
    });
    oid
}

/// The history row of one event, from parameters $1 to $14 (`COLUMNS`' order, `by_role` an oid).
fn insert_one() -> String {
    format!(
        "INSERT INTO orch_lease.lease_event ({COLUMNS})
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,
                 pg_catalog.pg_get_userbyid($14))"
    )
}

/// The history rows of takeovers, from arrays $1 to $13 and the role $14: the query `recorded`.
fn insert_all() -> String {
    format!(
        "recorded AS (
             INSERT INTO orch_lease.lease_event ({COLUMNS})
             SELECT *, pg_catalog.pg_get_userbyid($14)
               FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[],
                           $7::text[], $8::text[], $9::bigint[], $10::text[], $11::text[], $12::text[],
                           $13::oid[])
             RETURNING *)"
    )
}

thread_local! {
    /// One event counted, by its counter ($1).
    static COUNT_ONE: String = "SELECT pg_catalog.nextval($1::pg_catalog.regclass)".to_string();
    /// A routine event recorded, not announced.
    static INSERT_ONE: String = insert_one();
    /// A routine event recorded and counted (its counter $15) by one statement.
    static RECORD_ONE: String = format!(
        "WITH recorded AS ({}) SELECT pg_catalog.nextval($15::pg_catalog.regclass)",
        insert_one()
    );
    /// Events counted, from arrays of their events and outcomes.
    static COUNT_ALL: String = count("unnest($1::text[], $2::text[]) e (event, outcome)");
    /// Takeovers recorded and announced by one statement.
    static ANNOUNCE_ALL: String = format!("WITH {} {}", insert_all(), announce());
    /// Takeovers recorded, counted and announced by one statement.
    static RECORD_ALL: String = format!(
        "WITH {}, counted AS ({}), announced AS ({})
         SELECT (SELECT counted FROM counted), (SELECT count(*) FROM announced) AS announced",
        insert_all(),
        count("recorded e"),
        announce()
    );
}

/// Whether the history and the counts can be written by one statement: not with Citus loaded, where the
/// history is distributed and the counts stay local to each node, and one statement cannot write both
/// (docs/scale-out.md). Citus is a shared_preload_library: its settings exist in every session it may
/// run in. A look-up of one setting, far cheaper than the statement it saves.
fn one_statement() -> bool {
    // SAFETY: a look-up of a setting by a static name; the value (or NULL) is only tested for NULL.
    unsafe { pg_sys::GetConfigOption(c"citus.shard_count".as_ptr(), true, false) }.is_null()
}

/// The announcement of the takeovers in `recorded` (every row of it is one): NOTIFY orch_lease,
/// payload format version 3 (docs/sql-reference.md), `{"version":3,"events":[…]}`, each element naming
/// its work item's task table (schema-qualified, quoted as needed: at most 2 × 63 bytes, doubled
/// quotes aside, so never cut; null for no table), one element per
/// takeover in event_id order, as many per payload as stay far under NOTIFY's 8000 bytes. Every text
/// value is cut to 120 characters, so an element is under 4,300 bytes whatever an actor passed (every
/// character escaped); the running sum of element sizes divided by 3,200 numbers the payloads, so a
/// payload holds under max(2 × 3,200, 4,300 + 3,200) bytes of elements. The sum runs in the order the
/// rows come (no sort: the bound holds in any order); each payload lists its events by event_id.
fn announce() -> String {
    let cut = |column: &str| {
        format!(
            "CASE WHEN length(r.{column}) > 120 THEN left(r.{column}, 120) || '…' ELSE r.{column} END \
             AS {column}"
        )
    };
    format!(
        "SELECT pg_catalog.pg_notify('orch_lease',
                    '{{\"version\":3,\"events\":[' || string_agg(payload, ',' ORDER BY event_id) || ']}}')
           FROM (SELECT event_id, payload,
                        sum(octet_length(payload) + 1) OVER (ROWS UNBOUNDED PRECEDING) / 3200 AS part
                   FROM (SELECT r.event_id, row_to_json(e)::text AS payload
                           FROM recorded r,
                                LATERAL (SELECT r.event_id, r.at, r.event, r.outcome, {}, {}, r.old_token, {},
                                                {}, r.new_token, {}, r.by_role,
                                                coalesce({}, false) AS truncated,
                                                (SELECT pg_catalog.format('%I.%I', n.nspname, c.relname)
                                                   FROM pg_catalog.pg_class c
                                                   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                                                  WHERE c.oid = r.task_table) AS task_table) e) e) p
          GROUP BY part",
        cut("work_item"),
        cut("old_owner"),
        cut("old_boot_id"),
        cut("new_owner"),
        cut("reason"),
        CUT.map(|column| format!("length(r.{column}) > 120")).join(" OR ")
    )
}

/// Counts one event, and records it in the history if `orch_lease.history` keeps it (a takeover is
/// also announced). Run as the extension's owner; `by_role` is the caller.
pub fn record(client: &SpiClient<'_>, event: Event<'_>) {
    if ANNOUNCED.contains(&event.event) {
        return record_all(client, &[event]);
    }
    let counter = counter(client, &event);
    let count_one = || COUNT_ONE.with(|sql| plans::run(client, sql, &[counter.into()]));
    if !recorded(&event) {
        // A polling refusal (`held`, `busy`) ends here by default: nothing written.
        count_one();
        return;
    }
    if one_statement() {
        let mut args = row_of(&event);
        args.push(counter.into());
        RECORD_ONE.with(|sql| plans::run(client, sql, &args));
    } else {
        INSERT_ONE.with(|sql| plans::run(client, sql, &row_of(&event)));
        count_one();
    }
}

/// The parameters of `event`'s history row, in `COLUMNS`' order.
fn row_of<'a>(event: &Event<'a>) -> Vec<pgrx::datum::DatumWithOid<'a>> {
    vec![
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
        event.task_table.into(),
        owner::caller().into(),
    ]
}

/// Records, counts and announces takeovers (recover's and the reaper's, one at a time for an acquire's
/// reclaim and a forced release): always recorded, whatever the history keeps.
pub fn record_all(client: &SpiClient<'_>, events: &[Event<'_>]) {
    if events.is_empty() {
        return;
    }
    fn text<'a>(
        events: &[Event<'a>],
        field: fn(&Event<'a>) -> Option<&'a str>,
    ) -> Vec<Option<&'a str>> {
        events.iter().map(field).collect()
    }
    fn token(events: &[Event<'_>], field: fn(&Event<'_>) -> Option<i64>) -> Vec<Option<i64>> {
        events.iter().map(field).collect()
    }
    let rows = || {
        vec![
            text(events, |e| Some(e.event)).into(),
            text(events, |e| Some(e.outcome)).into(),
            text(events, |e| Some(e.work_item)).into(),
            text(events, |e| e.actor).into(),
            text(events, |e| e.old_owner).into(),
            token(events, |e| e.old_token).into(),
            text(events, |e| e.old_boot_id).into(),
            text(events, |e| e.new_owner).into(),
            token(events, |e| e.new_token).into(),
            text(events, |e| e.stage_from).into(),
            text(events, |e| e.stage_to).into(),
            text(events, |e| e.reason).into(),
            events
                .iter()
                .map(|e| e.task_table)
                .collect::<Vec<_>>()
                .into(),
            owner::caller().into(),
        ]
    };
    if one_statement() {
        counted(
            RECORD_ALL.with(|sql| plans::run(client, sql, &rows())),
            events,
        );
    } else {
        ANNOUNCE_ALL.with(|sql| plans::run(client, sql, &rows()));
        let args = [
            text(events, |e| Some(e.event)).into(),
            text(events, |e| Some(e.outcome)).into(),
        ];
        counted(COUNT_ALL.with(|sql| plans::run(client, sql, &args)), events);
    }
}
