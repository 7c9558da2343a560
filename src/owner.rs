//! The owner switch: orch_lease's own statements on its own tables run as the extension's owner, with
//! `search_path` pinned — what a SECURITY DEFINER function with a pinned path does, but around those
//! statements only. Everything else (the CAS's write of the application's task table, the id type's
//! conversions, the bypass guard) runs as the caller. Inside the switch, only orch_lease's own SQL on
//! its own tables runs: never a user's operator, cast, trigger or output function.
use crate::errors;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;
use std::cell::Cell;

thread_local! {
    /// The role that called orch_lease, while `as_owner` runs statements as the extension's owner.
    static CALLER: Cell<Option<pg_sys::Oid>> = const { Cell::new(None) };
    /// The extension's owner and schema, as last read and checked.
    static OWNER: Cell<Option<(pg_sys::Oid, pg_sys::Oid)>> = const { Cell::new(None) };
}

/// Runs `body` as the extension's owner with `search_path = pg_catalog, pg_temp`. An error unwinding
/// out of `body` aborts the (sub)transaction, which restores both the user and the setting.
pub fn as_owner<R>(body: impl FnOnce() -> R) -> R {
    let owner = extension_owner();
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
            owner,
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
    // SAFETY: undoes the switch above, as fmgr_security_definer does after the call.
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
        // SAFETY: a plain read of the backend's current user.
        .unwrap_or_else(|| unsafe { pg_sys::GetUserId() })
}

/// The name of the role that called orch_lease: what a lease and the history record.
pub fn caller_name() -> String {
    role_name(caller())
}

/// A role's name (roles are recorded by name: oids do not survive a dump and restore).
pub fn role_name(role: pg_sys::Oid) -> String {
    // SAFETY: a catalog cache look-up (a missing role raises); the palloc'd name is copied at once.
    let name = unsafe { pg_sys::GetUserNameFromId(role, false) };
    unsafe { std::ffi::CStr::from_ptr(name) }
        .to_string_lossy()
        .into_owned()
}

/// Is the caller a member of `role` (directly or not)? False when the role does not exist.
pub fn caller_is_member_of(role: &std::ffi::CStr) -> bool {
    // SAFETY: catalog cache look-ups by a name borrowed for the call and by role oids.
    let oid = unsafe { pg_sys::get_role_oid(role.as_ptr(), true) };
    oid != pg_sys::InvalidOid && unsafe { pg_sys::has_privs_of_role(caller(), oid) }
}

/// The role that owns the extension (`pg_extension.extowner`) — not the owner of the schema. The schema
/// named `orch_lease`, which every statement names, must be the extension's own and owned by that role:
/// a schema someone else created beforehand, or swapped in by a rename, is refused.
fn extension_owner() -> pg_sys::Oid {
    // SAFETY: a catalog cache look-up by a static name; missing is InvalidOid.
    let named = unsafe { pg_sys::get_namespace_oid(c"orch_lease".as_ptr(), true) };
    // The fast path: the same schema as last time, still owned by the same role. A dropped and created
    // again extension has a new schema (it is the extension's member), so it takes the slow path.
    if let Some((owner, schema)) = OWNER.get() {
        if schema == named && schema_owner(schema) == Some(owner) {
            return owner;
        }
    }
    // SAFETY: a catalog look-up by a static name; missing is InvalidOid.
    let extension = unsafe { pg_sys::get_extension_oid(c"orch_lease".as_ptr(), true) };
    let (owner, schema, version) = read_extension(extension);
    // An update script of an earlier release may call this library while ALTER EXTENSION … UPDATE
    // chains through it (0.3.0 -> 0.4.0 keys leases with work_item_key): the catalog then names that
    // step's version, not this library's. Only the extension's own scripts run in that state.
    // SAFETY: two plain globals of the backend, read on its only thread.
    let own_script =
        unsafe { pg_sys::creating_extension && pg_sys::CurrentExtensionObject == extension };
    if version != env!("CARGO_PKG_VERSION") && !own_script {
        errors::raise_hinted(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!(
                "orch_lease: the installed library is {}, the extension in this database is {version}",
                env!("CARGO_PKG_VERSION")
            ),
            "Run ALTER EXTENSION orch_lease UPDATE in this database.",
            None,
        );
    }
    if named != schema || schema_owner(schema) != Some(owner) {
        errors::raise_hinted(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            "orch_lease: the schema orch_lease is not the extension's own".into(),
            "It must be the schema CREATE EXTENSION orch_lease made, owned by the role that created the \
             extension. Ask a superuser to check pg_namespace and pg_extension.",
            None,
        );
    }
    // Cached only for this library's own version: an update that stops half-way is looked at again.
    if version == env!("CARGO_PKG_VERSION") {
        OWNER.set(Some((owner, schema)));
    }
    owner
}

/// The extension's owner, schema and version, read as the caller: pg_extension is readable by everyone,
/// and the operator is spelled out so that nothing in the caller's search_path can stand in for it.
fn read_extension(extension: pg_sys::Oid) -> (pg_sys::Oid, pg_sys::Oid, String) {
    Spi::get_three_with_args::<pg_sys::Oid, pg_sys::Oid, String>(
        "SELECT extowner, extnamespace, extversion FROM pg_catalog.pg_extension
          WHERE oid OPERATOR(pg_catalog.=) $1",
        &[extension.into()],
    )
    .ok()
    .and_then(|(owner, schema, version)| Some((owner?, schema?, version?)))
    .unwrap_or_else(|| errors::internal("the extension has no catalog row", "orch_lease", ""))
}

/// The owner of a schema, from the catalog cache.
fn schema_owner(schema: pg_sys::Oid) -> Option<pg_sys::Oid> {
    // SAFETY: a pinned catalog cache tuple, NULL-checked, read as a pg_namespace row and released.
    unsafe {
        let tuple = pg_sys::SearchSysCache1(
            pg_sys::SysCacheIdentifier::NAMESPACEOID as i32,
            schema.into(),
        );
        if tuple.is_null() {
            return None;
        }
        let owner =
            (*pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_namespace>(tuple)).nspowner;
        pg_sys::ReleaseSysCache(tuple);
        Some(owner)
    }
}
