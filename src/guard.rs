//! What every function shares: statements prepared once per backend and kept, and the subtransaction
//! that turns a lost race into an outcome instead of an aborted caller.
use pgrx::datum::DatumWithOid;
use pgrx::pg_sys::panic::{CaughtError, ErrorReportWithLevel};
use pgrx::pg_sys::{self, PgTryBuilder};
use pgrx::prelude::PgHeapTuple;
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiTupleTable};
use pgrx::{AllocatedByRust, PgOid, PgSqlErrorCode, PgTupleDesc};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;

thread_local! {
    /// Plans by SQL text, each with the parameter types it was prepared for: the same text can come
    /// with other types (a task table registered again with other column types). An `Rc` lets a plan
    /// run while the map is free for re-entrant callers (a trigger on the task table may call orch_lease).
    static PLANS: RefCell<HashMap<String, Vec<Prepared>>> = RefCell::new(HashMap::new());
}

/// A kept plan and the parameter types it was prepared for.
type Prepared = (Vec<pg_sys::Oid>, Rc<OwnedPreparedStatement>);

/// Runs `sql` through a plan prepared on first use and cached for the backend's life (PostgreSQL's
/// plan cache still re-plans it after DDL). Parameter types come from `args`. Plans are prepared as
/// read-write so that at READ COMMITTED each statement takes a fresh snapshot.
pub fn run<'conn>(
    client: &SpiClient<'conn>,
    sql: &str,
    args: &[DatumWithOid],
) -> SpiTupleTable<'conn> {
    let same_types =
        |types: &[pg_sys::Oid]| types.iter().copied().eq(args.iter().map(|arg| arg.oid()));
    let cached = PLANS.with(|plans| {
        let plans = plans.borrow();
        let prepared = plans.get(sql)?;
        prepared
            .iter()
            .find(|(types, _)| same_types(types))
            .map(|(_, plan)| Rc::clone(plan))
    });
    let plan = cached.unwrap_or_else(|| {
        let types: Vec<pg_sys::Oid> = args.iter().map(|arg| arg.oid()).collect();
        let oids: Vec<PgOid> = types.iter().map(|oid| PgOid::from(*oid)).collect();
        let plan = Rc::new(
            client
                .prepare_mut(sql, &oids)
                .unwrap_or_else(|error| panic!("orch_lease: cannot prepare {sql}: {error}"))
                .keep(),
        );
        PLANS.with(|plans| {
            plans
                .borrow_mut()
                .entry(sql.to_owned())
                .or_default()
                .push((types, Rc::clone(&plan)))
        });
        plan
    });
    client
        .select(&*plan, None, args)
        .unwrap_or_else(|error| panic!("orch_lease: cannot run {sql}: {error}"))
}

/// The SQLSTATEs of a lost race: another transaction got there first and we may not wait for it.
const LOST_RACE: [PgSqlErrorCode; 3] = [
    PgSqlErrorCode::ERRCODE_T_R_SERIALIZATION_FAILURE,
    PgSqlErrorCode::ERRCODE_T_R_DEADLOCK_DETECTED,
    PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE,
];

/// Runs `body` in a subtransaction. When it loses a race (serialization failure at REPEATABLE READ or
/// SERIALIZABLE, a NOWAIT lock, a deadlock), only the subtransaction is rolled back and `lost` gives
/// the outcome, so the caller's transaction stays usable. Any other error propagates unchanged.
pub fn lost_race_as<R>(body: impl FnOnce() -> R, lost: impl FnOnce() -> R) -> R {
    match subtransaction(body) {
        Ok(result) => result,
        Err(error) if LOST_RACE.contains(&report_of(&error).sql_error_code()) => lost(),
        Err(error) => error.rethrow(),
    }
}

/// Runs `body` in a subtransaction: committed into the caller's transaction when it returns, rolled
/// back alone when it raises, the error then handed back.
pub fn subtransaction<R>(body: impl FnOnce() -> R) -> Result<R, Box<CaughtError>> {
    // SAFETY: the protocol PL/pgSQL follows for an EXCEPTION block: remember the memory context and
    // resource owner, open the subtransaction, and restore both when it ends either way.
    let (context, owner) = unsafe { (pg_sys::CurrentMemoryContext, pg_sys::CurrentResourceOwner) };
    let end = move |commit: bool| unsafe {
        if commit {
            pg_sys::ReleaseCurrentSubTransaction();
        } else {
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
        }
        pg_sys::MemoryContextSwitchTo(context);
        pg_sys::CurrentResourceOwner = owner;
    };
    unsafe {
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(context);
    }
    let attempt = AssertUnwindSafe(move || {
        let result = body();
        end(true);
        Ok(result)
    });
    PgTryBuilder::new(attempt)
        .catch_others(move |error| {
            end(false);
            Err(Box::new(error))
        })
        .execute()
}

/// The report of a caught error, whatever raised it (a Rust panic reports as an internal error).
pub fn report_of(error: &CaughtError) -> &ErrorReportWithLevel {
    match error {
        CaughtError::PostgresError(report)
        | CaughtError::ErrorReport(report)
        | CaughtError::RustPanic {
            ereport: report, ..
        } => report,
    }
}

thread_local! {
    /// Composite type oids by name: parsing a type name costs a trip through the SQL parser.
    static TYPES: RefCell<HashMap<&'static str, pg_sys::Oid>> = RefCell::new(HashMap::new());
}

/// Forms a row of the named composite type from its attribute values, in order.
pub fn composite(
    type_name: &'static str,
    values: Vec<Option<pg_sys::Datum>>,
) -> PgHeapTuple<'static, AllocatedByRust> {
    // A cached oid goes stale only if the extension was dropped and created again in this backend:
    // then its type has no relation any more, and the name is looked up again.
    let cached = TYPES
        .with(|types| types.borrow().get(type_name).copied())
        .filter(|oid| unsafe { pg_sys::get_typ_typrelid(*oid) } != pg_sys::InvalidOid);
    let tupdesc = cached
        .and_then(PgTupleDesc::for_composite_type_by_oid)
        .unwrap_or_else(|| {
            let tupdesc = PgTupleDesc::for_composite_type(type_name)
                .unwrap_or_else(|| panic!("orch_lease: type {type_name} is missing"));
            TYPES.with(|types| types.borrow_mut().insert(type_name, tupdesc.oid()));
            tupdesc
        });
    // SAFETY: the values are datums of the type's attributes, in attribute order.
    unsafe { PgHeapTuple::from_datums(tupdesc, values) }
        .unwrap_or_else(|error| panic!("orch_lease: cannot form {type_name}: {error}"))
}

thread_local! {
    /// The role that called orch_lease, while `as_owner` runs statements as the extension's owner.
    static CALLER: Cell<Option<pg_sys::Oid>> = const { Cell::new(None) };
}

/// Runs orch_lease's own statements on its own tables as the extension's owner, with `search_path`
/// pinned to `pg_catalog, pg_temp` — what a SECURITY DEFINER function with a pinned path does, but
/// around these statements only: the stage CAS writes the application's task table outside it, with
/// the caller's own privileges, row-level security and search_path. Roles get orch_lease's functions,
/// never its tables (see `roles`). An error unwinding out of `body` aborts the (sub)transaction,
/// which restores both the user and the setting.
pub fn as_owner<R>(body: impl FnOnce() -> R) -> R {
    let (mut caller, mut context) = (pg_sys::InvalidOid, 0);
    // SAFETY: what fmgr_security_definer does around a SECURITY DEFINER call.
    let nest_level = unsafe {
        pg_sys::GetUserIdAndSecContext(&mut caller, &mut context);
        let nest_level = pg_sys::NewGUCNestLevel();
        pg_sys::set_config_option(
            c"search_path".as_ptr(),
            c"pg_catalog, pg_temp".as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
        pg_sys::SetUserIdAndSecContext(
            extension_owner(),
            context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32,
        );
        nest_level
    };
    // Restored however `body` ends: an error unwinding through here must not leave this caller behind
    // for the next call of the backend (its history would name the wrong role).
    struct RestoreCaller(Option<pg_sys::Oid>);
    impl Drop for RestoreCaller {
        fn drop(&mut self) {
            CALLER.set(self.0);
        }
    }
    let _restore = RestoreCaller(CALLER.replace(Some(CALLER.get().unwrap_or(caller))));
    let result = body();
    unsafe {
        pg_sys::SetUserIdAndSecContext(caller, context);
        pg_sys::AtEOXact_GUC(true, nest_level);
    }
    result
}

/// The role that called orch_lease (the current user outside `as_owner`).
pub fn caller() -> pg_sys::Oid {
    CALLER
        .get()
        .unwrap_or_else(|| unsafe { pg_sys::GetUserId() })
}

/// The owner of the `orch_lease` schema: the role that created the extension.
fn extension_owner() -> pg_sys::Oid {
    unsafe {
        let schema = pg_sys::get_namespace_oid(c"orch_lease".as_ptr(), false);
        let tuple = pg_sys::SearchSysCache1(
            pg_sys::SysCacheIdentifier::NAMESPACEOID as i32,
            schema.into(),
        );
        assert!(
            !tuple.is_null(),
            "orch_lease: its schema has no catalog row"
        );
        let owner =
            (*pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_namespace>(tuple)).nspowner;
        pg_sys::ReleaseSysCache(tuple);
        owner
    }
}
