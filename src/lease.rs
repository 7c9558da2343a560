//! The transition lease: owner-exclusion on *entry* to a side-effectful transition.
//!
//! One row per held lease, keyed by its work item: the task table and the item's canonical key
//! (`task_table::item`), so '42' of `tasks` and '42' of `jobs` are two leases. A grant draws a
//! fencing token from one sequence, so every grant's token is larger than all before it. A lease has no
//! TTL: its holder is dead only when its boot incarnation was superseded (see `recovery`), and the only
//! age bound is a reaper's ceiling. A lease is its holder's capability: only the role that acquired it
//! may end it or commit under it; an operator uses force_release, which is announced.
//!
//! This module is the only writer of `orch_lease.transition_lease`: the CAS claims, keeps or ends a
//! lease through `claim`, recovery through `end_superseded` and `reap`; each records its own events.
use crate::events::{self, Event};
use crate::races::{self, Lost};
use crate::rows::{self, column, nullable};
use crate::task_table::{self, Item, TableArg, TaskTable, Typed};
use crate::{config, errors, owner, plans, recovery, stage_cas};
use pgrx::datum::DatumWithOid;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use pgrx::spi::{SpiClient, SpiHeapTupleData};
use pgrx::{composite_type, AllocatedByRust, PgSqlErrorCode};
use std::cell::Cell;

extension_sql!(
    r#"
CREATE SEQUENCE orch_lease.token_seq AS bigint;
COMMENT ON SEQUENCE orch_lease.token_seq IS 'Fencing tokens: every grant takes a new, larger one.';
CREATE TABLE orch_lease.transition_lease (
    work_item     text NOT NULL,
    token         bigint NOT NULL,
    owner         text NOT NULL,
    owner_pid     integer NOT NULL,
    owner_boot_id text NOT NULL,
    scope         text,
    acquired_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    holder_role   text,
    task_table    regclass NOT NULL,
    PRIMARY KEY (task_table, work_item)
);
CREATE INDEX transition_lease_owner_boot_id ON orch_lease.transition_lease (owner_boot_id);
COMMENT ON TABLE orch_lease.transition_lease IS 'One row per held transition lease.';
COMMENT ON COLUMN orch_lease.transition_lease.holder_role IS
    'The role that acquired the lease: only it may release it or commit under it (NULL: acquired before 0.4.0).';
COMMENT ON COLUMN orch_lease.transition_lease.task_table IS
    'The registered task table the work item is a row of (0, shown -, while no table is registered): a lease is keyed by (task_table, work_item).';
SELECT pg_catalog.pg_extension_config_dump('orch_lease.transition_lease', '');
SELECT pg_catalog.pg_extension_config_dump('orch_lease.token_seq', '');

-- Logical replication carries rows, not sequences (#29 item 3). A generation drawn at install is kept in
-- a sequence and in a row: every way of moving a database that carries the token sequence (a dump, a
-- physical standby, pg_upgrade) carries both or neither, but a logical move brings the old server's row
-- to a server whose own sequence does not match it. Then no token is granted until an admin adopts the
-- data (orch_lease.adopt_moved_data). Neither is dumped: a restore draws a generation of its own.
CREATE SEQUENCE orch_lease.generation AS bigint;
SELECT pg_catalog.setval('orch_lease.generation', 1 + (pg_catalog.random() * 9e18)::bigint);
COMMENT ON SEQUENCE orch_lease.generation IS
    'This database''s generation: a row of orch_lease.generation_mark that differs from it came from another server.';
CREATE TABLE orch_lease.generation_mark (generation bigint PRIMARY KEY);
INSERT INTO orch_lease.generation_mark SELECT last_value FROM orch_lease.generation;
COMMENT ON TABLE orch_lease.generation_mark IS
    'The generation of every server whose leases this database holds: more than its own (logical replication) refuses grants until orch_lease.adopt_moved_data.';

-- Adopts data a logical move brought: the token sequence goes above the old server's and every token in
-- the data, the history's above its events, and the old server's generation is dropped.
CREATE FUNCTION orch_lease.adopt_moved_data(token_floor bigint)
RETURNS bigint LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    floor bigint;
BEGIN
    IF token_floor IS NULL OR token_floor < 0 THEN
        RAISE EXCEPTION 'orch_lease: token_floor must be the old server''s last token (0 or more), got %',
              coalesce(token_floor::text, 'NULL')
              USING ERRCODE = '22023',
                    HINT = 'On the old server: SELECT last_value FROM orch_lease.token_seq. If it is gone, see docs/ha.md.';
    END IF;
    IF EXISTS (SELECT FROM pg_catalog.pg_subscription s
                WHERE s.subdbid = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = current_database())
                  AND s.subenabled) THEN
        RAISE EXCEPTION 'orch_lease: a subscription of this database is still enabled'
              USING ERRCODE = '55000',
                    HINT = 'Adopt the data once the move is over: stop the actors on the old server, let the subscription catch up, then ALTER SUBSCRIPTION … DISABLE (or DROP it).';
    END IF;
    floor := greatest(token_floor, 1,
                      (SELECT max(l.token) FROM orch_lease.transition_lease l),
                      (SELECT max(greatest(e.old_token, e.new_token)) FROM orch_lease.lease_event e),
                      (SELECT s.last_value FROM orch_lease.token_seq s));
    PERFORM setval('orch_lease.token_seq', floor);
    PERFORM setval('orch_lease.lease_event_event_id_seq',
                   greatest(1, (SELECT max(e.event_id) FROM orch_lease.lease_event e),
                            (SELECT s.last_value FROM orch_lease.lease_event_event_id_seq s)));
    DELETE FROM orch_lease.generation_mark m
     WHERE m.generation <> (SELECT g.last_value FROM orch_lease.generation g);
    INSERT INTO orch_lease.generation_mark SELECT g.last_value FROM orch_lease.generation g
        ON CONFLICT DO NOTHING;
    RETURN floor;
END
$$;
COMMENT ON FUNCTION orch_lease.adopt_moved_data(bigint) IS
    'After a move by logical replication: sets the token and history sequences above the old server''s last token and the data, and lets grants resume.';

CREATE TYPE orch_lease.lease_grant AS (
    acquired       boolean,
    outcome        text,
    token          bigint,
    holder         text,
    holder_pid     integer,
    holder_boot_id text,
    held_since     timestamptz,
    stage          text
);
COMMENT ON COLUMN orch_lease.lease_grant.stage IS
    'The task''s stage as read after the grant, in the same call (acquired, reclaimed, and the pass-through disabled and out_of_scope); NULL on a refusal, and without a registered task table.';
"#,
    name = "lease_table",
    requires = ["task_table_registry"]
);

/// Per-item transaction-level advisory lock class ("orch" in ASCII). Its two-key form keeps it apart
/// from an application's own single-bigint advisory locks.
const ITEM_LOCK_CLASS: i32 = 0x6f72_6368;

/// The current holder of a lease, as a refusal reports it.
struct Holder {
    token: i64,
    owner: String,
    pid: i32,
    /// None when it is another role's: a boot id learned from a refusal could be registered by the one
    /// who learned it, locking its owner out (#29 item 7).
    boot_id: Option<String>,
    since: TimestampWithTimeZone,
}

/// What an acquire decided, before it becomes an `orch_lease.lease_grant` row.
struct Grant {
    acquired: bool,
    outcome: &'static str,
    token: Option<i64>,
    holder: Option<Holder>,
    /// The task's stage, read after the grant (never on a refusal: the stage is the holder's to move).
    stage: Option<String>,
}

impl Grant {
    fn new(acquired: bool, outcome: &'static str) -> Self {
        Grant {
            acquired,
            outcome,
            token: None,
            holder: None,
            stage: None,
        }
    }

    /// Built in the caller's memory context, after SPI has finished (SPI frees its own on exit).
    fn into_row(self) -> PgHeapTuple<'static, AllocatedByRust> {
        let holder = self.holder;
        rows::composite(
            "orch_lease.lease_grant",
            vec![
                self.acquired.into_datum(),
                self.outcome.into_datum(),
                self.token.into_datum(),
                holder.as_ref().and_then(|h| h.owner.as_str().into_datum()),
                holder.as_ref().and_then(|h| h.pid.into_datum()),
                holder
                    .as_ref()
                    .and_then(|h| h.boot_id.as_deref().into_datum()),
                holder.as_ref().and_then(|h| h.since.into_datum()),
                self.stage.into_datum(),
            ],
        )
    }
}

/// Asks for the transition lease on `work_item`. Never waits and never raises on contention: the
/// outcome says what happened (acquired, held, reclaimed, busy, retry, superseded, not_found, disabled,
/// out_of_scope), and a grant says the task's stage, so an actor's cycle is acquire, effect, commit.
#[pg_extern(
    volatile,
    parallel_unsafe,
    requires = ["lease_table", "events", "liveness"],
    sql = r#"
CREATE FUNCTION orch_lease.transition_lease_acquire(
    work_item text,
    owner text,
    owner_pid integer,
    owner_boot_id text,
    scope text DEFAULT NULL,
    task_table regclass DEFAULT NULL
) RETURNS orch_lease.lease_grant VOLATILE PARALLEL UNSAFE LANGUAGE c
AS 'MODULE_PATHNAME', 'transition_lease_acquire_wrapper';
"#
)]
fn transition_lease_acquire(
    work_item: Option<&str>,
    owner: Option<&str>,
    owner_pid: Option<i32>,
    owner_boot_id: Option<&str>,
    scope: default!(Option<&str>, "NULL"),
    fcinfo: pg_sys::FunctionCallInfo,
) -> composite_type!('static, "orch_lease.lease_grant") {
    let task_table = task_table::argument(fcinfo, 5);
    let work_item = errors::required("work_item", work_item);
    let owner = errors::required("owner", owner);
    let owner_pid = errors::positive_pid("owner_pid", owner_pid);
    let boot_id = errors::required("owner_boot_id", owner_boot_id);
    recovery::only_this_session("owner_boot_id", boot_id);
    let scope = errors::optional("scope", scope);

    request_lease(Request {
        item: task_table::item("work_item", work_item, task_table),
        owner,
        owner_pid,
        boot_id: boot_id.to_string(),
        scope,
    })
}

/// Asks for a session-bound lease on `work_item`: it is live while the calling database session is,
/// and stale as soon as that backend is gone (its pid and start time identify it, so a reused pid does
/// not keep it alive); the next acquire reclaims it. Not for transaction-mode connection poolers, where
/// the session is not the actor's.
#[pg_extern(
    volatile,
    parallel_unsafe,
    requires = ["lease_table", "events", "liveness"],
    sql = r#"
CREATE FUNCTION orch_lease.transition_lease_acquire_session(
    work_item text,
    owner text,
    scope text DEFAULT NULL,
    task_table regclass DEFAULT NULL
) RETURNS orch_lease.lease_grant VOLATILE PARALLEL UNSAFE LANGUAGE c
AS 'MODULE_PATHNAME', 'transition_lease_acquire_session_wrapper';
"#
)]
fn transition_lease_acquire_session(
    work_item: Option<&str>,
    owner: Option<&str>,
    scope: default!(Option<&str>, "NULL"),
    fcinfo: pg_sys::FunctionCallInfo,
) -> composite_type!('static, "orch_lease.lease_grant") {
    let task_table = task_table::argument(fcinfo, 3);
    let work_item = errors::required("work_item", work_item);
    request_lease(Request {
        item: task_table::item("work_item", work_item, task_table),
        owner: errors::required("owner", owner),
        // SAFETY: a plain global of the backend, set at its start, read on its only thread.
        owner_pid: unsafe { pg_sys::MyProcPid },
        boot_id: recovery::this_session_boot_id(),
        scope: errors::optional("scope", scope),
    })
}

struct Request<'a> {
    item: Item,
    owner: &'a str,
    owner_pid: i32,
    boot_id: String,
    scope: Option<&'a str>,
}

fn request_lease(request: Request<'_>) -> PgHeapTuple<'static, AllocatedByRust> {
    Spi::connect(|client| {
        // The task's stage, read with the caller's privileges (its row-level security applies); outside
        // the owner switch, which reaches none of the application's objects. None: no row it may see.
        let stage = |look: fn(&SpiClient<'_>, &TaskTable, Typed) -> Option<Option<String>>| {
            let (table, id) = request.item.task.as_ref()?;
            look(client, table, *id)
        };
        // Passing through, an actor still learns the stage it acts on. Every read of the task table
        // takes what locks it needs at once or answers `busy` (`races::at_once`, G17, G20).
        let pass = |outcome| {
            races::lost_race_as(
                || Grant {
                    stage: races::at_once(|| stage(stage_cas::read_stage)).flatten(),
                    ..Grant::new(true, outcome)
                },
                lost_grant,
            )
        };
        // The task row is read with the table's lock, never waited for: acquire never waits (G14).
        if (request.item.task.as_ref()).is_some_and(|(table, _)| !table.readable_at_once()) {
            let busy = Grant::new(false, "busy");
            owner::as_owner(|| record_grant(client, &request, &busy));
            return busy;
        }
        if !config::enabled() {
            return pass("disabled");
        }
        if !config::covers_scope(request.scope) {
            return pass("out_of_scope");
        }
        // An id with no task row the caller may write is no task (swapped arguments, a typo, another
        // tenant's row): no lease, no token drawn.
        let found = match &request.item.task {
            Some((table, id)) if !table.rows_created_later => races::lost_race_as(
                || races::at_once(|| stage_cas::writable_row(client, table, *id)),
                Err,
            ),
            _ => Ok(true),
        };
        let decided = match found {
            Ok(false) => Grant::new(false, "not_found"),
            Err(lost) => lost_grant(lost),
            Ok(true) => {
                let role = owner::caller_name();
                races::lost_race_as(
                    || {
                        let decided = owner::as_owner(|| acquire(client, &request, &role));
                        match decided.token {
                            // A row changed after a transaction snapshot is `retry`: the grant is
                            // rolled back with this attempt.
                            Some(_) => Grant {
                                stage: races::at_once(|| stage(stage_after_grant)).flatten(),
                                ..decided
                            },
                            None => decided,
                        }
                    },
                    lost_grant,
                )
            }
        };
        owner::as_owner(|| record_grant(client, &request, &decided));
        decided
    })
    .into_row()
}

/// The refusal of an acquire that lost a race.
fn lost_grant(lost: Lost) -> Grant {
    match lost {
        Lost::Locked => Grant::new(false, "busy"),
        Lost::Conflict => Grant::new(false, "retry"),
    }
}

/// The task's stage just after a grant. At READ COMMITTED the read's snapshot is taken after the grant,
/// and a holder that committed and ended just before it is seen. With a transaction snapshot it is read
/// as a write would find the row (`stage_cas::current_stage`), so a row changed since the snapshot is a
/// serialization failure, never a stale stage.
fn stage_after_grant(
    client: &SpiClient<'_>,
    table: &TaskTable,
    id: Typed,
) -> Option<Option<String>> {
    match races::one_snapshot() {
        false => stage_cas::read_stage(client, table, id),
        true => stage_cas::current_stage(client, table, id),
    }
}

/// Records a grant or a refusal in the history (a reclaim recorded its own takeover).
fn record_grant(client: &SpiClient<'_>, request: &Request<'_>, decided: &Grant) {
    let event = match decided.outcome {
        "acquired" => "acquired",
        "held" | "busy" | "superseded" | "retry" | "not_found" => "refused",
        _ => return,
    };
    let holder = decided.holder.as_ref();
    events::record(
        client,
        Event {
            event,
            outcome: decided.outcome,
            work_item: &request.item.key,
            task_table: Some(request.item.table),
            actor: Some(request.owner),
            old_owner: holder.map(|h| h.owner.as_str()),
            old_token: holder.map(|h| h.token),
            old_boot_id: holder.and_then(|h| h.boot_id.as_deref()),
            new_owner: decided.acquired.then_some(request.owner),
            new_token: decided.token,
            ..Default::default()
        },
    );
}

fn acquire(client: &SpiClient<'_>, request: &Request<'_>, role: &str) -> Grant {
    // One statement: the gate, the current holder, and the grant when the item is free. The gate: the
    // caller's own boot must not be superseded (a zombie gets nothing), and no other transaction may be
    // acquiring this item right now (a transaction-level advisory lock, never waited for). A boot another
    // role registered is neither locked nor used: it is that role's incarnation, not ours (boots from
    // before 0.4.0 name no role). The holder is read without locking: a visible row is the holder as of
    // now, even if its release is in flight. The holder's liveness is asked only when there is a holder:
    // boot_liveness is an SQL function, planned on every call.
    //
    // Two statements, so that only a grant locks: the look reads the state without locking, and a refusal
    // answers from it, writing nothing (no row lock, no transaction id, no commit record). Only an item
    // that looked free is asked again by the grant, which share-locks the caller's boot row, so that a
    // concurrent recover, which supersedes it, waits for us and then sees our lease. (One statement with
    // a conditional lock would do, but Citus cannot plan one: scripts/citus-test.sh.) The grant reads
    // everything again: what changed since the look decides. It draws its token only when it inserts; a
    // lease committed after its snapshot is caught by ON CONFLICT (no row: someone else is there).
    if moved(client) {
        refuse_moved();
    }
    let args = [
        request.item.key.as_str().into(),
        request.boot_id.as_str().into(),
        ITEM_LOCK_CLASS.into(),
        role.into(),
        request.owner.into(),
        request.owner_pid.into(),
        request.scope.into(),
        TableArg(request.item.table).into(),
    ];
    let look = plans::run(
        client,
        "WITH state AS (
             SELECT EXISTS (SELECT FROM orch_lease.boot b
                             WHERE b.boot_id = $2 AND b.registered_by <> $4) AS foreign_boot,
                    (SELECT b.superseded_at IS NOT NULL FROM orch_lease.boot b
                      WHERE b.boot_id = $2 AND (b.registered_by IS NULL OR b.registered_by = $4))
                        AS superseded,
                    pg_catalog.pg_try_advisory_xact_lock($3,
                        pg_catalog.hashtext($8::pg_catalog.oid::pg_catalog.text || ':' || $1)) AS gate,
                    l.token, l.owner, l.owner_pid, l.owner_boot_id, l.acquired_at, l.holder_role,
                    CASE WHEN l.work_item IS NOT NULL
                         THEN orch_lease.boot_liveness(l.owner_boot_id) = 'stale' END AS dead
               FROM (VALUES (true)) AS one_row
               LEFT JOIN orch_lease.transition_lease l ON l.task_table = $8 AND l.work_item = $1)
         SELECT state.*, NULL::pg_catalog.int8 AS granted FROM state",
        &args,
    )
    .first();
    let looked_free = !column::<bool>(&look, "foreign_boot")
        && !nullable::<bool>(&look, "superseded").unwrap_or(false)
        && nullable::<bool>(&look, "gate").unwrap_or(false)
        && nullable::<i64>(&look, "token").is_none();
    let current = if looked_free {
        plans::run(
            client,
            "WITH state AS (
             SELECT EXISTS (SELECT FROM orch_lease.boot b
                             WHERE b.boot_id = $2 AND b.registered_by <> $4) AS foreign_boot,
                    (SELECT b.superseded_at IS NOT NULL FROM orch_lease.boot b
                      WHERE b.boot_id = $2 AND (b.registered_by IS NULL OR b.registered_by = $4)
                        FOR SHARE NOWAIT)
                        AS superseded,
                    pg_catalog.pg_try_advisory_xact_lock($3,
                        pg_catalog.hashtext($8::pg_catalog.oid::pg_catalog.text || ':' || $1)) AS gate,
                    l.token, l.owner, l.owner_pid, l.owner_boot_id, l.acquired_at, l.holder_role,
                    CASE WHEN l.work_item IS NOT NULL
                         THEN orch_lease.boot_liveness(l.owner_boot_id) = 'stale' END AS dead
               FROM (VALUES (true)) AS one_row
               LEFT JOIN orch_lease.transition_lease l ON l.task_table = $8 AND l.work_item = $1),
         granted AS (
             INSERT INTO orch_lease.transition_lease
                    (work_item, token, owner, owner_pid, owner_boot_id, scope, holder_role, task_table)
             SELECT $1, nextval('orch_lease.token_seq'), $5, $6, $2, $7, $4, $8 FROM state
              WHERE NOT state.foreign_boot AND state.superseded IS NOT TRUE
                AND state.gate AND state.token IS NULL
             ON CONFLICT (task_table, work_item) DO NOTHING
             RETURNING token)
         SELECT state.*, (SELECT token FROM granted) AS granted FROM state",
            &args,
        )
        .first()
    } else {
        look
    };
    if column::<bool>(&current, "foreign_boot") {
        recovery::refuse_foreign_boot(client, &request.boot_id, role);
    }
    if nullable::<bool>(&current, "superseded").unwrap_or(false) {
        return Grant::new(false, "superseded");
    }
    if !nullable::<bool>(&current, "gate").unwrap_or(false) {
        return Grant::new(false, "busy");
    }
    let Some(token) = nullable::<i64>(&current, "token") else {
        return match nullable::<i64>(&current, "granted") {
            Some(token) => Grant {
                token: Some(token),
                ..Grant::new(true, "acquired")
            },
            // Free as of this statement's snapshot, but a lease was committed since.
            None => Grant::new(false, "busy"),
        };
    };
    let holder = Holder {
        token,
        owner: column(&current, "owner"),
        pid: column(&current, "owner_pid"),
        boot_id: Some(column(&current, "owner_boot_id")),
        since: column(&current, "acquired_at"),
    };
    // Dead: its boot was superseded, or it was a session-bound lease and that session is gone. A dead
    // holder's boot id is no use to anyone: a superseded boot or a session cannot be registered again.
    if !nullable::<bool>(&current, "dead").unwrap_or(false) {
        still_there(client, &request.item, token);
        let theirs = nullable::<String>(&current, "holder_role").as_deref() != Some(role);
        return Grant {
            holder: Some(Holder {
                boot_id: holder.boot_id.filter(|_| !theirs),
                ..holder
            }),
            ..Grant::new(false, "held")
        };
    }
    reclaim(client, request, role, holder)
}

thread_local! {
    /// `generation_mark`, as the last check read it.
    static MARK: Cell<pg_sys::Oid> = const { Cell::new(pg_sys::InvalidOid) };
    /// Whether a check found this database's own generation only, and no write of `generation_mark` (its
    /// trigger) nor an invalidation of every relation has come since.
    static NOT_MOVED: Cell<bool> = const { Cell::new(false) };
    /// Counts invalidations: a check that one overtook is used once, not kept.
    static MARK_INVALIDATIONS: Cell<u64> = const { Cell::new(0) };
}

/// A relation cache invalidation: of `generation_mark` (or any, before the first check read it), or of
/// every relation (InvalidOid).
pub fn mark_invalidated(relid: pg_sys::Oid) {
    let mark = MARK.get();
    if relid == pg_sys::InvalidOid || mark == pg_sys::InvalidOid || relid == mark {
        NOT_MOVED.set(false);
        MARK_INVALIDATIONS.set(MARK_INVALIDATIONS.get() + 1);
    }
}

/// Whether this database's leases came from another server (a logical-replication move, #29 item 3).
/// Read by a statement of its own, on local tables only (Citus cannot plan a local table beside a
/// distributed one), and kept for the backend while it says "not moved": the marks change only by a
/// write of `generation_mark`, whose trigger (enabled ALWAYS, so a subscription's apply and initial copy
/// fire it too) invalidates the table's cache entry in every backend at commit. Only a fresh snapshot's
/// answer is kept (READ COMMITTED): a transaction snapshot may be older than a move already committed.
fn moved(client: &SpiClient<'_>) -> bool {
    // SAFETY: what every lock acquisition does; one shared flag's read when nothing has arrived.
    unsafe { pg_sys::AcceptInvalidationMessages() };
    if NOT_MOVED.get() {
        return false;
    }
    let before = MARK_INVALIDATIONS.get();
    let row = plans::run(
        client,
        "SELECT EXISTS (SELECT FROM orch_lease.generation_mark m
                         WHERE m.generation <> (SELECT g.last_value FROM orch_lease.generation g)) AS moved,
                'orch_lease.generation_mark'::pg_catalog.regclass::pg_catalog.oid AS mark",
        &[],
    )
    .first();
    let moved = column::<bool>(&row, "moved");
    if !moved && !races::one_snapshot() && MARK_INVALIDATIONS.get() == before {
        MARK.set(column(&row, "mark"));
        NOT_MOVED.set(true);
    }
    moved
}

/// No grant on moved data until an admin adopts it.
fn refuse_moved() -> ! {
    errors::raise_hinted(
        PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        "orch_lease: this database's leases were copied from another server, whose tokens it does not know"
            .to_string(),
        "Logical replication carries no sequences, so tokens could go backwards here. Once the move is \
         over, an orch_lease_admin runs SELECT orch_lease.adopt_moved_data(<the old server's \
         token_seq last_value>); see docs/ha.md.",
        None,
    );
}

/// With a transaction snapshot (REPEATABLE READ, SERIALIZABLE), the holder we read may have been
/// released since: a lease gone after the snapshot is a serialization failure (`retry`) and one being
/// ended right now is `busy`, never a stale `held`. At READ COMMITTED the statement's snapshot is fresh,
/// and a holder whose release is in flight is held.
fn still_there(client: &SpiClient<'_>, item: &Item, token: i64) {
    if let Err(lost) = snapshot_current(client, item, Some(token)) {
        lost.rethrow();
    }
}

/// Is the transaction snapshot's view of the lease on `item` still the current one? Always at READ
/// COMMITTED, whose statements read fresh. With a transaction snapshot, a look rolled back at once (a
/// refused or reading caller must not delay anyone): the lease the snapshot shows with `token` is
/// key-share locked without waiting, and a row changed since is a serialization failure, one being
/// ended right now a lock failure; when the snapshot shows none, inserting the item's (table, key)
/// meets a lease granted since as a serialization failure (one being granted right now is waited for
/// within the bound). A call must never answer "gone" from a snapshot older than the lease (#29 item
/// 13). Only the item's own lease counts: the same key in another table is another work item (#27).
fn snapshot_current(
    client: &SpiClient<'_>,
    item: &Item,
    token: Option<i64>,
) -> Result<(), Box<CaughtError>> {
    if !races::one_snapshot() {
        return Ok(());
    }
    let (key, table) = (item.key.as_str(), TableArg(item.table));
    races::probe(|| match token {
        Some(token) => {
            plans::run(
                client,
                "SELECT FROM orch_lease.transition_lease
                  WHERE task_table = $3 AND work_item = $1 AND token = $2 FOR KEY SHARE NOWAIT",
                &[key.into(), token.into(), table.into()],
            );
        }
        None => races::bounded_lock_wait(|| {
            plans::run(
                client,
                "INSERT INTO orch_lease.transition_lease
                        (work_item, token, owner, owner_pid, owner_boot_id, task_table)
                 VALUES ($1, 0, '', 0, '', $2) ON CONFLICT (task_table, work_item) DO NOTHING",
                &[key.into(), table.into()],
            );
        }),
    })
}

/// Raises the serialization failure of a call whose transaction snapshot cannot see the lease on `key`
/// as it is now: answering "not held" from it could leak a lease granted since.
fn stale_snapshot(key: &str) -> ! {
    errors::raise_hinted(
        PgSqlErrorCode::ERRCODE_T_R_SERIALIZATION_FAILURE,
        format!("orch_lease: the lease on \"{key}\" changed after this transaction's snapshot"),
        "REPEATABLE READ and SERIALIZABLE read as of the transaction's first statement: run the \
         transaction again, or make this call at READ COMMITTED.",
        None,
    )
}

/// Takes over the lease of a holder whose boot was superseded: new owner, new token, logged and
/// announced. NOWAIT: if the dead holder's lease is being released or committed right now, we are busy.
fn reclaim(client: &SpiClient<'_>, request: &Request<'_>, role: &str, dead: Holder) -> Grant {
    // The new token and time are drawn first: Citus (docs/scale-out.md) runs no volatile function inside
    // an UPDATE of a distributed table. A token drawn for a takeover that then finds the lease gone is
    // a gap, which fencing does not mind.
    let fresh = plans::run(
        client,
        "SELECT nextval('orch_lease.token_seq') AS token, clock_timestamp() AS now",
        &[],
    )
    .first();
    let (token, now): (i64, TimestampWithTimeZone) =
        (column(&fresh, "token"), column(&fresh, "now"));
    let taken = plans::run(
        client,
        "WITH locked AS (
             SELECT work_item FROM orch_lease.transition_lease
              WHERE task_table = $10 AND work_item = $1 AND token = $6 FOR UPDATE NOWAIT)
         UPDATE orch_lease.transition_lease l
            SET token = $8, owner = $2, owner_pid = $3,
                owner_boot_id = $4, scope = $5, acquired_at = $9, holder_role = $7
           FROM locked WHERE l.task_table = $10 AND l.work_item = locked.work_item
         RETURNING l.token",
        &[
            request.item.key.as_str().into(),
            request.owner.into(),
            request.owner_pid.into(),
            request.boot_id.as_str().into(),
            request.scope.into(),
            dead.token.into(),
            role.into(),
            token.into(),
            now.into(),
            TableArg(request.item.table).into(),
        ],
    );
    // No row: the dead holder's lease was released or taken over since we read it.
    if taken.is_empty() {
        return Grant::new(false, "busy");
    }
    let token: i64 = column(&taken.first(), "token");
    events::record(
        client,
        Event {
            event: "reclaimed",
            outcome: "reclaimed",
            work_item: &request.item.key,
            task_table: Some(request.item.table),
            actor: Some(request.owner),
            old_owner: Some(&dead.owner),
            old_token: Some(dead.token),
            old_boot_id: dead.boot_id.as_deref(),
            new_owner: Some(request.owner),
            new_token: Some(token),
            reason: Some("holder is dead (boot superseded or session gone)"),
            ..Default::default()
        },
    );
    Grant {
        token: Some(token),
        holder: Some(dead),
        ..Grant::new(true, "reclaimed")
    }
}

/// Is the lease on `work_item` still held with `token`, by the caller's role? The checkpoint of a long
/// effect: false means the lease was taken away (reclaimed, reaped, forced) and the effect should stop.
/// Never an error on a stale, NULL or foreign token: only "yours, still" is true.
#[pg_extern(
    stable,
    parallel_unsafe,
    requires = ["lease_table"],
    sql = r#"
CREATE FUNCTION orch_lease.transition_lease_held(
    work_item text,
    token bigint,
    task_table regclass DEFAULT NULL
) RETURNS boolean STABLE PARALLEL UNSAFE LANGUAGE c
AS 'MODULE_PATHNAME', 'transition_lease_held_wrapper';
"#
)]
fn transition_lease_held(
    work_item: Option<&str>,
    token: Option<i64>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> bool {
    let task_table = task_table::argument(fcinfo, 2);
    let work_item = errors::required("work_item", work_item);
    let item = task_table::item("work_item", work_item, task_table);
    let Some(token) = token else { return false };
    let role = owner::caller_name();
    owner::as_owner(|| {
        Spi::connect(|client| {
            let seen = !plans::run(
                client,
                "SELECT FROM orch_lease.transition_lease
                  WHERE task_table = $4 AND work_item = $1 AND token = $2
                    AND (holder_role IS NULL OR holder_role = $3)",
                &[
                    item.key.as_str().into(),
                    token.into(),
                    role.as_str().into(),
                    TableArg(item.table).into(),
                ],
            )
            .is_empty();
            // A lease the snapshot shows may have ended since (false; being ended right now is still
            // held, as at READ COMMITTED); one it does not show may have been granted since (#29 item 13).
            let Err(error) = snapshot_current(client, &item, seen.then_some(token)) else {
                return seen;
            };
            match (seen, races::lost_of(&error)) {
                (_, None) => error.rethrow(),
                (false, Some(_)) => stale_snapshot(&item.key),
                (true, Some(lost)) => lost == Lost::Locked,
            }
        })
    })
}

/// Releases the lease on `work_item` if, and only if, it is still held with `token`. A stale or NULL
/// token (what a disabled or out-of-scope grant hands out) is a `false`, never an error; another role's
/// lease is an error (42501): a token is its holder's capability.
#[pg_extern(
    volatile,
    parallel_unsafe,
    requires = ["lease_table", "events"],
    sql = r#"
CREATE FUNCTION orch_lease.transition_lease_release(
    work_item text,
    token bigint,
    task_table regclass DEFAULT NULL
) RETURNS boolean VOLATILE PARALLEL UNSAFE LANGUAGE c
AS 'MODULE_PATHNAME', 'transition_lease_release_wrapper';
"#
)]
fn transition_lease_release(
    work_item: Option<&str>,
    token: Option<i64>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> bool {
    let task_table = task_table::argument(fcinfo, 2);
    let work_item = errors::required("work_item", work_item);
    let item = task_table::item("work_item", work_item, task_table);
    let Some(token) = token else { return false };
    let role = owner::caller_name();
    end_lease(
        "DELETE FROM orch_lease.transition_lease WHERE task_table = $3 AND work_item = $1 AND token = $2
         RETURNING owner, token, owner_boot_id, holder_role",
        &[item.key.as_str().into(), token.into(), TableArg(item.table).into()],
        (&item, "released", None),
        Some(&role),
    )
}

/// The manual release for the people on call. With `expected_token` it frees only that lease, so it can
/// never free one that was re-acquired meanwhile. Logged as a `forced` event and announced.
#[pg_extern(
    volatile,
    parallel_unsafe,
    requires = ["lease_table", "events"],
    sql = r#"
CREATE FUNCTION orch_lease.transition_lease_force_release(
    work_item text,
    expected_token bigint DEFAULT NULL,
    reason text DEFAULT 'manual',
    task_table regclass DEFAULT NULL
) RETURNS boolean VOLATILE PARALLEL UNSAFE LANGUAGE c
AS 'MODULE_PATHNAME', 'transition_lease_force_release_wrapper';
"#
)]
fn transition_lease_force_release(
    work_item: Option<&str>,
    expected_token: default!(Option<i64>, "NULL"),
    reason: default!(Option<&str>, "'manual'"),
    fcinfo: pg_sys::FunctionCallInfo,
) -> bool {
    let task_table = task_table::argument(fcinfo, 3);
    let work_item = errors::required("work_item", work_item);
    let reason = errors::required("reason", reason);
    let item = task_table::held_item("work_item", work_item, task_table);
    end_lease(
        "DELETE FROM orch_lease.transition_lease
          WHERE task_table = $3 AND work_item = $1 AND ($2::bigint IS NULL OR token = $2)
         RETURNING owner, token, owner_boot_id, holder_role",
        &[
            item.key.as_str().into(),
            expected_token.into(),
            TableArg(item.table).into(),
        ],
        (&item, "forced", Some(reason)),
        None,
    )
}

/// Ends the lease `delete` removes (it returns owner, token, owner_boot_id, holder_role) and records it
/// as `event`: `released` by its holder (whose role must be `holder`), or `forced` for `reason`. False
/// when there was no such lease, or when it is being used or ended by another transaction right now: a
/// transaction left idle or prepared on it is waited for within a bound only (#29 item 8).
fn end_lease(
    delete: &str,
    args: &[DatumWithOid],
    (item, event, reason): (&Item, &str, Option<&str>),
    holder: Option<&str>,
) -> bool {
    let ended = races::bounded_lock_wait(|| {
        owner::as_owner(|| {
            Spi::connect(|client| {
                races::lost_race_as(
                    || {
                        let Some(gone) = plans::run(client, delete, args).next() else {
                            // None as of this snapshot; one granted since must not leak (#29 item 13).
                            return match snapshot_current(client, item, None) {
                                Ok(()) => Ok(false),
                                Err(error) if races::lost_of(&error).is_some() => Err(()),
                                Err(error) => error.rethrow(),
                            };
                        };
                        if let Some(role) = holder {
                            owns(&item.key, &gone, role);
                        }
                        let (owner, boot_id): (String, String) =
                            (column(&gone, "owner"), column(&gone, "owner_boot_id"));
                        events::record(
                            client,
                            Event {
                                event,
                                outcome: event,
                                work_item: &item.key,
                                task_table: Some(item.table),
                                actor: (event == "released").then_some(owner.as_str()),
                                old_owner: Some(&owner),
                                old_token: nullable(&gone, "token"),
                                old_boot_id: Some(&boot_id),
                                reason,
                                ..Default::default()
                            },
                        );
                        Ok(true)
                    },
                    |_| Ok(false),
                )
            })
        })
    });
    ended.unwrap_or_else(|_| stale_snapshot(&item.key))
}

/// Raises 42501 unless the lease in `row` (with a `holder_role` column) is held by `role`. Leases from
/// before 0.4.0 name no role: whoever has their token may end them.
fn owns(key: &str, row: &impl rows::Row, role: &str) {
    if let Some(holder) = nullable::<String>(row, "holder_role") {
        if holder != role {
            // The holder's role is not named: an actor does not see other roles' leases.
            errors::raise_hinted(
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                format!("orch_lease: the lease on \"{key}\" is held by another role"),
                "Only the role that acquired a lease may release it or commit under it; \
                 an operator uses orch_lease.transition_lease_force_release.",
                Some(format!("Called by role \"{role}\".")),
            );
        }
    }
}

/// What a CAS does with the lease it runs under.
#[derive(Clone, Copy)]
pub enum Claim {
    /// Keep it, share-locked until the caller's transaction ends, so no one takes it meanwhile.
    Keep,
    /// End it: the attempt is over, whatever the CAS outcome.
    End,
}

/// What a CAS found of the lease it claimed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Claimed {
    /// Held with this token by the caller's role (kept or ended as asked).
    Held,
    /// Taken away from its holder: reclaimed, reaped, forced or recovered. A lost race: `lease_lost`.
    Taken,
    /// No lease on this item was ever taken away with this token: one never granted for it, or one its
    /// holder already ended (released, committed). A programming mistake: `not_held`, never paged.
    NotHeld,
}

/// Does the caller's role hold the lease on `item` with `token`? Keeps (share-locks) or ends it as a
/// side effect. Another role's lease with this token is an error (42501). When it is not held, the
/// takeovers in the history (always recorded) tell a lease taken away from one never held or already
/// ended. Run as the extension's owner.
pub fn claim(client: &SpiClient<'_>, item: &Item, token: i64, how: Claim, role: &str) -> Claimed {
    let statement = match how {
        Claim::Keep => {
            "SELECT holder_role FROM orch_lease.transition_lease
              WHERE task_table = $3 AND work_item = $1 AND token = $2 FOR SHARE"
        }
        Claim::End => {
            "DELETE FROM orch_lease.transition_lease
              WHERE task_table = $3 AND work_item = $1 AND token = $2
             RETURNING holder_role"
        }
    };
    let args = [
        item.key.as_str().into(),
        token.into(),
        TableArg(item.table).into(),
    ];
    if let Some(lease) = plans::run(client, statement, &args).next() {
        owns(&item.key, &lease, role);
        return Claimed::Held;
    }
    // Not as of this snapshot; a lease granted since is a serialization failure (#29 item 13).
    if let Err(error) = snapshot_current(client, item, None) {
        error.rethrow();
    }
    // Tokens come from one sequence: (work item, token) names one lease whatever its table. The
    // takeovers' own index (lease_event_takeover) answers it: the predicate is the index's.
    let taken = plans::run(
        client,
        "SELECT FROM orch_lease.lease_event
          WHERE work_item = $1 AND old_token = $2 AND event IN ('reclaimed', 'reaped', 'forced')
          LIMIT 1",
        &[item.key.as_str().into(), token.into()],
    );
    match taken.is_empty() {
        true => Claimed::NotHeld,
        false => Claimed::Taken,
    }
}

/// A lease that recovery ended, as an `orch_lease.transition_lease` row.
pub struct Ended {
    pub work_item: String,
    pub token: i64,
    pub owner: String,
    pub owner_pid: i32,
    pub owner_boot_id: String,
    pub scope: Option<String>,
    pub acquired_at: TimestampWithTimeZone,
    pub holder_role: Option<String>,
    pub task_table: pg_sys::Oid,
}

impl Ended {
    fn of(row: &SpiHeapTupleData<'_>) -> Self {
        Ended {
            work_item: column(row, "work_item"),
            token: column(row, "token"),
            owner: column(row, "owner"),
            owner_pid: column(row, "owner_pid"),
            owner_boot_id: column(row, "owner_boot_id"),
            scope: nullable(row, "scope"),
            acquired_at: column(row, "acquired_at"),
            holder_role: nullable(row, "holder_role"),
            task_table: column(row, "task_table"),
        }
    }

    /// Its history event: a lease taken away from its holder.
    fn event<'a>(&'a self, event: &'a str, outcome: &'a str, reason: &'a str) -> Event<'a> {
        Event {
            event,
            outcome,
            work_item: &self.work_item,
            task_table: Some(self.task_table),
            old_owner: Some(&self.owner),
            old_token: Some(self.token),
            old_boot_id: Some(&self.owner_boot_id),
            reason: Some(reason),
            ..Default::default()
        }
    }

    pub fn into_row(self) -> PgHeapTuple<'static, AllocatedByRust> {
        rows::composite(
            "orch_lease.transition_lease",
            vec![
                self.work_item.into_datum(),
                self.token.into_datum(),
                self.owner.into_datum(),
                self.owner_pid.into_datum(),
                self.owner_boot_id.into_datum(),
                self.scope.into_datum(),
                self.acquired_at.into_datum(),
                self.holder_role.into_datum(),
                // An oid is a regclass's datum.
                Some(pg_sys::Datum::from(self.task_table)),
            ],
        )
    }
}

/// Ends every lease of the superseded boots of `instance` (recover, by boot `by_boot`): each is a
/// `reclaimed` event with outcome `recovered`, announced. Run as the extension's owner.
pub fn end_superseded(client: &SpiClient<'_>, instance: &str, by_boot: &str) -> Vec<Ended> {
    let ended: Vec<Ended> = plans::run(
        client,
        "DELETE FROM orch_lease.transition_lease l
          USING orch_lease.boot b
          WHERE b.boot_id = l.owner_boot_id AND b.instance = $1 AND b.superseded_at IS NOT NULL
         RETURNING l.*",
        &[instance.into()],
    )
    .map(|row| Ended::of(&row))
    .collect();
    let reason = format!("recover by boot {by_boot}");
    let logged: Vec<Event> = ended
        .iter()
        .map(|lease| lease.event("reclaimed", "recovered", &reason))
        .collect();
    events::record_all(client, &logged);
    ended
}

/// A lease the reaper took, with its kind (`stale` or `ceiling`) and age.
pub type Reaped = (Ended, &'static str, f64);

/// The time now, read by a statement of its own, for a statement that must not call a volatile function
/// (Citus, docs/scale-out.md) nor use statement_timestamp(), which a procedure keeps at its CALL across
/// its COMMITs.
pub fn clock(client: &SpiClient<'_>) -> TimestampWithTimeZone {
    column(
        &plans::run(client, "SELECT clock_timestamp() AS now", &[]).first(),
        "now",
    )
}

/// The reaper's sweep: ends leases whose holder is dead (`stale`, a `reclaimed` event) and leases held
/// longer than `ceiling_s` whatever their liveness (`ceiling`, a `reaped` event). A lease in use by a
/// running transaction right now is skipped until the next run. Run as the extension's owner.
///
/// The candidates are read first, then each is locked and ended by its own key and token: a row lock
/// names one work item, which Citus (docs/scale-out.md) runs on the shard holding it; it refuses a lock
/// over every shard. A candidate renewed or ended meanwhile no longer matches and is left alone.
pub fn reap(client: &SpiClient<'_>, ceiling_s: i32) -> Vec<Reaped> {
    // Ages are measured from the sweep's start, read first and passed in (`clock`).
    let now = clock(client);
    let doomed = |now: &str| {
        format!(
            "(orch_lease.boot_liveness(l.owner_boot_id) = 'stale'
              OR l.acquired_at < {now} - make_interval(secs => $1))"
        )
    };
    let candidates: Vec<(Item, i64, f64)> = plans::run(
        client,
        &format!(
            "SELECT l.task_table::oid AS task_table, l.work_item, l.token,
                    extract(epoch FROM $2 - l.acquired_at)::float8 AS age_s
               FROM orch_lease.transition_lease l WHERE {}",
            doomed("$2")
        ),
        &[ceiling_s.into(), now.into()],
    )
    .map(|row| {
        let age_s = column(&row, "age_s");
        let item = Item::leased(column(&row, "task_table"), column(&row, "work_item"));
        (item, column(&row, "token"), age_s)
    })
    .collect();
    // The age comes from the candidate's read: a lease keeps its acquired_at as long as its token.
    let end_one = format!(
        "WITH doomed AS (
             SELECT l.work_item, l.token,
                    orch_lease.boot_liveness(l.owner_boot_id) IS NOT DISTINCT FROM 'stale' AS dead
               FROM orch_lease.transition_lease l
              WHERE l.task_table = $5 AND l.work_item = $2 AND l.token = $3 AND {}
                FOR UPDATE SKIP LOCKED)
         DELETE FROM orch_lease.transition_lease l USING doomed d
          WHERE l.task_table = $5 AND l.work_item = $2 AND l.work_item = d.work_item
            AND l.token = d.token
         RETURNING l.*, d.dead",
        doomed("$4")
    );
    let reaped: Vec<Reaped> = candidates
        .iter()
        .filter_map(|(item, token, age_s)| {
            let row = plans::run(
                client,
                &end_one,
                &[
                    ceiling_s.into(),
                    item.key.as_str().into(),
                    (*token).into(),
                    now.into(),
                    TableArg(item.table).into(),
                ],
            )
            .next()?;
            let kind = match column::<bool>(&row, "dead") {
                true => "stale",
                false => "ceiling",
            };
            Some((Ended::of(&row), kind, *age_s))
        })
        .collect();
    let reasons: Vec<String> = reaped
        .iter()
        .map(|(_, kind, age_s)| match *kind {
            "stale" => "reap: holder is dead".to_string(),
            _ => format!(
                "reap: held {} s, over the ceiling of {ceiling_s} s",
                age_s.round()
            ),
        })
        .collect();
    let logged: Vec<Event> = reaped
        .iter()
        .zip(&reasons)
        .map(|((lease, kind, _), reason)| match *kind {
            "stale" => lease.event("reclaimed", "stale", reason),
            _ => lease.event("reaped", "ceiling", reason),
        })
        .collect();
    events::record_all(client, &logged);
    reaped
}

extension_sql!(
    r#"
-- A write of the marks, however made (a subscription's apply or initial copy, adopt_moved_data, a
-- superuser), reaches every session's next acquire: it invalidates the cached logical-move check (`moved`).
CREATE TRIGGER generation_mark_changed AFTER INSERT OR UPDATE OR DELETE ON orch_lease.generation_mark
    FOR EACH ROW EXECUTE FUNCTION orch_lease.kill_switch_changed();
CREATE TRIGGER generation_mark_truncated AFTER TRUNCATE ON orch_lease.generation_mark
    FOR EACH STATEMENT EXECUTE FUNCTION orch_lease.kill_switch_changed();
ALTER TABLE orch_lease.generation_mark ENABLE ALWAYS TRIGGER generation_mark_changed;
ALTER TABLE orch_lease.generation_mark ENABLE ALWAYS TRIGGER generation_mark_truncated;
"#,
    name = "generation_mark_trigger",
    requires = ["lease_table", "kill_switch_comments"]
);

extension_sql!(
    r#"
COMMENT ON FUNCTION orch_lease.transition_lease_acquire(text, text, integer, text, text, regclass) IS
    'Asks for the transition lease on a work item; never waits, never raises on contention: acquired, held, reclaimed, busy, retry, superseded, disabled or out_of_scope.';
COMMENT ON FUNCTION orch_lease.transition_lease_acquire_session(text, text, text, regclass) IS
    'Asks for a lease that lives as long as the calling database session (not behind a transaction pooler).';
COMMENT ON FUNCTION orch_lease.transition_lease_release(text, bigint, regclass) IS
    'Ends the lease on a work item if it is still held with this token; only the role that acquired it may (42501 otherwise).';
COMMENT ON FUNCTION orch_lease.transition_lease_force_release(text, bigint, text, regclass) IS
    'For the people on call: ends the lease on a work item (only that token, if given), recorded as forced and announced.';
COMMENT ON FUNCTION orch_lease.transition_lease_held(text, bigint, regclass) IS
    'Whether the caller''s role still holds the lease on a work item with this token: the checkpoint of a long effect.';
"#,
    name = "lease_comments",
    requires = [
        transition_lease_acquire,
        transition_lease_acquire_session,
        transition_lease_release,
        transition_lease_force_release,
        transition_lease_held
    ]
);

extension_sql!(
    r#"
-- An integer work item (acquire(131, ...)) found no function (42883, a generic "does not exist"): these
-- overloads take it only to say what to do. They key nothing: one spelling of an id is its text.
CREATE FUNCTION orch_lease.transition_lease_acquire(work_item bigint, owner text, owner_pid integer,
                                                    owner_boot_id text, scope text DEFAULT NULL,
                                                    task_table regclass DEFAULT NULL)
RETURNS orch_lease.lease_grant
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RAISE EXCEPTION 'orch_lease: work_item must be text, not a number'
          USING ERRCODE = '42804',
                DETAIL = format('Called with work_item %s.', work_item),
                HINT = format('Pass the id as text: %L, or %s::text.', work_item, work_item);
END
$$;
COMMENT ON FUNCTION orch_lease.transition_lease_acquire(bigint, text, integer, text, text, regclass) IS
    'Refuses an integer work item (42804) with a hint: pass the id as text.';
CREATE FUNCTION orch_lease.transition_lease_acquire_session(work_item bigint, owner text,
                                                            scope text DEFAULT NULL,
                                                            task_table regclass DEFAULT NULL)
RETURNS orch_lease.lease_grant
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM orch_lease.transition_lease_acquire(work_item, owner, 1, 'session', scope, task_table)
$$;
COMMENT ON FUNCTION orch_lease.transition_lease_acquire_session(bigint, text, text, regclass) IS
    'Refuses an integer work item (42804) with a hint: pass the id as text.';
"#,
    name = "integer_work_item",
    requires = ["lease_table", "lease_comments"]
);
