//! The registered task tables: the application's own tables whose stage the CAS writes (any number of
//! them, #27), their descriptions (cached per backend until an invalidation concerns them), which one a
//! call means (the `task_table` argument; omitted, the only one registered, never a guess), and what
//! follows from a table's id column's type — how a value is read from text, and the one canonical key
//! every spelling of a task id maps to. A work item is a (table, key) pair: `Item`.
use crate::{error_context, errors, owner, plans, races, rows};
use pgrx::datum::DatumWithOid;
use pgrx::pg_sys::{self, PgTryBuilder};
use pgrx::pgrx_sql_entity_graph::metadata::{
    ArgumentError, ReturnsError, ReturnsRef, SqlMappingRef, SqlTranslatable, TypeOrigin,
};
use pgrx::prelude::*;
use pgrx::spi::{quote_identifier, SpiClient};
use pgrx::{PgRelation, PgSqlErrorCode};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, CString};
use std::rc::Rc;

extension_sql!(
    r#"
CREATE TABLE orch_lease.task_table (
    relid         regclass PRIMARY KEY,
    id_column     name NOT NULL,
    stage_column  name NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    id_type       regtype,
    id_typmod     integer,
    rows_created_later boolean NOT NULL DEFAULT false,
    id_attnum     smallint,
    id_position   smallint
);
COMMENT ON COLUMN orch_lease.task_table.id_attnum IS
    'The id column''s number when it was registered: a column renamed to its name is another column, and the table must be registered again.';
COMMENT ON COLUMN orch_lease.task_table.id_position IS
    'The id column''s place among the live columns when it was registered: a dump and restore (or a Citus shard) numbers columns anew but keeps their places.';
COMMENT ON COLUMN orch_lease.task_table.rows_created_later IS
    'Whether a task''s row may be created after its lease is taken: acquire then grants on an id with no row (stage NULL) instead of answering not_found.';
COMMENT ON COLUMN orch_lease.task_table.id_type IS
    'The id column''s type and type modifier when it was registered: after a change the table must be registered again.';
COMMENT ON TABLE orch_lease.task_table IS
    'The application tables whose stage the CAS writes, one row per registered table.';
SELECT pg_catalog.pg_extension_config_dump('orch_lease.task_table', '');
"#,
    name = "task_table_registry"
);

/// Registers one of the application's existing tables whose stage the CAS writes, or describes again
/// one registered before (the others are left alone). The caller must own it; the id column must be
/// unique by itself and its type must have an equality operator; the stage column may be text, varchar
/// or an enum. From then on every work item of it is keyed by its id's canonical form, and acquire
/// answers `not_found` for an id with no row, unless `rows_created_later`. Only one table of an
/// inheritance or partition family may be registered (`one_of_its_family`), and while leases on it are
/// held its id column cannot change (another column, by name or by number).
#[pg_extern(
    volatile,
    parallel_unsafe,
    requires = ["task_table_registry", "lease_table"],
    sql = r#"
CREATE FUNCTION orch_lease.register_task_table(
    task_table regclass, id_column name DEFAULT 'id', stage_column name DEFAULT 'stage',
    rows_created_later boolean DEFAULT false
) RETURNS void VOLATILE PARALLEL UNSAFE LANGUAGE c
AS 'MODULE_PATHNAME', 'register_task_table_wrapper';
COMMENT ON FUNCTION orch_lease.register_task_table(regclass, name, name, boolean) IS
    'Registers an application table whose stage the CAS writes (or describes a registered one again): the caller must own it, and its id column must be unique. With rows_created_later, acquire grants on ids with no row yet instead of answering not_found.';
"#
)]
fn register_task_table(
    task_table: Option<PgRelation>,
    id_column: Option<&CStr>,
    stage_column: Option<&CStr>,
    fcinfo: pg_sys::FunctionCallInfo,
) {
    let table = errors::present("task_table", task_table);
    let rows_created_later = errors::present("rows_created_later", created_later(fcinfo));
    let id_column = errors::present("id_column", id_column).to_string_lossy();
    let stage_column = errors::present("stage_column", stage_column).to_string_lossy();
    let qualified = format!("{}.{}", table.namespace(), table.name());
    if !(table.is_table() || table.is_partitioned_table()) {
        errors::raise(
            PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
            format!("orch_lease: \"{qualified}\" is not a table"),
        );
    }
    // SAFETY: a test of the oid's number against the catalogs' range; no pointer, no catalog read.
    if unsafe { pg_sys::IsCatalogRelationOid(table.oid()) } {
        errors::raise(
            PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
            format!("orch_lease: \"{qualified}\" is a system catalog, not an application table"),
        );
    }
    if !caller_owns(table.oid()) {
        errors::raise_hinted(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("orch_lease: must be the owner of \"{qualified}\" to register it"),
            "The owner of the task table (or a member of its owning role) registers it.",
            None,
        );
    }
    let column = |argument: &str, column: &str| -> (i16, pg_sys::Oid) {
        let name = CString::new(column).expect("a name holds no NUL byte");
        let attnum = attnum(table.oid(), &name);
        if attnum <= 0 {
            errors::raise(
                PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
                format!(
                    "orch_lease: {argument}: column \"{column}\" of \"{qualified}\" does not exist"
                ),
            );
        }
        // SAFETY: a catalog cache look-up of a column that exists (checked above), in this call's
        // transaction.
        (attnum, unsafe { pg_sys::get_atttype(table.oid(), attnum) })
    };
    let (id_attnum, _) = column("id_column", &id_column);
    let (stage_attnum, _) = column("stage_column", &stage_column);
    check_stage_column(table.oid(), stage_attnum, &stage_column, &qualified);
    let id = check_id_column(table.oid(), id_attnum, &qualified);
    lock_out_calls();
    let registrations = registrations();
    let registered: Vec<pg_sys::Oid> = registrations.iter().map(|r| r.relid).collect();
    one_of_its_family(table.oid(), &qualified, &registered);
    // The id column it had, by name and by number (a column renamed to its name is another one).
    let before = registrations
        .iter()
        .find(|r| r.relid == table.oid())
        .map(|r| (r.id_column.clone(), r.id_attnum, r.id_position));
    let id_position = live_position(table.oid(), id_attnum);
    let other_id_column = before.is_some_and(|(name, attnum, position)| {
        name != id_column || !same_column(attnum, position, id_attnum, id_position)
    });
    // A table dropped since it was registered is forgotten with its graph, unless a lease on it is
    // held: then its registration stays (calls naming no table are ambiguous) until that lease is
    // ended and the table unregistered.
    let forgotten: Vec<pg_sys::Oid> = registered
        .into_iter()
        .filter(|relid| rel_name(*relid).is_none())
        .filter(|relid| leases_on(*relid) == 0)
        .collect();
    // Every lease held on it now (committed since this transaction's snapshot too) must already be
    // keyed the way the new id column keys it; so must the leases taken while no table was registered,
    // which the first table registered adopts.
    let held = owner::as_owner(|| {
        read_latest(
            &format!(
                "SELECT work_item FROM orch_lease.transition_lease
                  WHERE task_table OPERATOR(pg_catalog.=) {oid}::pg_catalog.oid
                     OR task_table OPERATOR(pg_catalog.=) 0::pg_catalog.oid",
                oid = table.oid().to_u32()
            ),
            &[],
            |row| text_of(row(1)),
        )
    });
    let held: Vec<String> = held.into_iter().flatten().collect();
    // Another id column keys the same text to another row: every held lease would silently move to it
    // (red team 2, G4).
    if other_id_column && !held.is_empty() {
        errors::raise_hinted(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!(
                "orch_lease: {} lease(s) on \"{qualified}\" are held: its id column cannot change under them",
                held.len()
            ),
            "A lease names a row by its id column: end the leases on the table (release, or \
             transition_lease_force_release by the work item the status view shows), then register again.",
            Some(format!("The id column is to be \"{id_column}\" (column {id_attnum}).")),
        );
    }
    for item in held {
        // An id the new type cannot read is in the way too (55000, not the type's 22P02 naming an
        // argument the caller never passed); the look is rolled back whatever it finds.
        let keyed = races::probe(|| id.key("leased work item", &item)).map_err(|error| {
            error_context::forget_passing();
            let why = races::report_of(&error).message();
            why.trim_start_matches("orch_lease: ").to_string()
        });
        let (found, detail) = match keyed {
            Ok(key) if key == item => continue,
            Ok(key) => (
                format!("keys the leased work item \"{item}\" as \"{key}\""),
                None,
            ),
            Err(why) => (
                format!("cannot key the leased work item \"{item}\""),
                Some(why),
            ),
        };
        errors::raise_hinted(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("orch_lease: a lease is in the way: \"{qualified}\" {found}"),
            "Release or force-release the leases on such work items (by the work item the status \
             view shows), then register again.",
            detail,
        );
    }
    // The table and the id type go in as a regclass and a regtype, and the new row's own registered_at
    // is kept, so that on Citus (docs/scale-out.md), where the registry is a reference table, each node
    // gets them by name (its own oids) and the statement calls no volatile function in DO UPDATE.
    // SAFETY: oids are a regclass's and a regtype's datums.
    let (relid, id_type) = unsafe {
        (
            DatumWithOid::new(table.oid(), pg_sys::REGCLASSOID),
            DatumWithOid::new(id.column_type, pg_sys::REGTYPEOID),
        )
    };
    owner::as_owner(|| {
        Spi::connect(|client| {
            plans::run(
                client,
                "INSERT INTO orch_lease.task_table
                        (relid, id_column, stage_column, id_type, id_typmod, rows_created_later, id_attnum,
                         id_position)
                 VALUES ($1, $2::name, $3::name, $4, $5, $6, $7, $8)
                 ON CONFLICT (relid) DO UPDATE
                    SET id_column = EXCLUDED.id_column,
                        stage_column = EXCLUDED.stage_column, registered_at = EXCLUDED.registered_at,
                        id_type = EXCLUDED.id_type, id_typmod = EXCLUDED.id_typmod,
                        rows_created_later = EXCLUDED.rows_created_later, id_attnum = EXCLUDED.id_attnum,
                        id_position = EXCLUDED.id_position",
                &[
                    relid,
                    id_column.as_ref().into(),
                    stage_column.as_ref().into(),
                    id_type,
                    id.column_typmod.into(),
                    rows_created_later.into(),
                    id_attnum.into(),
                    id_position.into(),
                ],
            );
            // Leases taken while no table was registered were keyed by their text: they are this
            // table's now (checked above), as they were the one table's in 0.4.0.
            plans::run(
                client,
                "UPDATE orch_lease.transition_lease SET task_table = $1 WHERE task_table = 0",
                &[table.oid().into()],
            );
            // One statement per table and relation: Citus (docs/scale-out.md) plans each.
            for relid in forgotten {
                forget_registration(client, relid);
            }
        });
        forget_everywhere("orch_lease.task_table");
    });
}

/// `rows_created_later`, the fourth argument, read from the call itself: called through 0.4.0's
/// three-argument catalog entry (this library installed, `ALTER EXTENSION orch_lease UPDATE` not run
/// yet), pgrx would fail with an internal message; the version check then says what to do (red team 2,
/// G9).
fn created_later(fcinfo: pg_sys::FunctionCallInfo) -> Option<bool> {
    // SAFETY: fcinfo is the call's own, with nargs arguments.
    let arg = unsafe {
        let nargs = usize::try_from((*fcinfo).nargs).unwrap_or(0);
        (nargs > 3).then(|| *(*fcinfo).args.as_ptr().add(3))
    };
    match arg {
        Some(arg) => (!arg.isnull).then(|| arg.value.value() != 0),
        None => owner::as_owner(|| errors::internal("no version check", "register_task_table", "")),
    }
}

/// Refuses a table of an inheritance or partition family (its ancestors and descendants in
/// pg_inherits, every level) another member of which is registered too: a partition's rows are its
/// partitioned table's, and two registrations of one family would make one row two work items, leased
/// twice. Checked at registration and whenever a description is renewed: ATTACH PARTITION and ALTER
/// TABLE … INHERIT invalidate the tables they join, so a family made after registration is refused at
/// the next call (red team 2, G2). The family, which the description's cache watches too.
fn one_of_its_family(
    relid: pg_sys::Oid,
    qualified: &str,
    registered: &[pg_sys::Oid],
) -> Vec<pg_sys::Oid> {
    let family: Vec<pg_sys::Oid> = Spi::connect(|client| {
        plans::run(
            client,
            "WITH RECURSIVE up (relid) AS (
                 SELECT inhparent FROM pg_catalog.pg_inherits WHERE inhrelid OPERATOR(pg_catalog.=) $1
                 UNION SELECT i.inhparent FROM pg_catalog.pg_inherits i, up
                        WHERE i.inhrelid OPERATOR(pg_catalog.=) up.relid),
             down (relid) AS (
                 SELECT inhrelid FROM pg_catalog.pg_inherits WHERE inhparent OPERATOR(pg_catalog.=) $1
                 UNION SELECT i.inhrelid FROM pg_catalog.pg_inherits i, down
                        WHERE i.inhparent OPERATOR(pg_catalog.=) down.relid)
             SELECT relid FROM up UNION SELECT relid FROM down",
            &[relid.into()],
        )
        .map(|row| rows::column::<pg_sys::Oid>(&row, "relid"))
        .collect()
    });
    let shared = registered
        .iter()
        .find(|other| **other != relid && family.contains(other));
    if let Some(registered) = shared.map(|other| shown_name(*other)) {
        errors::raise_hinted(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("orch_lease: \"{qualified}\" shares its rows with the registered task table \"{registered}\""),
            "A table and its partitions or inheritance children are one family: register only one of \
             them (orch_lease.unregister_task_table removes a registration; a lease held on it is ended \
             with transition_lease_force_release). Until then every call on either is refused.",
            None,
        );
    }
    family
}

/// Removes a table's registration, its stage graph and its bypass guard. Refused while a lease on one
/// of its work items is held: that lease would be keyed by no table's rules.
#[pg_extern(
    volatile,
    parallel_unsafe,
    requires = ["task_table_registry", "lease_table", "stage_rules"],
    sql = r#"
CREATE FUNCTION orch_lease.unregister_task_table(task_table regclass) RETURNS void
VOLATILE PARALLEL UNSAFE LANGUAGE c AS 'MODULE_PATHNAME', 'unregister_task_table_wrapper';
COMMENT ON FUNCTION orch_lease.unregister_task_table(regclass) IS
    'Removes a task table''s registration, stage graph and bypass guard; refused (55000) while a lease on it is held.';
"#
)]
fn unregister_task_table(task_table: Option<TableArg>) {
    let relid = errors::present("task_table", task_table).0;
    let exists = rel_name(relid).is_some();
    let shown = shown_name(relid);
    // A table dropped since it was registered has no owner left to ask: an admin removes it.
    if exists && !caller_owns(relid) {
        errors::raise_hinted(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("orch_lease: must be the owner of \"{shown}\" to unregister it"),
            "The owner of the task table (or a member of its owning role) unregisters it.",
            None,
        );
    }
    lock_out_calls();
    let held = leases_on(relid);
    if held > 0 {
        errors::raise_hinted(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("orch_lease: {held} lease(s) on work items of \"{shown}\" are held"),
            "Let their holders release them, or force-release them (orch_lease.transition_lease_force_release \
             with task_table => the table), then unregister.",
            None,
        );
    }
    let registered = owner::as_owner(|| Spi::connect(|client| forget_registration(client, relid)));
    if !registered {
        not_registered(relid);
    }
    if exists {
        crate::stage_rules::remove_bypass_guard(relid);
    }
    owner::as_owner(|| forget_everywhere("orch_lease.task_table"));
}

/// The optional `task_table` argument, number `index` (from 0) of a call: None when NULL or 0, or when the
/// call came through a catalog entry of an earlier release that lacks it — an update script of that
/// release (0.3.0 -> 0.4.0 keys leases with `work_item_key(text)`), or a call made between installing
/// this library and `ALTER EXTENSION orch_lease UPDATE`, which is then told to run it. Read from the
/// call itself because pgrx refuses a call with fewer arguments than the function declares.
pub fn argument(fcinfo: pg_sys::FunctionCallInfo, index: usize) -> Option<TableArg> {
    // SAFETY: fcinfo is the call's own, with nargs arguments.
    unsafe {
        let nargs = usize::try_from((*fcinfo).nargs).unwrap_or(0);
        if index >= nargs {
            return None;
        }
        let arg = *(*fcinfo).args.as_ptr().add(index);
        let oid = pg_sys::Oid::from(arg.value.value() as u32);
        // 0 (`-`) is the status view's table of a lease taken while none was registered: no table named.
        (!arg.isnull && oid != pg_sys::InvalidOid).then_some(TableArg(oid))
    }
}

/// How many leases on work items of `relid` are held, committed ones included (`read_latest`).
fn leases_on(relid: pg_sys::Oid) -> i64 {
    let held = owner::as_owner(|| {
        read_latest(
            &format!(
                "SELECT count(*) FROM orch_lease.transition_lease
                  WHERE task_table OPERATOR(pg_catalog.=) {}::pg_catalog.oid",
                relid.to_u32()
            ),
            &[],
            |row| row(1).map_or(0, |datum| datum.value() as i64),
        )
    });
    held.first().copied().unwrap_or(0)
}

/// Deletes `relid`'s registration and stage graph; whether it was registered. Run as the owner.
fn forget_registration(client: &SpiClient<'_>, relid: pg_sys::Oid) -> bool {
    let gone = plans::run(
        client,
        "DELETE FROM orch_lease.task_table WHERE relid = $1 RETURNING relid",
        // A regclass, not an oid: Citus ships the delete of this reference table to every node by the
        // table's name, which each node resolves to its own oid.
        &[TableArg(relid).into()],
    );
    let registered = !gone.is_empty();
    crate::stage_rules::forget_stage_graph(client, relid);
    registered
}

/// A `regclass` argument, by its oid alone: unlike `PgRelation` it opens nothing, so a table dropped
/// since it was registered can still be named (by its oid) to end its leases or remove it.
#[derive(Clone, Copy)]
pub struct TableArg(pub pg_sys::Oid);

impl FromDatum for TableArg {
    unsafe fn from_polymorphic_datum(
        datum: pg_sys::Datum,
        is_null: bool,
        _typoid: pg_sys::Oid,
    ) -> Option<Self> {
        (!is_null).then(|| TableArg(pg_sys::Oid::from(datum.value() as u32)))
    }
}

// SAFETY: a regclass argument is an oid, which from_datum reads as pgrx reads any Oid.
unsafe impl<'fcx> pgrx::callconv::ArgAbi<'fcx> for TableArg {
    unsafe fn unbox_arg_unchecked(arg: pgrx::callconv::Arg<'_, 'fcx>) -> Self {
        let index = arg.index();
        // SAFETY: pgrx hands the argument of the call being made; from_datum reads only its oid.
        unsafe { arg.unbox_arg_using_from_datum() }
            .unwrap_or_else(|| panic!("argument {index} must not be null"))
    }
}

// SAFETY: the oid goes back as the by-value regclass datum that RETURN_SQL declares.
unsafe impl pgrx::callconv::BoxRet for TableArg {
    unsafe fn box_into<'fcx>(
        self,
        fcinfo: &mut pgrx::callconv::FcInfo<'fcx>,
    ) -> pgrx::datum::Datum<'fcx> {
        // SAFETY: an oid is a by-value datum: nothing to keep alive past the call.
        unsafe { fcinfo.return_raw_datum(pg_sys::Datum::from(self.0)) }
    }
}

impl IntoDatum for TableArg {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        Some(pg_sys::Datum::from(self.0))
    }

    fn type_oid() -> pg_sys::Oid {
        pg_sys::REGCLASSOID
    }
}

// SAFETY: the SQL type declared, regclass, is the one whose datums TableArg reads and returns.
unsafe impl SqlTranslatable for TableArg {
    const TYPE_IDENT: &'static str = pgrx::pgrx_resolved_type!(TableArg);
    const TYPE_ORIGIN: TypeOrigin = TypeOrigin::External;
    const ARGUMENT_SQL: Result<SqlMappingRef, ArgumentError> =
        Ok(SqlMappingRef::literal("regclass"));
    const RETURN_SQL: Result<ReturnsRef, ReturnsError> =
        Ok(ReturnsRef::One(SqlMappingRef::literal("regclass")));
}

/// Takes the registry's lock in the one mode that excludes every call that keys a work item or reads
/// the stage rules (they hold it in share mode until their transaction ends, `registered`), so that no
/// transaction keys by two registrations, nor by one that changed under it. It never joins the lock's
/// queue, where it would stop every call behind it: it tries, and gives up after `lock_timeout` (10 s
/// when that is unset) with 55P03. Calls made meanwhile wait for the registering transaction's end.
pub fn lock_out_calls() {
    // SAFETY: a plain int GUC of the backend, read on its only thread.
    let limit_ms = match unsafe { pg_sys::LockTimeout } {
        0 => 10_000,
        set => set,
    };
    lock_registry(
        pg_sys::AccessExclusiveLock,
        limit_ms,
        "orch_lease: transactions that called orch_lease are still open",
        "A registration waits for them so that no lease is keyed by two sets of rules. Find \
         them in pg_locks (relation 'orch_lease.task_table'; a prepared one in pg_prepared_xacts), let \
         them end, and register again.",
    );
}

/// Takes the registry's lock in `mode` without joining its queue, where it would stop every call
/// behind it: it tries every 10 ms, and after `limit_ms` raises 55P03 with `message` and `hint`.
fn lock_registry(mode: u32, limit_ms: i32, message: &str, hint: &str) {
    let registry = registry();
    let start = std::time::Instant::now();
    // SAFETY: a lock on a relation that exists (`registry` found it), taken in this transaction and
    // held until it ends; the call never waits.
    while !unsafe { pg_sys::ConditionalLockRelationOid(registry, mode as pg_sys::LOCKMODE) } {
        if start.elapsed().as_millis() >= limit_ms as u128 {
            errors::raise_hinted(
                PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE,
                message.into(),
                hint,
                Some(format!("Waited {limit_ms} ms.")),
            );
        }
        // SAFETY: a plain sleep; no pointer, no state.
        unsafe { pg_sys::pg_usleep(10_000) };
        pg_sys::check_for_interrupts!();
    }
}

/// `TaskTable::readable_at_once` of the relation `relid`, then of its indexes and partitions, each
/// listed once its parent's lock is held (no partition attached or detached meanwhile). With `keep`
/// false (a partition, and what is below it) the locks are only looked at and let go: a read locks only
/// the partition it finds the row in, and holding every partition's for the transaction would fill
/// the lock table on a table of many partitions.
fn readable_at_once(relid: pg_sys::Oid, keep: bool) -> bool {
    let mode = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
    // SAFETY: lock requests by oid, which open nothing; a lock let go is one this call took.
    let lock = |relid| unsafe { pg_sys::ConditionalLockRelationOid(relid, mode) };
    let let_go = |relid| unsafe { pg_sys::UnlockRelationOid(relid, mode) };
    if !lock(relid) {
        return false;
    }
    // SAFETY: `relid` is locked (above), so its relcache entry stays valid until closed here; the index
    // list is a copy, and the partitions' oids are copied out of the relcache's descriptor before the
    // close (an empty descriptor's array is not read).
    let (indexes, partitions) = unsafe {
        let relation = pg_sys::RelationIdGetRelation(relid);
        let indexes = oids(pg_sys::RelationGetIndexList(relation));
        let partitions = match (*(*relation).rd_rel).relkind
            == pg_sys::RELKIND_PARTITIONED_TABLE as std::ffi::c_char
        {
            true => {
                let parts = pg_sys::RelationGetPartitionDesc(relation, true);
                match (*parts).nparts {
                    0 => Vec::new(),
                    n => std::slice::from_raw_parts((*parts).oids, n as usize).to_vec(),
                }
            }
            false => Vec::new(),
        };
        pg_sys::RelationClose(relation);
        (indexes, partitions)
    };
    let free = indexes.into_iter().all(|index| {
        let free = lock(index);
        if free && !keep {
            let_go(index);
        }
        free
    }) && partitions
        .into_iter()
        .all(|partition| readable_at_once(partition, false));
    if !keep {
        let_go(relid);
    }
    free
}

/// The oids of an OID list (none for NIL).
///
/// # Safety
/// `list` is NIL or a valid `List` of oids.
unsafe fn oids(list: *mut pg_sys::List) -> Vec<pg_sys::Oid> {
    match list.is_null() {
        true => Vec::new(),
        false => (0..(*list).length as usize)
            .map(|n| (*(*list).elements.add(n)).oid_value)
            .collect(),
    }
}

/// The registry table, `orch_lease.task_table`.
fn registry() -> pg_sys::Oid {
    let relid = own_relation(c"task_table");
    if relid == pg_sys::InvalidOid {
        errors::internal("missing relation", "orch_lease.task_table", "");
    }
    relid
}

/// Runs a read-only statement with a snapshot taken now, whatever the transaction's isolation level,
/// and maps each row (its columns by number, from 1) with `row`. Registrations are configuration: a
/// transaction keys by the one committed when it first keys (the registry lock then keeps it so), never
/// by an older one its snapshot still shows. A task row is looked for this way too (`has_row_now`).
fn read_latest<R>(
    sql: &str,
    args: &[DatumWithOid],
    mut row: impl FnMut(&dyn Fn(i32) -> Option<pg_sys::Datum>) -> R,
) -> Vec<R> {
    let sql_c = CString::new(sql).expect("SQL holds no NUL byte");
    let mut types: Vec<pg_sys::Oid> = args.iter().map(DatumWithOid::oid).collect();
    let mut values: Vec<pg_sys::Datum> = args
        .iter()
        .map(|arg| {
            arg.datum()
                .map_or(pg_sys::Datum::from(0), |d| d.sans_lifetime())
        })
        .collect();
    let nulls: Vec<std::ffi::c_char> = args
        .iter()
        .map(|arg| if arg.datum().is_none() { b'n' } else { b' ' } as std::ffi::c_char)
        .chain([0])
        .collect();
    // SAFETY: inside Spi::connect, so SPI is connected and its results live until it returns; the
    // statement's text and its arguments (types, values, nulls) outlive the plan, which is freed here;
    // each tuple is read (and its datums passed to `row`) before the next SPI call can free the tuple
    // table.
    Spi::connect(|_client| unsafe {
        let plan = pg_sys::SPI_prepare(sql_c.as_ptr(), args.len() as i32, types.as_mut_ptr());
        if plan.is_null() {
            errors::internal("cannot prepare", sql, pg_sys::SPI_result);
        }
        let status = pg_sys::SPI_execute_snapshot(
            plan,
            values.as_mut_ptr(),
            nulls.as_ptr(),
            pg_sys::GetLatestSnapshot(),
            std::ptr::null_mut(),
            true,
            false,
            0,
        );
        if status != pg_sys::SPI_OK_SELECT as i32 {
            errors::internal("cannot run", sql, status);
        }
        let table = pg_sys::SPI_tuptable;
        let rows = (0..pg_sys::SPI_processed as usize)
            .map(|n| {
                let tuple = *(*table).vals.add(n);
                row(&|column| {
                    let mut null = false;
                    let datum = pg_sys::SPI_getbinval(tuple, (*table).tupdesc, column, &mut null);
                    (!null).then_some(datum)
                })
            })
            .collect();
        pg_sys::SPI_freeplan(plan);
        rows
    })
}

/// A text column's value read by `read_latest`.
fn text_of(datum: Option<pg_sys::Datum>) -> Option<String> {
    // SAFETY: a non-NULL datum of a text column, alive in SPI's memory while `read_latest` maps its row.
    datum.and_then(|datum| unsafe { String::from_datum(datum, false) })
}

/// Id types whose text form is canonical under their equality: one value, one spelling (as their
/// output function writes it, whatever the session's settings). Not numeric (1 = 1.0), bpchar (trailing
/// blanks), floats (0 = -0), time types (time zone, DateStyle), citext or nondeterministic collations.
const KEYABLE_IDS: [pg_sys::Oid; 6] = [
    pg_sys::INT2OID,
    pg_sys::INT4OID,
    pg_sys::INT8OID,
    pg_sys::UUIDOID,
    pg_sys::TEXTOID,
    pg_sys::VARCHAROID,
];

/// How work items are read as ids: by the id column's base type with the column's own type modifier
/// (a domain's too), so `'PR-130   '` is `'PR-130'` for a `varchar(6)` as it is for the column. Keys
/// and the CAS read ids this way alone, so one key is one row. No domain CHECK runs: keying an item
/// (an admin's force_release too) runs none of the table owner's code.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct IdType {
    base: pg_sys::Oid,
    typmod: i32,
    /// The column's own type and modifier, as registered: a change means registering again.
    pub column_type: pg_sys::Oid,
    pub column_typmod: i32,
}

impl IdType {
    /// `text` as an id value; an id the type rejects is an error naming `argument`.
    pub fn read(&self, argument: &'static str, text: &str) -> Typed {
        typed(argument, text, self.base, self.typmod)
    }

    /// The key of `text`: the id value's text, by the base type's output function.
    pub fn key(&self, argument: &'static str, text: &str) -> String {
        output(self.read(argument, text))
    }
}

/// The id column must key a task by one spelling and find one row: a keyable type (a domain over one
/// is fine), a deterministic collation, and a unique index on the column alone. Checked when the table
/// is registered, and again whenever its description is renewed (after DDL on it).
fn check_id_column(relid: pg_sys::Oid, attnum: i16, qualified: &str) -> IdType {
    let (mut id_type, mut typmod, mut collation) = (pg_sys::InvalidOid, 0, pg_sys::InvalidOid);
    // SAFETY: a catalog cache look-up of a column that exists, writing three locals.
    unsafe {
        pg_sys::get_atttypetypmodcoll(relid, attnum, &mut id_type, &mut typmod, &mut collation)
    };
    let mut base_typmod = typmod;
    // SAFETY: a catalog cache look-up of an existing type, writing a local.
    let base = unsafe { pg_sys::getBaseTypeAndTypmod(id_type, &mut base_typmod) };
    let deterministic = compares_bytes(collation);
    if !KEYABLE_IDS.contains(&base) || !deterministic {
        errors::raise_hinted(
            PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
            format!(
                "orch_lease: id_column: the id column of \"{qualified}\" must be smallint, integer, bigint, \
                 uuid, or text or varchar with a deterministic collation"
            ),
            "Two spellings of one id must be one lease: orch_lease keys work items by the id's text, which \
             these types write one way only.",
            None,
        );
    }
    equality_operator("id_column", id_type);
    // Only an index that enforces uniqueness now counts: not a deferrable one (duplicates until commit),
    // nor one a failed CREATE UNIQUE INDEX CONCURRENTLY or REINDEX CONCURRENTLY left invalid — left so
    // precisely because the ids are duplicated — nor one not ready for inserts or being dropped, which
    // new rows bypass (red team 2, G11).
    let unique = owner::as_owner(|| {
        Spi::connect(|client| {
            let unique = plans::run(
                client,
                "SELECT EXISTS (SELECT FROM pg_catalog.pg_index i
                                 WHERE i.indrelid = $1 AND i.indisunique AND i.indimmediate
                                   AND i.indisvalid AND i.indisready AND i.indislive
                                   AND i.indnkeyatts = 1 AND i.indkey[0] = $2
                                   AND i.indpred IS NULL AND i.indexprs IS NULL) AS unique",
                &[relid.into(), attnum.into()],
            );
            rows::column::<bool>(&unique.first(), "unique")
        })
    });
    if !unique {
        errors::raise_hinted(
            PgSqlErrorCode::ERRCODE_INVALID_COLUMN_REFERENCE,
            format!("orch_lease: id_column: the id column of \"{qualified}\" is not unique by itself"),
            "The CAS must find one row per id: give the id column a primary key or a unique constraint. \
             For a key of several columns such as (tenant, id), add a unique generated column and register \
             that: ALTER TABLE t ADD COLUMN task_key text GENERATED ALWAYS AS (tenant || '/' || id) STORED \
             UNIQUE (a separator no tenant contains).",
            None,
        );
    }
    IdType {
        base,
        typmod: base_typmod,
        column_type: id_type,
        column_typmod: typmod,
    }
}

/// The stage column must be text, varchar or an enum (or a domain over one) compared byte for byte:
/// under a nondeterministic collation the CAS's `WHERE stage = 'DONE'` matches `'done'`, which the
/// stage rules, comparing text, do not know as the terminal `'done'`. Checked when the table is
/// registered and whenever its description is renewed.
fn check_stage_column(relid: pg_sys::Oid, attnum: i16, stage_column: &str, qualified: &str) {
    let (mut stage_type, mut typmod, mut collation) = (pg_sys::InvalidOid, 0, pg_sys::InvalidOid);
    // SAFETY: a catalog cache look-up of a column that exists, writing three locals.
    unsafe {
        pg_sys::get_atttypetypmodcoll(relid, attnum, &mut stage_type, &mut typmod, &mut collation)
    };
    let base = base_type(stage_type);
    let deterministic = compares_bytes(collation);
    if !(is_enum(base) || base == pg_sys::TEXTOID || base == pg_sys::VARCHAROID) || !deterministic {
        errors::raise(
            PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
            format!(
                "orch_lease: stage_column: column \"{stage_column}\" of \"{qualified}\" must be text, \
                 varchar or an enum, with a deterministic collation"
            ),
        );
    }
}

/// The stages the graph names must still be the values of an enum stage type they named: after `ALTER
/// TYPE … RENAME VALUE 'done' TO 'finished'` a graph naming 'done' would hold 'finished' to nothing, and
/// after `RENAME VALUE 'running' TO 'done'` too, though 'done' is a label again: a label is known by its
/// place in the enum when the graph was registered. The first stage named that moved, if any.
fn moved_label(
    stage_type: pg_sys::Oid,
    graph: &Option<HashSet<(String, String)>>,
    terminal: &HashSet<String>,
    places: &HashMap<String, i32>,
) -> Option<String> {
    let base = base_type(stage_type);
    if !is_enum(base) {
        return None;
    }
    let labels: HashMap<String, i32> = Spi::connect(|client| {
        let labels = plans::run(
            client,
            "SELECT ARRAY(SELECT enumlabel::pg_catalog.text FROM pg_catalog.pg_enum
                           WHERE enumtypid OPERATOR(pg_catalog.=) $1 ORDER BY enumsortorder) AS labels",
            &[base.into()],
        );
        rows::column::<Vec<String>>(&labels.first(), "labels")
    })
    .into_iter()
    .zip(1..)
    .collect();
    let named = graph
        .iter()
        .flatten()
        .flat_map(|(from, to)| [from, to])
        .chain(terminal);
    let moved = |stage: &String| match (labels.get(stage), places.get(stage)) {
        (None, _) => true,
        (Some(now), Some(then)) => now != then,
        (Some(_), None) => false,
    };
    named.into_iter().find(|stage| moved(stage)).cloned()
}

/// Does the caller own the table (or belong to the role that does)?
pub fn caller_owns(relid: pg_sys::Oid) -> bool {
    // SAFETY: an existing relation (register's argument, locked by pgrx; a registered table found by
    // name just before), open until `table` drops, a missing one a panic; rd_rel is valid while open.
    let table = unsafe { PgRelation::open(relid) };
    let relowner = unsafe { (*table.rd_rel).relowner };
    // SAFETY: a membership test of two role oids, read from the catalog caches.
    unsafe { pg_sys::has_privs_of_role(owner::caller(), relowner) }
}

/// The key orch_lease uses for this work item: with a task table registered, the id column's canonical
/// form of it (every spelling of one id is one key); otherwise the text itself.
#[pg_extern(
    stable,
    parallel_unsafe,
    requires = ["task_table_registry"],
    sql = r#"
CREATE FUNCTION orch_lease.work_item_key(
    work_item text,
    task_table regclass DEFAULT NULL
) RETURNS text STABLE PARALLEL UNSAFE LANGUAGE c
AS 'MODULE_PATHNAME', 'work_item_key_wrapper';
"#
)]
fn work_item_key(work_item: Option<&str>, fcinfo: pg_sys::FunctionCallInfo) -> String {
    let task_table = argument(fcinfo, 1);
    item(
        "work_item",
        errors::required("work_item", work_item),
        task_table,
    )
    .key
}

/// A work item: the task table it is a row of (`InvalidOid` while no table is registered), its key,
/// and, with a table, the table described and the id value that finds its row. '42' of `tasks` and
/// '42' of `jobs` are two items, under two leases.
pub struct Item {
    pub table: pg_sys::Oid,
    pub key: String,
    pub task: Option<(Rc<TaskTable>, Typed)>,
}

impl Item {
    /// The item of a lease, as its row in `transition_lease` names it: no look at the task's row.
    pub fn leased(table: pg_sys::Oid, key: String) -> Item {
        Item {
            table,
            key,
            task: None,
        }
    }
}

/// The work item `work_item` of the table the call names (`table`; omitted, the only one registered),
/// read as that table's id. The caller must be allowed to read the table's stage column, as the
/// acquire's answer does (#26). An id the id type rejects is an error naming `argument`, with the type's SQLSTATE
/// (22P02 for bad syntax).
pub fn item(argument: &'static str, work_item: &str, table: Option<TableArg>) -> Item {
    match resolve(table) {
        Some(table) => {
            may_read_stage(&table);
            let id = table.id.read(argument, work_item);
            Item {
                table: table.relid,
                key: output(id),
                task: Some((table, id)),
            }
        }
        None => Item {
            table: pg_sys::InvalidOid,
            key: work_item.to_string(),
            task: None,
        },
    }
}

/// The work item of a lease to end by hand: `work_item` itself when a lease is held under exactly that
/// text (of the table named; named none, of the one table whose leases are all that are held),
/// otherwise its key. Found
/// before the registry is read, so that a registration left open or prepared, which holds the
/// registry, never stops the on-call's last tool (red team G13). A lease keyed by earlier rules (a
/// registration or an id type since changed, a table since dropped) stays endable by the work item and
/// table the status view shows, and never ends the lease another spelling keys to. No privilege on the
/// table is asked: this is the operators' (force_release, admins only).
pub fn held_item(argument: &'static str, work_item: &str, table: Option<TableArg>) -> Item {
    let (held, of_one_table) = owner::as_owner(|| {
        Spi::connect(|client| {
            let rows = match table {
                Some(named) => plans::run(
                    client,
                    "SELECT task_table FROM orch_lease.transition_lease
                      WHERE task_table = $1 AND work_item = $2",
                    &[named.into(), work_item.into()],
                ),
                // No index on the text alone: a scan of the held leases, on call only.
                None => plans::run(
                    client,
                    "SELECT task_table FROM orch_lease.transition_lease WHERE work_item = $1 LIMIT 2",
                    &[work_item.into()],
                ),
            };
            let held: Vec<pg_sys::Oid> = rows
                .filter_map(|row| row.get::<TableArg>(1).ok().flatten())
                .map(|TableArg(relid)| relid)
                .collect();
            // Named none, the text is that lease's item only while every held lease is of its table:
            // otherwise it may spell another table's item, and ending this one would be a guess (red
            // team G18). A statement of its own: Citus cannot plan the self-join on the lease table.
            let of_one_table = table.is_some()
                || match held.as_slice() {
                    [relid] => plans::run(
                        client,
                        "SELECT 1 FROM orch_lease.transition_lease
                          WHERE task_table OPERATOR(pg_catalog.<>) $1 LIMIT 1",
                        &[TableArg(*relid).into()],
                    )
                    .is_empty(),
                    _ => false,
                };
            (held, of_one_table)
        })
    });
    if let ([relid], true) = (held.as_slice(), of_one_table) {
        return Item::leased(*relid, work_item.to_string());
    }
    let relid = which(table);
    let key = match held.contains(&relid) || relid == pg_sys::InvalidOid {
        true => work_item.to_string(),
        false => describe(relid).id.key(argument, work_item),
    };
    Item::leased(relid, key)
}

/// The caller must hold SELECT on the table's stage column (or on the table): the stage a lease guards
/// and an acquire answers. Asked before anything about a lease is read, so a table an actor may not
/// read tells it nothing about the leases on it (docs/security.md).
fn may_read_stage(table: &TaskTable) {
    let role = owner::caller();
    let column = CString::new(table.stage_column.as_str()).expect("a name holds no NUL byte");
    let attnum = attnum(table.relid, &column);
    // SAFETY: privilege checks of a described (so existing) table and column for a role oid.
    let allowed = unsafe {
        pg_sys::pg_class_aclcheck(table.relid, role, pg_sys::ACL_SELECT as pg_sys::AclMode)
            == pg_sys::AclResult::ACLCHECK_OK
            || pg_sys::pg_attribute_aclcheck(
                table.relid,
                attnum,
                role,
                pg_sys::ACL_SELECT as pg_sys::AclMode,
            ) == pg_sys::AclResult::ACLCHECK_OK
    };
    if !allowed {
        errors::raise_hinted(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!(
                "orch_lease: permission denied to read the stage of task table {}",
                table.qualified
            ),
            "A work item is leased by a role that may read its table's stage column: GRANT SELECT \
             (stage) ON the table to the role.",
            Some(format!("Called by role \"{}\".", owner::caller_name())),
        );
    }
}

/// Makes every backend's cached task-table description stale from our commit on, by invalidating one
/// of the relations it is read from.
pub fn forget_everywhere(relation: &str) {
    let oid = Spi::get_one_with_args::<pg_sys::Oid>("SELECT $1::regclass::oid", &[relation.into()])
        .ok()
        .flatten()
        .unwrap_or_else(|| errors::internal("missing relation", relation, ""));
    // SAFETY: queues an invalidation of an existing relation (the regclass cast found it), sent to
    // every backend when this transaction commits.
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(oid) };
}

/// A registered task table, described.
pub struct TaskTable {
    pub relid: pg_sys::Oid,
    /// The task table, schema-qualified and quoted, and its columns' plain names.
    pub qualified: String,
    pub id_column: String,
    pub stage_column: String,
    /// The allowed transitions (expected, new), when a stage graph is registered.
    pub graph: Option<HashSet<(String, String)>>,
    /// The stages no transition leaves.
    pub terminal: HashSet<String>,
    /// A stage the graph names that an enum stage type no longer has where it had it (renamed).
    moved_label: Option<String>,
    /// How task ids are read, by keys and the CAS alike.
    pub id: IdType,
    pub stage_type: pg_sys::Oid,
    /// Acquire grants on an id with no row (registered with `rows_created_later`).
    pub rows_created_later: bool,
    /// `UPDATE … SET stage = $3 WHERE id = $1 AND stage = $2`
    pub compare_and_set: String,
    /// `SELECT stage … WHERE id = $1`
    pub read_stage: String,
    /// `SELECT stage … WHERE id = $1 FOR SHARE NOWAIT`: the row as the CAS's write would find it
    pub look_stage: String,
    /// `UPDATE … SET stage = $2 WHERE id = $1`: the kill-switch-off write
    pub unconditional: String,
}

impl TaskTable {
    /// Takes the ACCESS SHARE lock that reading the table's rows needs, on it, a partitioned table's
    /// partitions and the indexes of each, if it is free at once: a lock that conflicts (DDL, `LOCK
    /// TABLE`, a `REINDEX` of one index, prepared or not) or one queued for it (a migration's ALTER
    /// waiting behind a long reader) is not waited for (red team G14). The table's and its indexes'
    /// are kept to the transaction's end, as any read keeps them; a partition's are looked at only.
    pub fn readable_at_once(&self) -> bool {
        readable_at_once(self.relid, true)
    }

    /// Whether the caller's write may find fewer rows than its read: row-level security applies to it,
    /// and a policy of the table is for SELECT or for UPDATE alone ("read all, update own"). Policies
    /// FOR ALL (and for INSERT or DELETE) hide the same rows from both. The caller holds the table's
    /// lock (`readable_at_once`).
    pub fn write_sees_less(&self) -> bool {
        // SAFETY: catalog lookups of the registered table (described, so it exists), as the caller.
        let applies = unsafe { pg_sys::check_enable_rls(self.relid, pg_sys::InvalidOid, false) };
        if applies != pg_sys::CheckEnableRlsResult::RLS_ENABLED as i32 {
            return false;
        }
        // SAFETY: the table is locked, so its relcache entry and policy list stay valid until closed
        // here; the list (NIL when there is none) holds RowSecurityPolicy pointers.
        unsafe {
            let relation = pg_sys::RelationIdGetRelation(self.relid);
            let desc = (*relation).rd_rsdesc;
            let policies = match desc.is_null() || (*desc).policies.is_null() {
                true => 0,
                false => (*(*desc).policies).length as usize,
            };
            let one_command = (0..policies).any(|n| {
                let policy = (*(*(*desc).policies).elements.add(n)).ptr_value
                    as *const pg_sys::RowSecurityPolicy;
                [pg_sys::ACL_SELECT_CHR, pg_sys::ACL_UPDATE_CHR].contains(&((*policy).polcmd as u8))
            });
            pg_sys::RelationClose(relation);
            one_command
        }
    }

    /// Whether task `id` has a row the caller may see in a snapshot taken now (with a transaction
    /// snapshot: one created after it too). Read with the caller's privileges.
    pub fn has_row_now(&self, id: Typed) -> bool {
        !read_latest(&self.read_stage, &[id.arg()], |_| ()).is_empty()
    }

    /// May a CAS go from `expected` to `new`? Never out of a terminal stage; with a graph, only along it.
    /// Fails closed (55000) while a label the graph names was renamed: the graph no longer says what it
    /// said; registering it again is the repair, so only the CAS checks this, not the description.
    pub fn allows(&self, expected: &str, new: &str) -> bool {
        if let Some(moved) = &self.moved_label {
            errors::raise_hinted(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!(
                    "orch_lease: the stage graph names \"{moved}\", which the stage type no longer has where it had it"
                ),
                "A label was renamed, or its name given to another. Register the stage graph again \
                 (orch_lease.register_stage_graph) with the stage type's values.",
                None,
            );
        }
        !self.terminal.contains(expected)
            && self
                .graph
                .as_ref()
                .is_none_or(|graph| graph.contains(&(expected.to_string(), new.to_string())))
    }
}

thread_local! {
    /// The registrations as last read, and the tables described since, with the invalidation generation
    /// they were read in.
    static CACHE: RefCell<Option<Cache>> = const { RefCell::new(None) };
    /// Bumped by every relcache invalidation that concerns the registry or a task table.
    static GENERATION: Cell<u64> = const { Cell::new(0) };
}

struct Cache {
    generation: u64,
    /// The relations the registrations are read from, and every registered table: an invalidation of
    /// any of them renews the cache.
    sources: HashSet<pg_sys::Oid>,
    registrations: Rc<Vec<Registration>>,
    /// Tables described in this generation, by oid. A table that cannot be described (dropped,
    /// changed) is not kept: every call naming it raises again, and calls on the others go on.
    described: HashMap<pg_sys::Oid, Rc<TaskTable>>,
}

/// Registers the callbacks that keep the cached descriptions honest: any DDL on a task table (a
/// renamed column, a dropped table or index; `forget_task_table`, called by the library's relcache
/// callback), a renamed schema or enum label and every registration invalidate them.
pub fn init() {
    // SAFETY: from _PG_init, once per backend; the callbacks are functions of this library, which
    // stays loaded for the backend's life, and they touch thread-locals only.
    unsafe {
        // A renamed schema changes a task table's qualified name without touching its relcache entry.
        pg_sys::CacheRegisterSyscacheCallback(
            pg_sys::SysCacheIdentifier::NAMESPACEOID as i32,
            Some(forget_on_catalog_change),
            pg_sys::Datum::from(0),
        );
        // A renamed enum label changes what the stage graph's text names without touching either table.
        pg_sys::CacheRegisterSyscacheCallback(
            pg_sys::SysCacheIdentifier::ENUMOID as i32,
            Some(forget_on_catalog_change),
            pg_sys::Datum::from(0),
        );
    }
}

fn forget() {
    GENERATION.with(|generation| generation.set(generation.get() + 1));
}

/// A relation cache invalidation (of `relid`, or of every relation: InvalidOid).
pub fn forget_task_table(relid: pg_sys::Oid) {
    let concerned = CACHE.with(|cached| match cached.try_borrow() {
        Ok(cached) => match cached.as_ref() {
            Some(cache) => relid == pg_sys::InvalidOid || cache.sources.contains(&relid),
            None => false,
        },
        Err(_) => true,
    });
    if concerned {
        forget();
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn forget_on_catalog_change(_arg: pg_sys::Datum, _cache: i32, _hash: u32) {
    forget();
}

/// The registrations, read once and cached until an invalidation concerns them. Every caller holds the
/// registry's lock in share mode until its transaction ends: a registration (`lock_out_calls`) cannot
/// change the rules under a transaction that keyed or checked by them.
fn registrations() -> Rc<Vec<Registration>> {
    // Taking it the first time in a transaction also takes in the invalidations committed before. A
    // registration left open (or prepared) holds it: waited for within the bound only (red team F2).
    lock_registry(
        pg_sys::AccessShareLock,
        races::lock_wait_ms(),
        "orch_lease: a registration of the task table is still open",
        "A transaction of register_task_table, unregister_task_table or register_stage_graph holds the \
         registry: find it in pg_locks (relation 'orch_lease.task_table', AccessExclusiveLock; a prepared \
         one in pg_prepared_xacts) and end it, then call again.",
    );
    let generation = GENERATION.with(Cell::get);
    let cached = CACHE.with(|cached| {
        cached
            .borrow()
            .as_ref()
            .filter(|cache| cache.generation == generation)
            .map(|cache| cache.registrations.clone())
    });
    if let Some(registrations) = cached {
        return registrations;
    }
    let registrations = Rc::new(read_registrations());
    let mut sources: HashSet<pg_sys::Oid> = HashSet::from([registry()]);
    sources.extend(registrations.iter().flat_map(|r| r.sources));
    CACHE.with(|cached| {
        *cached.borrow_mut() = Some(Cache {
            generation,
            sources,
            registrations: registrations.clone(),
            described: HashMap::new(),
        })
    });
    registrations
}

/// The table a call means: the one it names, which must be registered, or, named none, the only one
/// registered (`InvalidOid` while none is). Several registered and none named is an error, never a
/// guess: a stage written on the wrong table's row would be reported applied.
fn which(table: Option<TableArg>) -> pg_sys::Oid {
    let registrations = registrations();
    match (table, registrations.as_slice()) {
        (Some(TableArg(relid)), registered) => {
            if !registered.iter().any(|r| r.relid == relid) {
                not_registered(relid);
            }
            relid
        }
        (None, []) => pg_sys::InvalidOid,
        (None, [only]) => only.relid,
        (None, several) => {
            let mut names: Vec<String> = several.iter().map(|r| shown_name(r.relid)).collect();
            names.sort();
            errors::raise_hinted(
                PgSqlErrorCode::ERRCODE_AMBIGUOUS_PARAMETER,
                format!(
                    "orch_lease: several task tables are registered ({}): name the work item's table",
                    names.join(", ")
                ),
                "Pass task_table => 'your_table' (a named argument, regclass) to say whose work item \
                 it is.",
                None,
            )
        }
    }
}

/// "is not a registered task table", with the registered ones named in the hint.
fn not_registered(relid: pg_sys::Oid) -> ! {
    errors::raise_hinted(
        PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        format!(
            "orch_lease: \"{}\" is not a registered task table",
            shown_name(relid)
        ),
        "Register it with orch_lease.register_task_table (its owner), or name one of the tables \
         orch_lease.task_table lists.",
        None,
    )
}

/// A table's name as messages show it: schema-qualified, or its oid once it is gone.
fn shown_name(relid: pg_sys::Oid) -> String {
    let name = rel_name(relid);
    let schema = rel_schema_name(relid);
    match (schema, name) {
        (Some(schema), Some(name)) => format!("{schema}.{name}"),
        _ => format!("oid {} (dropped)", relid.to_u32()),
    }
}

/// The registered table `relid`, described once per generation.
fn describe(relid: pg_sys::Oid) -> Rc<TaskTable> {
    let registrations = registrations();
    let cached = CACHE.with(|cached| {
        cached
            .borrow()
            .as_ref()
            .and_then(|cache| cache.described.get(&relid).cloned())
    });
    if let Some(table) = cached {
        return table;
    }
    let registration = registrations
        .iter()
        .find(|r| r.relid == relid)
        .unwrap_or_else(|| not_registered(relid));
    let registered: Vec<pg_sys::Oid> = registrations.iter().map(|r| r.relid).collect();
    let (table, family) = describe_task_table(registration, &registered);
    let table = Rc::new(table);
    CACHE.with(|cached| {
        if let Some(cache) = cached.borrow_mut().as_mut() {
            cache.described.insert(relid, table.clone());
            // A table joining the family anywhere (ATTACH to a partition of it) invalidates a member.
            cache.sources.extend(family);
        }
    });
    table
}

/// The table a call means (`which`), described; None while no table is registered.
pub fn resolve(table: Option<TableArg>) -> Option<Rc<TaskTable>> {
    let relid = which(table);
    (relid != pg_sys::InvalidOid).then(|| describe(relid))
}

/// The table a call means; an error with a hint when none is registered.
pub fn task_table(table: Option<TableArg>) -> Rc<TaskTable> {
    resolve(table).unwrap_or_else(|| {
        errors::raise_hinted(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "orch_lease: no task table is registered".into(),
            "Call orch_lease.register_task_table('your_tasks'::regclass, 'id', 'stage') first.",
            None,
        )
    })
}

/// What the registry says of one table, read as the extension's owner.
struct Registration {
    relid: pg_sys::Oid,
    /// The registry, the table, and the stage graph's two tables.
    sources: [pg_sys::Oid; 4],
    id_column: String,
    stage_column: String,
    /// The id column's number when it was registered (None: registered before 0.5.0 recorded it, its
    /// table gone at the update): a column renamed to its name is another column.
    id_attnum: Option<i16>,
    /// Its place among the live columns then (None: registered before 0.5.0 recorded it, its table gone
    /// at the update): what a dump and restore keeps of it.
    id_position: Option<i16>,
    /// The id column's type and modifier when it was registered (None: not recorded — a registration
    /// whose table was gone at the update to 0.5.0, or read by an update script of an earlier version,
    /// before 0.5.0's adds the columns — which keys by the type the column has, as 0.4.0 did).
    id_type: Option<(pg_sys::Oid, i32)>,
    graph: Option<HashSet<(String, String)>>,
    terminal: HashSet<String>,
    rows_created_later: bool,
    /// For an enum stage type: where each label the graph names was in the enum (1 = first).
    places: HashMap<String, i32>,
}

fn read_registrations() -> Vec<Registration> {
    let has = |relation: &str, column: &CStr| {
        let relation = CString::new(relation).expect("a name holds no NUL byte");
        attnum(own_relation(&relation), column) > 0
    };
    let recorded = match has("task_table", c"id_type") {
        true => "t.id_type::oid, t.id_typmod",
        false => "NULL::oid, NULL::integer",
    };
    let attnum = match has("task_table", c"id_attnum") {
        true => "t.id_attnum",
        false => "NULL::smallint",
    };
    let position = match has("task_table", c"id_position") {
        true => "t.id_position",
        false => "NULL::smallint",
    };
    // The stage graph is each table's since 0.5.0; an update script of an earlier version reads the one
    // graph there was.
    let its_own = match has("stage_transition", c"task_table") {
        true => "WHERE s.task_table OPERATOR(pg_catalog.=) t.relid",
        false => "",
    };
    let sorted = "ORDER BY s.from_stage, s.to_stage";
    // The labels' places (0.5.0), not there for an update script of an earlier version.
    let places = match has("stage_label", c"task_table") {
        true => {
            "ARRAY(SELECT l.stage FROM orch_lease.stage_label l
                    WHERE l.task_table OPERATOR(pg_catalog.=) t.relid ORDER BY l.stage),
             ARRAY(SELECT l.rank FROM orch_lease.stage_label l
                    WHERE l.task_table OPERATOR(pg_catalog.=) t.relid ORDER BY l.stage)"
        }
        false => "NULL::text[], NULL::integer[]",
    };
    // Read by an update script of an earlier version too, before 0.5.0's adds the column.
    let later = match has("task_table", c"rows_created_later") {
        true => "t.rows_created_later",
        false => "false",
    };
    owner::as_owner(|| {
        read_latest(
            &format!(
                "SELECT t.tableoid, t.relid::oid, t.id_column::text, t.stage_column::text,
                    'orch_lease.stage_transition'::regclass::oid,
                    'orch_lease.terminal_stage'::regclass::oid,
                    (SELECT array_agg(s.from_stage {sorted}) FROM orch_lease.stage_transition s {its_own}),
                    (SELECT array_agg(s.to_stage {sorted}) FROM orch_lease.stage_transition s {its_own}),
                    ARRAY(SELECT s.stage FROM orch_lease.terminal_stage s {its_own}),
                    {recorded}, {later}, {places}, {attnum}, {position}
               FROM orch_lease.task_table t"
            ),
            &[],
            |row| {
                let oid = |column| {
                    row(column).map_or(pg_sys::InvalidOid, |datum| {
                        pg_sys::Oid::from(datum.value() as u32)
                    })
                };
                let texts = |column| -> Option<Vec<String>> {
                    // SAFETY: a non-NULL text[] datum of this row, alive while `read_latest` maps it.
                    row(column).and_then(|datum| unsafe { Vec::from_datum(datum, false) })
                };
                let typmod = row(11).map(|datum| datum.value() as i32);
                Registration {
                    relid: oid(2),
                    sources: [oid(1), oid(2), oid(5), oid(6)],
                    id_column: text_of(row(3)).unwrap_or_default(),
                    stage_column: text_of(row(4)).unwrap_or_default(),
                    id_attnum: row(15).map(|datum| datum.value() as i16),
                    id_position: row(16).map(|datum| datum.value() as i16),
                    id_type: Some(oid(10))
                        .filter(|oid| *oid != pg_sys::InvalidOid)
                        .zip(typmod),
                    graph: texts(7)
                        .zip(texts(8))
                        .map(|(froms, tos)| froms.into_iter().zip(tos).collect()),
                    terminal: texts(9).unwrap_or_default().into_iter().collect(),
                    rows_created_later: row(12).is_some_and(|datum| datum.value() != 0),
                    places: texts(13)
                        .unwrap_or_default()
                        .into_iter()
                        .zip(
                            row(14)
                                // SAFETY: as `texts`, an int4[] datum.
                                .and_then(|datum| unsafe { Vec::<i32>::from_datum(datum, false) })
                                .unwrap_or_default(),
                        )
                        .collect(),
                }
            },
        )
    })
}

/// The description of a registered table, and its family (`one_of_its_family`).
fn describe_task_table(
    registration: &Registration,
    registered: &[pg_sys::Oid],
) -> (TaskTable, Vec<pg_sys::Oid>) {
    let Registration {
        relid,
        id_column,
        stage_column,
        id_attnum: registered_id_attnum,
        id_position: registered_id_position,
        id_type: registered_id_type,
        graph,
        terminal,
        rows_created_later,
        places,
        ..
    } = registration;
    let (relid, id_column, stage_column) = (*relid, id_column.clone(), stage_column.clone());
    let (graph, terminal) = (graph.clone(), terminal.clone());
    let rows_created_later = *rows_created_later;
    // Names and types come from the catalog caches; DDL on the task table invalidates this description,
    // so a renamed or dropped table or column is noticed at once.
    let reregister = "The task table changed since it was registered: call orch_lease.register_task_table again.";
    let (Some(table), Some(schema)) = (rel_name(relid), rel_schema_name(relid)) else {
        errors::raise_hinted(
            PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            format!(
                "orch_lease: the registered task table (oid {}) no longer exists",
                relid.to_u32()
            ),
            "A table dropped (or dropped and created again) is no longer the registered one: end its \
             leases with transition_lease_force_release(…, task_table => <oid>), then \
             orch_lease.unregister_task_table(<oid>), and register the new table.",
            None,
        );
    };
    let column_type = |column: &str| {
        let name = CString::new(column).expect("a column name holds no NUL byte");
        let attnum = attnum(relid, &name);
        // SAFETY: a catalog cache look-up of a column that exists (attnum above 0).
        (attnum > 0).then(|| unsafe { pg_sys::get_atttype(relid, attnum) })
    };
    let (Some(id_type), Some(stage_type)) = (column_type(&id_column), column_type(&stage_column))
    else {
        errors::raise_hinted(
            PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
            format!("orch_lease: column {id_column} or {stage_column} of the task table {schema}.{table} no longer exists"),
            reregister,
            None,
        );
    };
    let qualified = format!("{}.{}", quote_identifier(&schema), quote_identifier(&table));
    // A plain table's work items are its own rows: not its inheritance children's, which its unique
    // index does not cover and its bypass guard does not see (red team 2, G1). A partitioned table's
    // rows are its partitions'.
    // SAFETY: a catalog cache look-up by oid, in the call's transaction; a dropped relation gives 0.
    let only = match unsafe { pg_sys::get_rel_relkind(relid) } as u8 {
        pg_sys::RELKIND_RELATION => "ONLY ",
        pg_sys::RELKIND_PARTITIONED_TABLE => "",
        _ => errors::raise_hinted(
            PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
            format!("orch_lease: the registered task table {qualified} is no longer a table"),
            reregister,
            None,
        ),
    };
    let family = one_of_its_family(relid, &qualified, registered);
    let stage_attnum = {
        let name = CString::new(stage_column.as_str()).expect("a column name holds no NUL byte");
        attnum(relid, &name)
    };
    check_stage_column(relid, stage_attnum, &stage_column, &qualified);
    let moved_label = moved_label(stage_type, &graph, &terminal, places);
    let id_attnum = {
        let name = CString::new(id_column.as_str()).expect("a column name holds no NUL byte");
        attnum(relid, &name)
    };
    // A column renamed to the registered name is another column: leases keyed by the one registered
    // would mean its rows (red team 2, G4). A restored table's columns are numbered anew (G19).
    if !same_column(
        *registered_id_attnum,
        *registered_id_position,
        id_attnum,
        live_position(relid, id_attnum),
    ) {
        errors::raise_hinted(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("orch_lease: the id column {id_column} of {qualified} is not the column registered (columns were renamed)"),
            "Call orch_lease.register_task_table again; it is refused while leases on the table are \
             held, which transition_lease_force_release ends by the work item the status view shows.",
            None,
        );
    }
    let id_read = check_id_column(relid, id_attnum, &qualified);
    // Leases are keyed by the id type they were acquired under: another type (ALTER COLUMN … TYPE)
    // may key them otherwise, which registering again checks.
    if registered_id_type
        .is_some_and(|recorded| recorded != (id_read.column_type, id_read.column_typmod))
    {
        errors::raise_hinted(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("orch_lease: the type of the id column {id_column} of {qualified} changed since it was registered"),
            "Call orch_lease.register_task_table again: it checks that the leases held are keyed the way \
             the new type keys them. Meanwhile transition_lease_force_release ends a lease by the work \
             item the status view shows.",
            None,
        );
    }
    let (id, stage) = (
        quote_identifier(&id_column),
        quote_identifier(&stage_column),
    );
    // Operators spelled out with their schema: nothing in the caller's search_path stands in for them.
    let id_eq = equality_operator("id_column", id_type);
    let stage_eq = equality_operator("stage_column", stage_type);
    let table = TaskTable {
        relid,
        compare_and_set: format!(
            "UPDATE {only}{qualified} SET {stage} = $3 WHERE {id} {id_eq} $1 AND {stage} {stage_eq} $2 RETURNING true"
        ),
        read_stage: format!("SELECT {stage} FROM {only}{qualified} WHERE {id} {id_eq} $1"),
        look_stage: format!(
            "SELECT {stage} FROM {only}{qualified} WHERE {id} {id_eq} $1 FOR SHARE NOWAIT"
        ),
        unconditional: format!(
            "UPDATE {only}{qualified} SET {stage} = $2 WHERE {id} {id_eq} $1 RETURNING true"
        ),
        qualified,
        id_column,
        stage_column,
        graph,
        terminal,
        moved_label,
        id: id_read,
        stage_type,
        rows_created_later,
    };
    (table, family)
}

/// The type's default equality operator, written `OPERATOR(schema.name)`.
fn equality_operator(argument: &str, type_oid: pg_sys::Oid) -> String {
    // SAFETY: the type cache entry of an existing type (never NULL: it raises instead), which lives in
    // CacheMemoryContext for the backend's life; only its eq_opr is read.
    let entry = unsafe { pg_sys::lookup_type_cache(type_oid, pg_sys::TYPECACHE_EQ_OPR as i32) };
    let operator = unsafe { (*entry).eq_opr };
    if operator == pg_sys::InvalidOid {
        errors::raise(
            PgSqlErrorCode::ERRCODE_UNDEFINED_FUNCTION,
            format!("orch_lease: {argument}: its type has no default equality operator"),
        );
    }
    // SAFETY: a catalog cache look-up of an existing operator; the name is copied at once.
    let name = catalog_name(unsafe { pg_sys::get_opname(operator) }).unwrap_or_default();
    let schema = operator_schema(operator);
    format!("OPERATOR({}.{name})", quote_identifier(&schema))
}

/// The schema an operator lives in.
fn operator_schema(operator: pg_sys::Oid) -> String {
    // SAFETY: a pinned catalog cache tuple, NULL checked, read while pinned and released below.
    let tuple = unsafe {
        pg_sys::SearchSysCache1(pg_sys::SysCacheIdentifier::OPEROID as i32, operator.into())
    };
    if tuple.is_null() {
        errors::internal("missing operator", &operator.to_u32().to_string(), "");
    }
    // SAFETY: the pinned tuple is a pg_operator row (OPEROID's cache).
    let namespace = unsafe {
        (*pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_operator>(tuple)).oprnamespace
    };
    unsafe { pg_sys::ReleaseSysCache(tuple) };
    namespace_name(namespace).unwrap_or_default()
}

// The catalog look-ups made here several times, as safe functions. Each calls one lsyscache function,
// in the transaction of the SQL call or trigger that needs it, with oids or names that outlive the
// call; a missing object comes back as InvalidOid, 0 or NULL, which the callers check; an ERROR becomes
// a Rust panic at pgrx's guard.

/// A relation's name; None once it is dropped.
fn rel_name(relid: pg_sys::Oid) -> Option<String> {
    // SAFETY: as said above the block; the name is copied by `catalog_name`.
    catalog_name(unsafe { pg_sys::get_rel_name(relid) })
}

/// The name of a relation's schema; None once the relation is dropped.
fn rel_schema_name(relid: pg_sys::Oid) -> Option<String> {
    // SAFETY: as said above the block; a dropped relation's schema is InvalidOid, whose name is None.
    namespace_name(unsafe { pg_sys::get_rel_namespace(relid) })
}

/// A schema's name; None once it is dropped.
fn namespace_name(namespace: pg_sys::Oid) -> Option<String> {
    // SAFETY: as said above the block; the name is copied by `catalog_name`.
    catalog_name(unsafe { pg_sys::get_namespace_name(namespace) })
}

/// Is the column numbered `attnum`, at `position` among the live columns, the one registered as
/// `registered` at `registered_position`? Its own number at its place or before (a drop of an earlier
/// column moves it down), or (red team 3, G19) a smaller number at the same place: a dump and restore,
/// or a Citus shard, numbers the columns anew without the dropped ones, which only lowers a number and
/// keeps each live column's place. In the table registered no other column can pass: one created later
/// has a larger number, and one before the id column never moves up to its place (a drop moves columns
/// down, an added column goes last). In a restored copy the old number may be another column's: its
/// place, after the id column's, refuses it.
fn same_column(
    registered: Option<i16>,
    registered_position: Option<i16>,
    attnum: i16,
    position: i16,
) -> bool {
    match (registered, registered_position) {
        (None, _) => true,
        (Some(registered), None) => registered == attnum,
        (Some(registered), Some(place)) => {
            (attnum == registered && position <= place)
                || (attnum < registered && position == place)
        }
    }
}

/// The place of column `attnum` of `relid` among its live columns (1 = first).
fn live_position(relid: pg_sys::Oid, attnum: i16) -> i16 {
    // SAFETY: an existing relation (registered, its name read just before), open until `table` drops.
    let table = unsafe { PgRelation::open(relid) };
    let live = table
        .tuple_desc()
        .iter()
        .filter(|column| column.attnum > 0 && column.attnum <= attnum && !column.attisdropped)
        .count();
    i16::try_from(live).expect("a table has at most 1600 columns")
}

/// The number of column `name` of `relid`: 0 or less when it has none.
fn attnum(relid: pg_sys::Oid, name: &CStr) -> i16 {
    // SAFETY: as said above the block; `name` is borrowed for the call.
    unsafe { pg_sys::get_attnum(relid, name.as_ptr()) }
}

/// A relation of orch_lease's own schema (an error when the schema is missing; InvalidOid when the
/// relation is).
fn own_relation(name: &CStr) -> pg_sys::Oid {
    // SAFETY: as said above the block; the names are borrowed for the calls.
    unsafe {
        let schema = pg_sys::get_namespace_oid(c"orch_lease".as_ptr(), false);
        pg_sys::get_relname_relid(name.as_ptr(), schema)
    }
}

/// The type under a domain (or the type itself).
fn base_type(type_oid: pg_sys::Oid) -> pg_sys::Oid {
    // SAFETY: as said above the block.
    unsafe { pg_sys::getBaseType(type_oid) }
}

/// Is the type an enum?
fn is_enum(type_oid: pg_sys::Oid) -> bool {
    // SAFETY: as said above the block.
    unsafe { pg_sys::type_is_enum(type_oid) }
}

/// Does a column of collation `collation` (InvalidOid: not collatable) compare byte for byte?
fn compares_bytes(collation: pg_sys::Oid) -> bool {
    // SAFETY: as said above the block; a collation a column has exists.
    collation == pg_sys::InvalidOid || unsafe { pg_sys::get_collation_isdeterministic(collation) }
}

/// A name the catalog cache handed back (NULL when the object is gone).
fn catalog_name(name: *mut std::ffi::c_char) -> Option<String> {
    (!name.is_null()).then(|| {
        // SAFETY: a NUL-terminated name the catalog functions palloc'd in the current memory context,
        // copied here before anything can free it.
        unsafe { CStr::from_ptr(name) }
            .to_string_lossy()
            .into_owned()
    })
}

/// Converts `text` to a value of the column type `type_oid` (with type modifier `typmod`, -1 for none)
/// with that type's own input function, so a stage the enum lacks or an id the id type rejects fails
/// with the type's SQLSTATE, naming `argument`.
pub fn typed(argument: &'static str, text: &str, type_oid: pg_sys::Oid, typmod: i32) -> Typed {
    let text = CString::new(text).expect("PostgreSQL text holds no NUL byte");
    // SAFETY: an existing type's input function (looked up by oid) called on a NUL-terminated text
    // that outlives the call; the value is palloc'd in the function call's memory context.
    let datum = PgTryBuilder::new(|| unsafe {
        let (mut input, mut io_param) = (pg_sys::InvalidOid, pg_sys::InvalidOid);
        pg_sys::getTypeInputInfo(type_oid, &mut input, &mut io_param);
        pg_sys::OidInputFunctionCall(input, text.as_ptr().cast_mut(), io_param, typmod)
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

/// A value's text, by its type's output function.
pub fn output(value: Typed) -> String {
    datum_text(value.0, value.1)
}

/// The text of a datum of type `type_oid`, by the type's output function.
pub fn datum_text(datum: pg_sys::Datum, type_oid: pg_sys::Oid) -> String {
    let (mut function, mut varlena) = (pg_sys::InvalidOid, false);
    // SAFETY: `datum` is a value of `type_oid` (Typed, or a row of SPI's still alive); its output
    // function returns a palloc'd C string, copied and freed here.
    unsafe {
        pg_sys::getTypeOutputInfo(type_oid, &mut function, &mut varlena);
        let text = pg_sys::OidOutputFunctionCall(function, datum);
        let owned = CStr::from_ptr(text).to_string_lossy().into_owned();
        pg_sys::pfree(text.cast());
        owned
    }
}

/// A value converted to a column's type, allocated in the function's memory context.
#[derive(Clone, Copy)]
pub struct Typed(pg_sys::Datum, pg_sys::Oid);

impl Typed {
    pub fn arg(self) -> DatumWithOid<'static> {
        // SAFETY: the datum is a value of that type, alive for the whole function call.
        unsafe { DatumWithOid::new(self.0, self.1) }
    }
}

extension_sql!(
    r#"
COMMENT ON FUNCTION orch_lease.work_item_key(text, regclass) IS
    'The key orch_lease uses for a work item of a task table (omitted: the only one registered): its id type''s canonical form (every spelling of one id is one key).';
"#,
    name = "task_table_comments",
    requires = [work_item_key]
);
