//! GUCs: the kill-switch and the lease scope list. Both are superuser-set (PGC_SUSET), so an ordinary
//! actor role can neither switch the lease off for itself nor exempt its own scope.
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use std::ffi::CString;

static ENABLED: GucSetting<bool> = GucSetting::<bool>::new(true);
static SCOPES: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

pub fn init() {
    GucRegistry::define_bool_guc(
        c"orch_lease.enabled",
        c"Kill-switch of orch_lease: off makes the lease inert and the stage CAS an unconditional write.",
        c"When off, transition_lease_acquire grants without writing (outcome 'disabled') and \
          update_task_stage_cas / commit_stage_cas write the stage exactly as a bare UPDATE would \
          (outcome 'unconditional').",
        &ENABLED,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"orch_lease.scopes",
        c"Comma-separated scopes that orch_lease covers; empty covers every scope.",
        c"An acquire whose scope is not listed is granted without a lease (outcome 'out_of_scope'). \
          An acquire without a scope (NULL) is always covered.",
        &SCOPES,
        GucContext::Suset,
        GucFlags::default(),
    );
}

/// Is the kill-switch on (orch_lease active)?
pub fn enabled() -> bool {
    ENABLED.get()
}

/// Does `orch_lease.scopes` cover this scope? A NULL scope and an empty list are always covered.
pub fn covers_scope(scope: Option<&str>) -> bool {
    let (Some(scope), Some(list)) = (scope, SCOPES.get()) else {
        return true;
    };
    let list = list.to_string_lossy();
    list.trim().is_empty() || list.split(',').any(|listed| listed.trim() == scope)
}
