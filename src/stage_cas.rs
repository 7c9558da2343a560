//! Expected-stage compare-and-swap on the application's own task table: atomicity on the *write*.
//!
//! The stage changes only if it still equals the expected one; a lost race changes nothing and says so
//! (`retry`). With a lease token the check and the write run under the lease row's lock, so no reclaim or
//! forced release can slip between them. The task table is the application's: orch_lease adds no column
//! to it, and writes it with the caller's own privileges, row-level security and triggers.
use crate::events::{self, Event};
use crate::lease::{self, Claim, Claimed};
use crate::races::Lost;
use crate::task_table::{self, Item, TableArg, TaskTable, Typed};
use crate::{config, errors, owner, plans, races, rows};
use pgrx::prelude::*;
use pgrx::spi::{SpiClient, SpiTupleTable};
use pgrx::{composite_type, AllocatedByRust, PgSqlErrorCode};
use std::cell::RefCell;

extension_sql!(
    r#"
CREATE TYPE orch_lease.cas_result AS (
    applied       boolean,
    outcome       text,
    current_stage text
);
"#,
    name = "cas_result"
);

/// The stage write the CAS is making right now: the only one the bypass guard lets through.
#[derive(Clone, PartialEq, Eq)]
pub struct CasWrite {
    pub relid: pg_sys::Oid,
    /// The task's key (its id, by the id type's output function).
    pub key: String,
    /// The new stage, by the stage type's output function.
    pub stage: String,
}

thread_local! {
    static CAS_WRITING: RefCell<Option<CasWrite>> = const { RefCell::new(None) };
}

/// Runs the CAS's own stage write, marked as such; the mark before it is restored however it ends (a
/// task-table trigger may run a CAS of its own inside this one).
fn as_cas_write<R>(write: CasWrite, body: impl FnOnce() -> R) -> R {
    struct Restore(Option<CasWrite>);
    impl Drop for Restore {
        fn drop(&mut self) {
            CAS_WRITING.with(|mark| *mark.borrow_mut() = self.0.take());
        }
    }
    let _restore = Restore(CAS_WRITING.with(|mark| mark.borrow_mut().replace(write)));
    body()
}

/// Is this stage write (table, task key, new stage) the one the CAS is making?
pub fn is_cas_write(write: &CasWrite) -> bool {
    CAS_WRITING.with(|mark| mark.borrow().as_ref() == Some(write))
}

/// True while the stage CAS is writing, or when the kill-switch is off. Kept for the bypass guard of
/// releases before 0.4.0, which calls it until `ALTER EXTENSION orch_lease UPDATE` replaces it.
#[pg_extern(volatile, parallel_unsafe)]
fn stage_write_allowed() -> bool {
    !config::enabled() || CAS_WRITING.with(|mark| mark.borrow().is_some())
}

/// What a CAS decided, before it becomes an `orch_lease.cas_result` row.
struct Cas {
    applied: bool,
    outcome: &'static str,
    current_stage: Option<String>,
}

impl Cas {
    fn said(applied: bool, outcome: &'static str) -> Self {
        Cas {
            applied,
            outcome,
            current_stage: None,
        }
    }

    fn into_row(self) -> PgHeapTuple<'static, AllocatedByRust> {
        rows::composite(
            "orch_lease.cas_result",
            vec![
                self.applied.into_datum(),
                self.outcome.into_datum(),
                self.current_stage.into_datum(),
            ],
        )
    }
}

/// Sets the task's stage to `new_stage` if it is still `expected_stage`. With `lease_token`, only while
/// the caller's role holds the lease on the task with that token; the lease stays held.
#[pg_extern(
    volatile,
    parallel_unsafe,
    requires = ["task_table_registry", "lease_table", "cas_result"],
    sql = r#"
CREATE FUNCTION orch_lease.update_task_stage_cas(
    task_id text,
    expected_stage text,
    new_stage text,
    lease_token bigint DEFAULT NULL,
    task_table regclass DEFAULT NULL
) RETURNS orch_lease.cas_result VOLATILE PARALLEL UNSAFE LANGUAGE c
AS 'MODULE_PATHNAME', 'update_task_stage_cas_wrapper';
"#
)]
fn update_task_stage_cas(
    task_id: Option<&str>,
    expected_stage: Option<&str>,
    new_stage: Option<&str>,
    lease_token: default!(Option<i64>, "NULL"),
    fcinfo: pg_sys::FunctionCallInfo,
) -> composite_type!('static, "orch_lease.cas_result") {
    let task_table = task_table::argument(fcinfo, 4);
    let lease = lease_token.map(|token| (token, Claim::Keep));
    stage_cas(
        ("task_id", task_id),
        task_table,
        expected_stage,
        new_stage,
        lease,
    )
    .into_row()
}

/// The lease-guarded CAS and the end of that lease, in one atomic step. The lease ends whatever the
/// CAS outcome — the attempt is over — except `retry`, when the CAS could not run and the lease is kept.
/// A NULL token (a grant without a lease: disabled or out of scope) is refused while orch_lease is on:
/// a write without a lease check is asked for by name, `update_task_stage_cas`, never by a NULL read
/// from the wrong field. With the kill-switch off it is still the bare write (deprecated, see the SQL
/// reference).
#[pg_extern(
    volatile,
    parallel_unsafe,
    requires = ["task_table_registry", "lease_table", "cas_result"],
    sql = r#"
CREATE FUNCTION orch_lease.commit_stage_cas(
    work_item text,
    token bigint,
    expected_stage text,
    new_stage text,
    task_table regclass DEFAULT NULL
) RETURNS orch_lease.cas_result VOLATILE PARALLEL UNSAFE LANGUAGE c
AS 'MODULE_PATHNAME', 'commit_stage_cas_wrapper';
"#
)]
fn commit_stage_cas(
    work_item: Option<&str>,
    token: Option<i64>,
    expected_stage: Option<&str>,
    new_stage: Option<&str>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> composite_type!('static, "orch_lease.cas_result") {
    if token.is_none() && config::enabled() {
        errors::raise_hinted(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "orch_lease: token must not be NULL: commit_stage_cas commits under a lease".into(),
            "A grant without a lease (disabled, out_of_scope) has no token: write its stage with \
             orch_lease.update_task_stage_cas(task_id, expected_stage, new_stage), which checks no lease.",
            Some("A NULL token no longer makes commit_stage_cas a plain CAS (since 0.5.0).".into()),
        );
    }
    let task_table = task_table::argument(fcinfo, 4);
    let lease = token.map(|token| (token, Claim::End));
    stage_cas(
        ("work_item", work_item),
        task_table,
        expected_stage,
        new_stage,
        lease,
    )
    .into_row()
}

/// The CAS's inputs, converted to the task table's types before anything is written.
struct Write {
    table: std::rc::Rc<TaskTable>,
    id: Typed,
    item: Item,
    expected: Typed,
    new: Typed,
    /// The stages as the stage type writes them.
    expected_text: String,
    new_text: String,
}

fn stage_cas(
    (id_argument, task_id): (&'static str, Option<&str>),
    task_table: Option<TableArg>,
    expected_stage: Option<&str>,
    new_stage: Option<&str>,
    lease: Option<(i64, Claim)>,
) -> Cas {
    let task_id = errors::required(id_argument, task_id);
    let expected_stage = errors::bounded_present("expected_stage", expected_stage);
    let new_stage = errors::bounded_present("new_stage", new_stage);
    // No privilege check of orch_lease's own: the write is the caller's, and PostgreSQL's own 42501
    // (or row-level security) reaches it whole.
    let table = task_table::task_table(task_table);
    // Convert every input before anything is written: bad input is an error with nothing changed.
    // The id exactly as keys read it (`IdType`), so the lease claimed is the key of the row written.
    let id = table.id.read(id_argument, task_id);
    let expected = task_table::typed("expected_stage", expected_stage, table.stage_type, -1);
    let new = task_table::typed("new_stage", new_stage, table.stage_type, -1);
    let write = Write {
        item: Item::leased(table.relid, task_table::output(id)),
        expected_text: task_table::output(expected),
        new_text: task_table::output(new),
        table,
        id,
        expected,
        new,
    };
    let role = owner::caller_name();

    Spi::connect(|client| {
        let claim = |(token, how): (i64, Claim)| {
            owner::as_owner(|| lease::claim(client, &write.item, token, how, &role))
        };
        if !config::enabled() {
            // The kill-switch makes the CAS a bare UPDATE; a commit still ends its lease. A row it may
            // not lock is still contention, an outcome: `retry`, nothing written, the lease kept.
            return races::lost_race_as(
                || {
                    let written = mark(&write, || {
                        plans::run(
                            client,
                            &write.table.unconditional,
                            &[id.arg(), write.new.arg()],
                        )
                    });
                    if let Some((token, Claim::End)) = lease {
                        claim((token, Claim::End));
                    }
                    match written.is_empty() {
                        false => Cas::said(true, "unconditional"),
                        true => Cas::said(false, "not_found"),
                    }
                },
                |_| Cas::said(false, "retry"),
            );
        }
        let cas = races::lost_race_as(
            || match lease.map(claim) {
                Some(Claimed::Taken) => Cas::said(false, "lease_lost"),
                Some(Claimed::NotHeld) => Cas::said(false, "not_held"),
                _ if !write.table.allows(&write.expected_text, &write.new_text) => {
                    Cas::said(false, "invalid_transition")
                }
                _ => compare_and_set(client, &write),
            },
            // The attempt was rolled back whole, the lease's claim with it: nothing changed.
            |_| Cas::said(false, "retry"),
        );
        owner::as_owner(|| {
            events::record(
                client,
                Event {
                    event: if cas.applied {
                        "cas_applied"
                    } else {
                        "cas_lost"
                    },
                    outcome: cas.outcome,
                    work_item: &write.item.key,
                    task_table: Some(write.item.table),
                    old_token: lease.map(|(token, _)| token),
                    stage_from: Some(&write.expected_text),
                    stage_to: Some(&write.new_text),
                    ..Default::default()
                },
            )
        });
        cas
    })
}

/// Runs the stage write marked as the CAS's own, for the bypass guard.
fn mark<R>(write: &Write, body: impl FnOnce() -> R) -> R {
    as_cas_write(
        CasWrite {
            relid: write.table.relid,
            key: write.item.key.clone(),
            stage: write.new_text.clone(),
        },
        body,
    )
}

fn compare_and_set(client: &SpiClient<'_>, write: &Write) -> Cas {
    let table = &write.table;
    let written = mark(write, || {
        plans::run(
            client,
            &table.compare_and_set,
            &[write.id.arg(), write.expected.arg(), write.new.arg()],
        )
    });
    if !written.is_empty() {
        return Cas::said(true, "applied");
    }
    // Why nothing was written is read as the write would have found the row (`current_stage`).
    let current = current_stage(client, table, write.id);
    match current {
        None => Cas::said(false, "not_found"),
        Some(current_stage) => Cas {
            applied: false,
            outcome: "stage_mismatch",
            current_stage,
        },
    }
}

/// The stage of task `id` (`Some(None)`: a row with a NULL stage; `None`: no row the caller may see),
/// read now with the caller's privileges.
pub fn read_stage(client: &SpiClient<'_>, table: &TaskTable, id: Typed) -> Option<Option<String>> {
    stage_of(table, plans::run(client, &table.read_stage, &[id.arg()]))
}

/// Has task `id` a row the caller may write? Read with the caller's privileges, and where its UPDATE
/// policies may hide rows its SELECT ones show, as a write would find it (`current_stage`, only there:
/// it takes a row lock to look): such a row is none, as for the CAS (red team G8). With a transaction
/// snapshot that shows none, a row created since is a lost race (`retry`), never a final answer (G10).
pub fn writable_row(client: &SpiClient<'_>, table: &TaskTable, id: Typed) -> Result<bool, Lost> {
    let found = match table.write_sees_less() {
        false => read_stage(client, table, id).is_some(),
        true => races::lost_race_as(|| Ok(current_stage(client, table, id).is_some()), Err)?,
    };
    // SAFETY: a plain global of the backend (the transaction's isolation level), read on its only thread.
    let snapshot = unsafe { pg_sys::XactIsoLevel } >= pg_sys::XACT_REPEATABLE_READ as i32;
    if !found && snapshot && table.has_row_now(id) {
        return Err(Lost::Conflict);
    }
    Ok(found)
}

/// The stage of task `id` as a write would find the row, read under a row lock: the caller's UPDATE
/// policies apply (a row it may read but not update is not found, never a mismatch that shows the
/// expected stage), and with a transaction snapshot a row changed since is a serialization failure
/// (`retry`), never a stale stage. The lock is only a look, rolled back at once (a share lock: a
/// key-share lock passes over an update of another column). A row another session is writing is read
/// plainly at READ COMMITTED, as before any lock; with a transaction snapshot that read could be stale,
/// so the lock's error is raised.
pub fn current_stage(
    client: &SpiClient<'_>,
    table: &TaskTable,
    id: Typed,
) -> Option<Option<String>> {
    let looked =
        races::probe(|| stage_of(table, plans::run(client, &table.look_stage, &[id.arg()])));
    match looked {
        Ok(current) => current,
        Err(error)
            if races::report_of(&error).sql_error_code()
                == PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE
                && !races::one_snapshot() =>
        {
            read_stage(client, table, id)
        }
        Err(error) => error.rethrow(),
    }
}

/// The stage in the first row of `rows`, if there is one.
fn stage_of(table: &TaskTable, rows: SpiTupleTable<'_>) -> Option<Option<String>> {
    let row = rows.first();
    (!row.is_empty()).then(|| {
        let stage = row.get_datum_by_ordinal(1).unwrap_or_else(|error| {
            errors::internal("cannot read the stage of", &table.qualified, error)
        });
        stage.map(|datum| task_table::datum_text(datum, table.stage_type))
    })
}

extension_sql!(
    r#"
COMMENT ON FUNCTION orch_lease.update_task_stage_cas(text, text, text, bigint, regclass) IS
    'Sets a task''s stage only if it still equals the expected one (and, with a token, while the caller''s role holds its lease): applied, stage_mismatch, not_found, lease_lost, not_held, invalid_transition or retry.';
COMMENT ON FUNCTION orch_lease.commit_stage_cas(text, bigint, text, text, regclass) IS
    'The lease-guarded stage CAS and the end of that lease in one step; on retry the lease is kept. The token is required while orch_lease is on (update_task_stage_cas writes without a lease).';
COMMENT ON FUNCTION orch_lease.stage_write_allowed() IS
    'True while the stage CAS is writing or the kill-switch is off; kept for the bypass guard of releases before 0.4.0.';
"#,
    name = "cas_comments",
    requires = [update_task_stage_cas, commit_stage_cas, stage_write_allowed]
);
