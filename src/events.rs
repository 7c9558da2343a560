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
//! `transition_lease_prune` bounds the history without touching a count. The refusals of a polling
//! fleet (`held`, `busy`) are counted by a sequence each, which writes nothing per call (`nextval` is
//! WAL-logged once in 32 calls), so a refusal writes nothing; every other event is counted in
//! `event_count` (one row per backend slot) by the statement that writes what it changed anyway.
//!
//! `Event` and `COLUMNS` are the one definition of a history row: every writer goes through `record`
//! or `record_all`.
use crate::config::{self, History};
use crate::{error_context, owner, plans, races};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::PgSqlErrorCode;

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
CREATE INDEX lease_event_work_item ON orch_lease.lease_event (work_item, at);
CREATE INDEX lease_event_at ON orch_lease.lease_event USING brin (at);
COMMENT ON TABLE orch_lease.lease_event IS
    'Lease history, append-only: grants, refusals, releases, takeovers (reclaimed, reaped, forced) and stage CAS outcomes.';
COMMENT ON COLUMN orch_lease.lease_event.task_table IS
    'The task table of the work item (NULL: no table was registered, the event concerns no work item, or it was recorded before 0.5.0).';
SELECT pg_catalog.pg_extension_config_dump('orch_lease.lease_event', '');
-- Its identity sequence too: a restored history must go on numbering after the restored rows.
SELECT pg_catalog.pg_extension_config_dump('orch_lease.lease_event_event_id_seq', '');

CREATE TABLE orch_lease.event_count (
    event   text NOT NULL,
    outcome text NOT NULL,
    n       bigint NOT NULL,
    shard   integer NOT NULL,
    PRIMARY KEY (event, outcome, shard)
);
COMMENT ON TABLE orch_lease.event_count IS
    'Running counts of every lease event, whatever the history keeps: one row per (event, outcome, backend slot), so no two sessions ever update one row; the metrics add them up.';
SELECT pg_catalog.pg_extension_config_dump('orch_lease.event_count', '');

-- The refusals of a polling fleet, counted without a write per call: not transactional (a refusal
-- rolled back still counts), and after a crash up to 32 ahead (what nextval logs in advance).
CREATE SEQUENCE orch_lease.refused_held_count AS bigint;
CREATE SEQUENCE orch_lease.refused_busy_count AS bigint;
COMMENT ON SEQUENCE orch_lease.refused_held_count IS
    'How many acquires were refused held, since 0.5.0 (before: in event_count): not transactional.';
COMMENT ON SEQUENCE orch_lease.refused_busy_count IS
    'How many acquires were refused busy, since 0.5.0 (before: in event_count): not transactional.';
SELECT pg_catalog.pg_extension_config_dump('orch_lease.refused_held_count', '');
SELECT pg_catalog.pg_extension_config_dump('orch_lease.refused_busy_count', '');

-- Bounded history: removes events older than `older_than` (default orch_lease.history_retention). The
-- counts live in event_count, which pruning leaves alone. Superseded boots stay, however old: a boot
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

/// Adds each `(event, outcome)` of `source` to this backend's count, inserting the row the first time.
/// Always through ON CONFLICT, whose look for the row takes no predicate lock: at SERIALIZABLE, counting
/// must not make two callers' transactions conflict (a plain UPDATE's index scan did, and raised 40001 in
/// the isolation specs).
fn count(source: &str) -> String {
    format!(
        "INSERT INTO orch_lease.event_count AS c (event, outcome, shard, n) {source}
         ON CONFLICT (event, outcome, shard) DO UPDATE SET n = c.n + EXCLUDED.n"
    )
}

/// Advisory lock class ("cnts") of the backend slots' counter rows.
const SLOT_LOCK_CLASS: i32 = 0x636e_7473;

/// The shard a count goes to, from the parameters numbered `slot` (this backend's slot, `shard()`) and
/// `class` (`SLOT_LOCK_CLASS`). The slot's row is used while this transaction holds the slot's advisory
/// lock, never waited for: a prepared transaction that counted keeps that lock with its row locks, and
/// a later session given the same slot then counts in a row of its own transaction (its xid, negated,
/// which no other transaction can hold) instead of waiting for it.
fn shard_of(slot: u8, class: u8) -> String {
    format!(
        "CASE WHEN pg_catalog.pg_try_advisory_xact_lock(${class}, ${slot}) THEN ${slot}
              ELSE -(pg_catalog.txid_current() % 2147483647)::integer END"
    )
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
    /// One event counted.
    static COUNT_ONE: String = count(&format!("VALUES ($1, $2, {}, 1)", shard_of(3, 4)));
    /// A routine event recorded, not announced.
    static INSERT_ONE: String = insert_one();
    /// A routine event recorded and counted by one statement.
    static RECORD_ONE: String = format!(
        "WITH recorded AS ({}) {}",
        insert_one(),
        count(&format!("VALUES ($1, $2, {}, 1)", shard_of(15, 16)))
    );
    /// Events counted, from arrays of their events and outcomes.
    static COUNT_ALL: String = count(&format!(
        "SELECT event, outcome, {}, count(*) FROM unnest($1::text[], $2::text[]) e (event, outcome)
          GROUP BY event, outcome",
        shard_of(3, 4)
    ));
    /// Takeovers recorded and announced by one statement.
    static ANNOUNCE_ALL: String = format!("WITH {} {}", insert_all(), announce());
    /// Takeovers recorded, counted and announced by one statement.
    static RECORD_ALL: String = format!(
        "WITH {}, counted AS ({}) {}",
        insert_all(),
        count(&format!(
            "SELECT event, outcome, {}, count(*) FROM recorded GROUP BY event, outcome",
            shard_of(15, 16)
        )),
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

/// This backend's slot in event_count: its PGPROC's number, which no other live session has, so
/// counting never waits for another session's row lock (slot 0 holds counts from before 0.4.0).
fn shard() -> i32 {
    // SAFETY: MyProc points into ProcGlobal->allProcs in every backend that can run SQL.
    let number = unsafe { pg_sys::MyProc.offset_from((*pg_sys::ProcGlobal).allProcs) };
    number as i32 + 1
}

/// Runs a statement that counts in this backend's slot (`Some(shard())`). At REPEATABLE READ and above,
/// with prepared transactions enabled, the slot's row may have been counted by a prepared transaction
/// that committed after this transaction's snapshot: ON CONFLICT DO UPDATE on it raises 40001, which no
/// contention of the caller's caused. The count then goes to a row of this transaction's own (`None`:
/// the shard expression's other branch), as while a prepared transaction holds the slot. Only there
/// does a count take a subtransaction (and, as it writes, a subtransaction id of its own).
fn counting(run: impl Fn(Option<i32>)) {
    let snapshot_per_transaction = races::one_snapshot();
    if !snapshot_per_transaction || !prepared_transactions() {
        return run(Some(shard()));
    }
    if let Err(error) = races::subtransaction(|| run(Some(shard()))) {
        let code = races::report_of(&error).sql_error_code();
        if code != PgSqlErrorCode::ERRCODE_T_R_SERIALIZATION_FAILURE {
            error.rethrow();
        }
        error_context::forget_passing();
        run(None);
    }
}

/// Whether this server can prepare transactions (`max_prepared_transactions` above 0, set at start).
fn prepared_transactions() -> bool {
    // SAFETY: a look-up of a setting by a static name; the value is the GUC's own string (or NULL),
    // valid until the setting changes, and read at once.
    let setting =
        unsafe { pg_sys::GetConfigOption(c"max_prepared_transactions".as_ptr(), false, false) };
    !setting.is_null() && unsafe { std::ffi::CStr::from_ptr(setting) }.to_bytes() != b"0"
}

/// Counts one event, and records it in the history if `orch_lease.history` keeps it (a takeover is
/// also announced). Run as the extension's owner; `by_role` is the caller.
pub fn record(client: &SpiClient<'_>, event: Event<'_>) {
    if ANNOUNCED.contains(&event.event) {
        return record_all(client, &[event]);
    }
    if polling(&event) {
        // Counted by its sequence: no row written, no transaction id taken (31 calls in 32).
        let count = match event.outcome {
            "held" => "SELECT nextval('orch_lease.refused_held_count')",
            _ => "SELECT nextval('orch_lease.refused_busy_count')",
        };
        plans::run(client, count, &[]);
        if recorded(&event) {
            INSERT_ONE.with(|sql| plans::run(client, sql, &row_of(&event)));
        }
        return;
    }
    let count_one = |slot: Option<i32>| {
        let args = [
            event.event.into(),
            event.outcome.into(),
            slot.into(),
            SLOT_LOCK_CLASS.into(),
        ];
        COUNT_ONE.with(|sql| plans::run(client, sql, &args));
    };
    if !recorded(&event) {
        return counting(count_one);
    }
    if one_statement() {
        counting(|slot| {
            let mut args = row_of(&event);
            args.extend([slot.into(), SLOT_LOCK_CLASS.into()]);
            RECORD_ONE.with(|sql| plans::run(client, sql, &args));
        });
    } else {
        INSERT_ONE.with(|sql| plans::run(client, sql, &row_of(&event)));
        counting(count_one);
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
        counting(|slot| {
            let mut args = rows();
            args.extend([slot.into(), SLOT_LOCK_CLASS.into()]);
            RECORD_ALL.with(|sql| plans::run(client, sql, &args));
        });
    } else {
        ANNOUNCE_ALL.with(|sql| plans::run(client, sql, &rows()));
        counting(|slot| {
            let args = [
                text(events, |e| Some(e.event)).into(),
                text(events, |e| Some(e.outcome)).into(),
                slot.into(),
                SLOT_LOCK_CLASS.into(),
            ];
            COUNT_ALL.with(|sql| plans::run(client, sql, &args));
        });
    }
}
