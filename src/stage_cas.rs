//! Expected-stage compare-and-swap on the application's own task table: atomicity on the *write*.
//!
//! The stage changes only if it still equals the expected one; a lost race changes nothing and says so.
//! With a lease token the check and the write run under the lease row's lock, so no reclaim or forced
//! release can slip between them. The task table is the application's: orch_lease adds no column to it.
use crate::{config, errors, events, guard, stage_rules};
use pgrx::datum::DatumWithOid;
use pgrx::pg_sys::{self, PgTryBuilder};
use pgrx::prelude::*;
use pgrx::spi::{quote_identifier, SpiClient};
use pgrx::{composite_type, AllocatedByRust, PgRelation, PgSqlErrorCode};
use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::ffi::{CStr, CString};
use std::rc::Rc;

extension_sql!(
    r#"
CREATE TABLE orch_lease.task_table (
    singleton     boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    relid         regclass NOT NULL,
    id_column     name NOT NULL,
    stage_column  name NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
COMMENT ON TABLE orch_lease.task_table IS
    'The application table whose stage the CAS writes (one per database).';
SELECT pg_catalog.pg_extension_config_dump('orch_lease.task_table', '');

CREATE TYPE orch_lease.cas_result AS (
    applied       boolean,
    outcome       text,
    current_stage text
);
"#,
    name = "task_table_registry"
);

/// Names the application's existing table whose stage the CAS writes. The stage column may be text,
/// varchar or an enum; the id column any type whose input accepts the task ids as text.
#[pg_extern(
    volatile,
    parallel_unsafe,
    requires = ["task_table_registry"],
    sql = r#"
CREATE FUNCTION orch_lease.register_task_table(
    task_table regclass, id_column name DEFAULT 'id', stage_column name DEFAULT 'stage'
) RETURNS void VOLATILE PARALLEL UNSAFE LANGUAGE c
AS 'MODULE_PATHNAME', 'register_task_table_wrapper';
"#
)]
fn register_task_table(
    task_table: Option<PgRelation>,
    id_column: Option<&CStr>,
    stage_column: Option<&CStr>,
) {
    let table = errors::present("task_table", task_table);
    let id_column = errors::present("id_column", id_column).to_string_lossy();
    let stage_column = errors::present("stage_column", stage_column).to_string_lossy();
    let qualified = format!("{}.{}", table.namespace(), table.name());
    if !(table.is_table() || table.is_partitioned_table()) {
        errors::raise(
            PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
            format!("orch_lease: \"{qualified}\" is not a table"),
        );
    }
    let column_type = |argument: &str, column: &str| -> pg_sys::Oid {
        Spi::get_one_with_args::<pg_sys::Oid>(
            "SELECT atttypid FROM pg_catalog.pg_attribute
              WHERE attrelid = $1 AND attname = $2::name AND attnum > 0 AND NOT attisdropped",
            &[table.oid().into(), column.into()],
        )
        .ok()
        .flatten()
        .unwrap_or_else(|| {
            errors::raise(
                PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
                format!(
                    "orch_lease: {argument}: column \"{column}\" of \"{qualified}\" does not exist"
                ),
            )
        })
    };
    column_type("id_column", &id_column);
    let stage_type = column_type("stage_column", &stage_column);
    let base = unsafe { pg_sys::getBaseType(stage_type) };
    let is_enum = unsafe { pg_sys::type_is_enum(base) };
    if !(is_enum || base == pg_sys::TEXTOID || base == pg_sys::VARCHAROID) {
        errors::raise(
            PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
            format!(
                "orch_lease: stage_column: column \"{stage_column}\" of \"{qualified}\" must be text, \
                 varchar or an enum"
            ),
        );
    }
    guard::as_owner(|| {
        Spi::run_with_args(
            "INSERT INTO orch_lease.task_table (relid, id_column, stage_column) VALUES ($1, $2::name, $3::name)
             ON CONFLICT (singleton) DO UPDATE
                SET relid = EXCLUDED.relid, id_column = EXCLUDED.id_column,
                    stage_column = EXCLUDED.stage_column, registered_at = clock_timestamp()",
            &[table.oid().into(), id_column.as_ref().into(), stage_column.as_ref().into()],
        )
        .unwrap();
        forget_everywhere("orch_lease.task_table");
    });
}

/// Makes every backend's cached task-table description stale from our commit on, by invalidating one
/// of the relations it is read from.
pub fn forget_everywhere(relation: &str) {
    let oid = Spi::get_one_with_args::<pg_sys::Oid>("SELECT $1::regclass::oid", &[relation.into()])
        .unwrap()
        .expect("an orch_lease relation");
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(oid) };
}

/// The registered task table, quoted and schema-qualified, with its id and stage column names.
pub fn registered_names() -> (String, String, String) {
    let table = task_table();
    (
        table.qualified.clone(),
        table.id_column.clone(),
        table.stage_column.clone(),
    )
}

/// Checks that `stage` is a value of the stage column's type (an enum label it has).
pub fn check_stage(argument: &'static str, stage: &str) {
    typed(argument, stage, task_table().stage_type);
}

/// The registered task table, with the statements that write it.
struct TaskTable {
    /// The relations this description is read from: an invalidation of any of them renews it.
    sources: [pg_sys::Oid; 3],
    /// The task table, schema-qualified and quoted, and its columns' plain names.
    qualified: String,
    id_column: String,
    stage_column: String,
    /// The allowed transitions (expected, new), when a stage graph is registered.
    graph: Option<HashSet<(String, String)>>,
    id_type: pg_sys::Oid,
    stage_type: pg_sys::Oid,
    /// `UPDATE … SET stage = $3 WHERE id = $1 AND stage = $2`
    compare_and_set: String,
    /// `SELECT stage::text … WHERE id = $1`
    read_stage: String,
    /// `UPDATE … SET stage = $2 WHERE id = $1`: the kill-switch-off write
    unconditional: String,
}

thread_local! {
    /// The task table as last described, with the invalidation generation it was described in.
    static TASK_TABLE: RefCell<Option<(u64, Rc<TaskTable>)>> = const { RefCell::new(None) };
    /// Bumped by every relcache invalidation that concerns the registry or the task table.
    static GENERATION: Cell<u64> = const { Cell::new(0) };
}

/// Registers the invalidation callback that keeps the cached task-table description honest: any DDL
/// on the task table (a renamed column, a dropped table) and every `register_task_table` invalidate it.
pub fn init() {
    unsafe {
        pg_sys::CacheRegisterRelcacheCallback(Some(forget_task_table), pg_sys::Datum::from(0))
    };
}

#[pg_guard]
unsafe extern "C-unwind" fn forget_task_table(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    let concerned = TASK_TABLE.with(|cached| match cached.try_borrow() {
        Ok(cached) => cached
            .as_ref()
            .is_none_or(|(_, table)| relid == pg_sys::InvalidOid || table.sources.contains(&relid)),
        Err(_) => true,
    });
    if concerned {
        GENERATION.with(|generation| generation.set(generation.get() + 1));
    }
}

/// The registered task table, described once and cached until an invalidation concerns it.
fn task_table() -> Rc<TaskTable> {
    let generation = GENERATION.with(Cell::get);
    let cached = TASK_TABLE.with(|cached| cached.borrow().clone());
    if let Some((described_in, table)) = cached {
        if described_in == generation {
            return table;
        }
    }
    let table = Rc::new(describe_task_table());
    TASK_TABLE.with(|cached| *cached.borrow_mut() = Some((generation, Rc::clone(&table))));
    table
}

fn describe_task_table() -> TaskTable {
    let registered = guard::as_owner(|| {
        Spi::connect(|client| {
            let row = guard::run(
                client,
                "SELECT tableoid, relid::oid, id_column::text, stage_column::text,
                        'orch_lease.stage_transition'::regclass::oid,
                        (SELECT array_agg(from_stage || '->' || to_stage) FROM orch_lease.stage_transition)
                   FROM orch_lease.task_table",
                &[],
            );
            (!row.is_empty()).then(|| {
                let row = row.first();
                let oid = |n| row.get::<pg_sys::Oid>(n).unwrap().unwrap();
                let value = |n| row.get::<String>(n).unwrap().unwrap();
                let graph = row.get::<Vec<String>>(6).unwrap().map(|edges| {
                    edges
                        .iter()
                        .filter_map(|edge| edge.split_once("->"))
                        .map(|(from, to)| (from.to_string(), to.to_string()))
                        .collect::<HashSet<_>>()
                });
                ([oid(1), oid(2), oid(5)], value(3), value(4), graph)
            })
        })
    });
    let Some((sources, id, stage, graph)) = registered else {
        errors::raise_hinted(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "orch_lease: no task table is registered".into(),
            "Call orch_lease.register_task_table('your_tasks'::regclass, 'id', 'stage') first.",
            None,
        );
    };
    // Names and types come from the catalog caches; DDL on the task table invalidates this description,
    // so a renamed or dropped table or column is noticed at once.
    let relid = sources[1];
    let reregister = "The task table changed since it was registered: call orch_lease.register_task_table again.";
    let (Some(table), Some(schema)) = (catalog_name(unsafe { pg_sys::get_rel_name(relid) }), {
        let namespace = unsafe { pg_sys::get_rel_namespace(relid) };
        catalog_name(unsafe { pg_sys::get_namespace_name(namespace) })
    }) else {
        errors::raise_hinted(
            PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            format!(
                "orch_lease: the registered task table (oid {}) no longer exists",
                relid.to_u32()
            ),
            reregister,
            None,
        );
    };
    let column_type = |column: &str| {
        let name = CString::new(column).expect("a column name holds no NUL byte");
        let attnum = unsafe { pg_sys::get_attnum(relid, name.as_ptr()) };
        (attnum != 0).then(|| unsafe { pg_sys::get_atttype(relid, attnum) })
    };
    let (Some(id_type), Some(stage_type)) = (column_type(&id), column_type(&stage)) else {
        errors::raise_hinted(
            PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
            format!("orch_lease: column {id} or {stage} of the task table {schema}.{table} no longer exists"),
            reregister,
            None,
        );
    };
    let table = format!("{}.{}", quote_identifier(&schema), quote_identifier(&table));
    let (id_column, stage_column) = (id, stage);
    let (id, stage) = (
        quote_identifier(&id_column),
        quote_identifier(&stage_column),
    );
    TaskTable {
        sources,
        qualified: table.clone(),
        id_column,
        stage_column,
        graph,
        id_type,
        stage_type,
        compare_and_set: format!(
            "UPDATE {table} SET {stage} = $3 WHERE {id} = $1 AND {stage} = $2 RETURNING true"
        ),
        read_stage: format!("SELECT {stage}::text FROM {table} WHERE {id} = $1"),
        unconditional: format!("UPDATE {table} SET {stage} = $2 WHERE {id} = $1 RETURNING true"),
    }
}

/// A name the catalog cache handed back (NULL when the object is gone).
fn catalog_name(name: *mut std::ffi::c_char) -> Option<String> {
    (!name.is_null()).then(|| {
        unsafe { CStr::from_ptr(name) }
            .to_string_lossy()
            .into_owned()
    })
}

/// Converts `text` to a value of the column type `type_oid` with that type's own input function, so a
/// stage the enum lacks or an id the id type rejects fails with the type's SQLSTATE, naming `argument`.
fn typed(argument: &'static str, text: &str, type_oid: pg_sys::Oid) -> Typed {
    let text = CString::new(text).expect("PostgreSQL text holds no NUL byte");
    let datum = PgTryBuilder::new(|| unsafe {
        let (mut input, mut io_param) = (pg_sys::InvalidOid, pg_sys::InvalidOid);
        pg_sys::getTypeInputInfo(type_oid, &mut input, &mut io_param);
        pg_sys::OidInputFunctionCall(input, text.as_ptr().cast_mut(), io_param, -1)
    })
    .catch_others(|error| match error {
        pg_sys::panic::CaughtError::PostgresError(report) => errors::raise(
            report.sql_error_code(),
            format!("orch_lease: {argument}: {}", report.message()),
        ),
        other => other.rethrow(),
    })
    .execute();
    Typed(datum, type_oid)
}

/// A value converted to a column's type, allocated in the function's memory context.
#[derive(Clone, Copy)]
struct Typed(pg_sys::Datum, pg_sys::Oid);

impl Typed {
    fn arg(self) -> DatumWithOid<'static> {
        // SAFETY: the datum is a value of that type, alive for the whole function call.
        unsafe { DatumWithOid::new(self.0, self.1) }
    }
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
        guard::composite(
            "orch_lease.cas_result",
            vec![
                self.applied.into_datum(),
                self.outcome.into_datum(),
                self.current_stage.into_datum(),
            ],
        )
    }
}

/// How a CAS uses the lease on its work item.
#[derive(Clone, Copy)]
enum LeaseUse {
    /// No token: a plain CAS.
    Unchecked,
    /// The lease must be held with this token, and stays held (share-locked until commit).
    Held(i64),
    /// The lease must be held with this token, and is released whatever the CAS outcome.
    Released(i64),
}

/// Sets the task's stage to `new_stage` if it is still `expected_stage`. With `lease_token`, only while
/// the lease on work_item = task_id is held with that token.
#[pg_extern(volatile, parallel_unsafe, requires = ["task_table_registry", "lease_table"])]
fn update_task_stage_cas(
    task_id: Option<&str>,
    expected_stage: Option<&str>,
    new_stage: Option<&str>,
    lease_token: default!(Option<i64>, "NULL"),
) -> composite_type!('static, "orch_lease.cas_result") {
    let lease = lease_token.map_or(LeaseUse::Unchecked, LeaseUse::Held);
    stage_cas(("task_id", task_id), expected_stage, new_stage, lease).into_row()
}

/// The lease-guarded CAS and the release of that lease, in one atomic step. The lease is released
/// whatever the CAS outcome: the attempt is over. A NULL token (from a disabled or out-of-scope grant)
/// makes it a plain CAS.
#[pg_extern(volatile, parallel_unsafe, requires = ["task_table_registry", "lease_table"])]
fn commit_stage_cas(
    work_item: Option<&str>,
    token: Option<i64>,
    expected_stage: Option<&str>,
    new_stage: Option<&str>,
) -> composite_type!('static, "orch_lease.cas_result") {
    let lease = token.map_or(LeaseUse::Unchecked, LeaseUse::Released);
    stage_cas(("work_item", work_item), expected_stage, new_stage, lease).into_row()
}

fn stage_cas(
    (id_argument, task_id): (&'static str, Option<&str>),
    expected_stage: Option<&str>,
    new_stage: Option<&str>,
    lease: LeaseUse,
) -> Cas {
    let task_id = errors::required(id_argument, task_id);
    let expected_stage = errors::present("expected_stage", expected_stage);
    let new_stage = errors::present("new_stage", new_stage);
    let table = task_table();
    // Convert every input before anything is written: bad input is an error with nothing changed.
    let id = typed(id_argument, task_id, table.id_type);
    let expected = typed("expected_stage", expected_stage, table.stage_type);
    let new = typed("new_stage", new_stage, table.stage_type);

    Spi::connect(|client| {
        if !config::enabled() {
            let written = stage_rules::as_cas_write(|| {
                guard::run(client, &table.unconditional, &[id.arg(), new.arg()])
            });
            return match written.is_empty() {
                false => Cas::said(true, "unconditional"),
                true => Cas::said(false, "not_found"),
            };
        }
        let claim = match lease {
            LeaseUse::Unchecked => None,
            LeaseUse::Held(token) => Some((
                token,
                "SELECT true FROM orch_lease.transition_lease
                  WHERE work_item = $1 AND token = $2 FOR SHARE",
            )),
            LeaseUse::Released(token) => Some((
                token,
                "DELETE FROM orch_lease.transition_lease WHERE work_item = $1 AND token = $2
                 RETURNING true",
            )),
        };
        // Does the lease still hold with this token? Locks it (or releases it) as a side effect.
        let holds = |(token, statement): (i64, &str)| {
            guard::as_owner(|| {
                !guard::run(client, statement, &[task_id.into(), token.into()]).is_empty()
            })
        };
        let lease_lost = || Cas::said(false, "lease_lost");
        let allowed = table.graph.as_ref().is_none_or(|graph| {
            graph.contains(&(expected_stage.to_string(), new_stage.to_string()))
        });
        let cas = guard::lost_race_as(
            || match claim {
                Some(claim) if !holds(claim) => lease_lost(),
                _ if !allowed => Cas::said(false, "invalid_transition"),
                _ => compare_and_set(client, &table, id, expected, new),
            },
            // A lost race (REPEATABLE READ / SERIALIZABLE, a deadlock) rolled the attempt back. Claim
            // the lease again on its own: if it still holds, the stage changed under us; and a commit
            // still releases it, since the attempt is over.
            || match claim {
                Some(claim) => guard::lost_race_as(
                    || {
                        if holds(claim) {
                            Cas::said(false, "stage_mismatch")
                        } else {
                            lease_lost()
                        }
                    },
                    lease_lost,
                ),
                None => Cas::said(false, "stage_mismatch"),
            },
        );
        guard::as_owner(|| {
            events::record(
                client,
                events::Event {
                    event: if cas.applied {
                        "cas_applied"
                    } else {
                        "cas_lost"
                    },
                    outcome: cas.outcome,
                    work_item: task_id,
                    old_token: claim.map(|(token, _)| token),
                    stage_from: Some(expected_stage),
                    stage_to: Some(new_stage),
                    ..Default::default()
                },
            )
        });
        cas
    })
}

fn compare_and_set(
    client: &SpiClient<'_>,
    table: &TaskTable,
    id: Typed,
    expected: Typed,
    new: Typed,
) -> Cas {
    let written = stage_rules::as_cas_write(|| {
        guard::run(
            client,
            &table.compare_and_set,
            &[id.arg(), expected.arg(), new.arg()],
        )
    });
    if !written.is_empty() {
        return Cas::said(true, "applied");
    }
    let current = guard::run(client, &table.read_stage, &[id.arg()]);
    match current.is_empty() {
        true => Cas::said(false, "not_found"),
        false => Cas {
            applied: false,
            outcome: "stage_mismatch",
            current_stage: current.first().get::<String>(1).unwrap(),
        },
    }
}
