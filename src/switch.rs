//! The database's kill-switch: one statement by an admin, `orch_lease.set_enabled(false, reason)`, turns
//! orch_lease off for every session of the database at its next call, whatever its connection's age or
//! pooler; `set_enabled(true, reason)` turns it back on. Each switch is recorded in the history (event
//! `switched`, by whom and why) and announced on `NOTIFY orch_lease`.
//!
//! The state is the one row of `orch_lease.kill_switch` (no row: on, never switched). orch_lease is on
//! in a session when that row says on *and* the session's `orch_lease.enabled` is on (`config::enabled`):
//! off wins, wherever it is said.
//!
//! What a call costs: nothing but a flag's read. The row is read once and kept for the backend; a write of
//! the table (its trigger, whoever writes) invalidates the table's relation cache entry, PostgreSQL sends
//! that invalidation to every backend at commit (before the committing client hears of it), and every
//! check first takes the invalidations that have arrived (`AcceptInvalidationMessages`, one shared flag's
//! read when none has). So a call never acts on a state older than the last switch committed before it
//! started, whatever its transaction's age or isolation level: the row is read with the latest snapshot,
//! not the transaction's.
use crate::events::{self, Event};
use crate::{errors, owner, plans, races};
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::PgTupleDesc;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

extension_sql!(
    r#"
CREATE TABLE orch_lease.kill_switch (
    id         boolean PRIMARY KEY DEFAULT true CHECK (id),
    enabled    boolean NOT NULL,
    changed_at timestamptz NOT NULL,
    changed_by text NOT NULL,
    reason     text NOT NULL
);
COMMENT ON TABLE orch_lease.kill_switch IS
    'The database''s kill-switch, written by orch_lease.set_enabled: at most one row; no row is on, never switched.';
SELECT pg_catalog.pg_extension_config_dump('orch_lease.kill_switch', '');
"#,
    name = "kill_switch",
    requires = ["lease_table"]
);

/// The switch as a call sees it: on or off, and the last switch (when, by whom, why), if any.
pub struct State {
    pub enabled: bool,
    pub last: Option<(TimestampWithTimeZone, String, String)>,
}

const ON: State = State {
    enabled: true,
    last: None,
};

thread_local! {
    /// The state read last, while no invalidation of the table has come since.
    static CACHED: RefCell<Option<Rc<State>>> = const { RefCell::new(None) };
    /// The table the cached state was read from.
    static TABLE: Cell<pg_sys::Oid> = const { Cell::new(pg_sys::InvalidOid) };
    /// Counts invalidations: a read that one overtook is used once, not kept.
    static INVALIDATIONS: Cell<u64> = const { Cell::new(0) };
}

/// A relation cache invalidation: of the switch's table, or of every relation (InvalidOid).
pub fn invalidated(relid: pg_sys::Oid) {
    if relid == pg_sys::InvalidOid || relid == TABLE.get() {
        CACHED.with(|cached| cached.borrow_mut().take());
        INVALIDATIONS.set(INVALIDATIONS.get() + 1);
    }
}

/// The database's switch, as of the last switch committed before this call.
pub fn state() -> Rc<State> {
    // SAFETY: what every lock acquisition does; cheap when nothing has arrived.
    unsafe { pg_sys::AcceptInvalidationMessages() };
    if let Some(state) = CACHED.with(|cached| cached.borrow().clone()) {
        return state;
    }
    let before = INVALIDATIONS.get();
    let Some((table, state)) = read() else {
        // No switch table (another version of the extension in this database, or none): on, not kept.
        return Rc::new(ON);
    };
    let state = Rc::new(state);
    if INVALIDATIONS.get() == before {
        TABLE.set(table);
        CACHED.with(|cached| *cached.borrow_mut() = Some(Rc::clone(&state)));
    }
    state
}

/// Is the database's switch on?
pub fn enabled() -> bool {
    state().enabled
}

/// Reads the switch's row with the latest snapshot: the table (if it is this extension's) and its state.
/// Never raises for a missing table: the bypass guard calls this inside an application's own UPDATE,
/// also between a library update and `ALTER EXTENSION orch_lease UPDATE`.
fn read() -> Option<(pg_sys::Oid, State)> {
    // SAFETY: catalog look-ups by static names; the table is opened under AccessShareLock and the
    // snapshot registered before the scan, and the row is read while both are held, then released.
    unsafe {
        let extension = pg_sys::get_extension_oid(c"orch_lease".as_ptr(), true);
        let schema = pg_sys::get_namespace_oid(c"orch_lease".as_ptr(), true);
        if extension == pg_sys::InvalidOid || schema == pg_sys::InvalidOid {
            return None;
        }
        let table = pg_sys::get_relname_relid(c"kill_switch".as_ptr(), schema);
        // Only the extension's own table: a table of that name in a schema put in its place is not it.
        if table == pg_sys::InvalidOid
            || pg_sys::getExtensionOfObject(pg_sys::RelationRelationId, table) != extension
        {
            return None;
        }
        // The lock first (it takes the invalidations that have arrived), then the snapshot.
        let relation = pg_sys::table_open(table, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        let snapshot = pg_sys::RegisterSnapshot(pg_sys::GetLatestSnapshot());
        let scan = pg_sys::systable_beginscan(
            relation,
            pg_sys::InvalidOid,
            false,
            snapshot,
            0,
            std::ptr::null_mut(),
        );
        let tuple = pg_sys::systable_getnext(scan);
        let state = if tuple.is_null() {
            ON
        } else {
            let row = PgHeapTuple::from_heap_tuple(
                PgTupleDesc::from_pg_unchecked((*relation).rd_att),
                tuple,
            );
            let column = |name: &str| -> Option<String> { row.get_by_name(name).ok().flatten() };
            State {
                enabled: row.get_by_name("enabled").ok().flatten().unwrap_or(true),
                last: row
                    .get_by_name::<TimestampWithTimeZone>("changed_at")
                    .ok()
                    .flatten()
                    .map(|at| {
                        let by = column("changed_by").unwrap_or_default();
                        (at, by, column("reason").unwrap_or_default())
                    }),
            }
        };
        pg_sys::systable_endscan(scan);
        pg_sys::UnregisterSnapshot(snapshot);
        pg_sys::table_close(relation, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        Some((table, state))
    }
}

/// Turns orch_lease off (`false`) or back on (`true`) for every session of the database, at each one's
/// next call. Returns whether it changed anything: a switch to the state it is in already records nothing.
#[pg_extern(volatile, parallel_unsafe, requires = ["kill_switch", "events"])]
fn set_enabled(enabled: Option<bool>, reason: Option<&str>) -> bool {
    let enabled = errors::present("enabled", enabled);
    let reason = errors::required("reason", reason);
    let by = owner::caller_name();
    // Switches run one at a time, under a table lock of their own: a switch left in an open transaction
    // makes the on-call's switch fail within the bound, naming that transaction — never wait unbounded
    // (red team of #28, F5). Actors' reads of the switch (ACCESS SHARE) never wait for it.
    races::naming_holders(
        "set_enabled",
        (
            "held by another switch not yet ended",
            &["orch_lease.kill_switch"],
        ),
        "A transaction named in the detail switched (or wrote orch_lease.kill_switch) and has not ended: \
         end it with SELECT pg_catalog.pg_terminate_backend(pid) and call set_enabled again \
         (docs/runbook.md, section 5).",
        || switch(enabled, reason, &by),
    )
}

/// The switch itself, under the switches' lock.
fn switch(enabled: bool, reason: &str, by: &str) -> bool {
    owner::as_owner(|| {
        Spi::connect(|client| {
            plans::run(
                client,
                "LOCK TABLE orch_lease.kill_switch IN SHARE ROW EXCLUSIVE MODE",
                &[],
            );
            // No row is on: switching on then inserts nothing. Two admins switching at once: the second
            // finds the row switched already (it waited for the first's lock) and changes nothing.
            let changed = !plans::run(
                client,
                "INSERT INTO orch_lease.kill_switch AS k (id, enabled, changed_at, changed_by, reason)
                 SELECT true, $1, clock_timestamp(), $2, $3
                  WHERE NOT $1 OR EXISTS (SELECT FROM orch_lease.kill_switch)
                 ON CONFLICT (id) DO UPDATE
                    SET enabled = EXCLUDED.enabled, changed_at = EXCLUDED.changed_at,
                        changed_by = EXCLUDED.changed_by, reason = EXCLUDED.reason
                  WHERE k.enabled <> EXCLUDED.enabled
                 RETURNING k.enabled",
                &[enabled.into(), by.into(), reason.into()],
            )
            .is_empty();
            if changed {
                events::record(
                    client,
                    Event {
                        event: "switched",
                        outcome: if enabled { "on" } else { "off" },
                        work_item: "",
                        reason: Some(reason),
                        ..Default::default()
                    },
                );
            }
            changed
        })
    })
}

/// The switch as this session's calls see it: `enabled` (what a call does now: both below on),
/// `database_enabled` (`set_enabled`, for every session), `session_enabled` (`orch_lease.enabled` as this
/// session has it), and the last switch.
#[pg_extern(volatile, parallel_unsafe, requires = ["kill_switch"])]
#[allow(clippy::type_complexity)]
fn kill_switch() -> TableIterator<
    'static,
    (
        name!(enabled, bool),
        name!(database_enabled, bool),
        name!(session_enabled, bool),
        name!(changed_at, Option<TimestampWithTimeZone>),
        name!(changed_by, Option<String>),
        name!(reason, Option<String>),
    ),
> {
    let state = state();
    let session = crate::config::session_enabled();
    let (at, by, reason) = match &state.last {
        Some((at, by, reason)) => (Some(*at), Some(by.clone()), Some(reason.clone())),
        None => (None, None, None),
    };
    TableIterator::once((
        state.enabled && session,
        state.enabled,
        session,
        at,
        by,
        reason,
    ))
}

/// Any write of the switch's table, however made (`set_enabled`, or a superuser's own UPDATE, DELETE or
/// TRUNCATE), reaches every session's next call: its commit invalidates the table's cache entry there.
/// The same for `orch_lease.generation_mark` (`lease::moved`, the logical-move check kept per backend).
#[pg_trigger(sql = r#"
CREATE FUNCTION orch_lease.kill_switch_changed() RETURNS trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'kill_switch_changed_wrapper';
COMMENT ON FUNCTION orch_lease.kill_switch_changed() IS
    'Trigger of orch_lease.kill_switch and orch_lease.generation_mark: a write of either reaches every session at its next call.';
"#)]
fn kill_switch_changed<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, std::convert::Infallible> {
    if let Ok(table) = trigger.relation() {
        // SAFETY: queues an invalidation of the trigger's (open) relation, sent when this commits.
        unsafe { pg_sys::CacheInvalidateRelcacheByRelid(table.oid()) };
    }
    Ok(None)
}

extension_sql!(
    r#"
CREATE TRIGGER kill_switch_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON orch_lease.kill_switch
    FOR EACH STATEMENT EXECUTE FUNCTION orch_lease.kill_switch_changed();
COMMENT ON FUNCTION orch_lease.set_enabled(boolean, text) IS
    'The kill-switch: off (false) or back on (true) for every session of the database at its next call; recorded as switched and announced. Admins only.';
COMMENT ON FUNCTION orch_lease.kill_switch() IS
    'The kill-switch as this session''s calls see it: enabled (both on), database_enabled (set_enabled), session_enabled (orch_lease.enabled), and the last switch.';
"#,
    name = "kill_switch_comments",
    requires = ["kill_switch", set_enabled, kill_switch, kill_switch_changed]
);
