//! GUCs: the kill-switch, the lease scope list and the lease history's extent and retention. All are
//! superuser-set (PGC_SUSET), so an ordinary actor role can neither switch the lease off for itself,
//! exempt its own scope, nor hide its own events from the history.
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::PostgresGucEnum;
use std::ffi::CString;

static ENABLED: GucSetting<bool> = GucSetting::<bool>::new(true);
static SCOPES: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static HISTORY: GucSetting<History> = GucSetting::<History>::new(History::Changes);
static HISTORY_RETENTION: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"7 days"));

/// What the lease history records.
#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq)]
pub enum History {
    /// Every grant, refusal, release, takeover and stage CAS.
    #[name = c"all"]
    All,
    /// All but the `held` and `busy` refusals: a polling fleet does not become a history write load.
    #[name = c"changes"]
    Changes,
    /// Only leases taken away from their holder (reclaimed, reaped, forced): what alerts are made of.
    #[name = c"takeovers"]
    Takeovers,
}

pub fn init() {
    GucRegistry::define_bool_guc(
        c"orch_lease.enabled",
        c"Kill-switch of orch_lease: off makes the lease inert and the stage CAS an unconditional write.",
        c"When off, transition_lease_acquire grants without writing (outcome 'disabled') and \
          update_task_stage_cas / commit_stage_cas write the stage exactly as a bare UPDATE would \
          (outcome 'unconditional'). The database's switch, orch_lease.set_enabled(false, reason), turns \
          every session off at its next call whatever this says: off wins.",
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
    GucRegistry::define_enum_guc(
        c"orch_lease.history",
        c"What the lease history (orch_lease.lease_event) records: changes, all or takeovers.",
        c"changes (the default) records every grant, release, takeover and stage CAS and the superseded and \
          retry refusals; all adds the held and busy refusals; takeovers records only leases taken away from \
          their holder, which are always recorded and announced. The metrics count every event whatever this says.",
        &HISTORY,
        GucContext::Suset,
        GucFlags::default(),
    );
    // SAFETY: the check hook is guarded (#[pg_guard]) and catches the interval parser's errors itself.
    unsafe {
        GucRegistry::define_string_guc_with_hooks(
            c"orch_lease.history_retention",
            c"How long transition_lease_prune keeps lease history by default (an interval).",
            c"Events older than this are removed by orch_lease.transition_lease_prune(); the counters the \
              metrics report are kept apart and never go down.",
            &HISTORY_RETENTION,
            GucContext::Suset,
            GucFlags::default(),
            Some(check_retention),
            None,
            None,
        )
    };
    reserve_prefix();
}

/// `orch_lease.history_retention` must be a non-negative interval, refused when it is SET (22023), not
/// when the hourly prune runs into it.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn check_retention(
    value: *mut *mut std::ffi::c_char,
    _extra: *mut *mut std::ffi::c_void,
    _source: pgrx::pg_sys::GucSource::Type,
) -> bool {
    use pgrx::pg_sys::{self, PgTryBuilder};
    // SAFETY: PostgreSQL's GUC machinery passes a valid pointer to the proposed value (a C string or
    // NULL), alive for the hook's call.
    let text = unsafe { *value };
    if text.is_null() {
        return true;
    }
    // SAFETY: interval_in on that non-NULL C string, alive for the call; its ERROR is caught below.
    let interval = PgTryBuilder::new(|| unsafe {
        pgrx::direct_function_call::<pgrx::datum::Interval>(
            pg_sys::interval_in,
            &[
                Some(pg_sys::Datum::from(text)),
                Some(pg_sys::Datum::from(pg_sys::InvalidOid)),
                Some(pg_sys::Datum::from(-1i32)),
            ],
        )
    })
    .catch_others(|_| None)
    .execute();
    let problem = match interval {
        None => c"It must be an interval, such as '7 days'.",
        Some(interval) if interval.is_negative() => c"It must not be negative.",
        Some(_) => return true,
    };
    // SAFETY: what GUC_check_errdetail does: a copy palloc'd in the hook's memory context, which the
    // GUC machinery reads when it reports the failed check.
    unsafe { pg_sys::GUC_check_errdetail_string = pg_sys::pstrdup(problem.as_ptr()) };
    false
}

/// `orch_lease.*` names only the settings above: a typo (`orch_lease.enable`) is an error, not a
/// silently ignored placeholder.
#[cfg(feature = "pg14")]
fn reserve_prefix() {
    // SAFETY: from _PG_init, after the settings are defined; the name is a static C string.
    unsafe { pgrx::pg_sys::EmitWarningsOnPlaceholders(c"orch_lease".as_ptr()) }
}

#[cfg(not(feature = "pg14"))]
fn reserve_prefix() {
    // SAFETY: from _PG_init, after the settings are defined; the name is a static C string.
    unsafe { pgrx::pg_sys::MarkGUCPrefixReserved(c"orch_lease".as_ptr()) }
}

/// What the history records.
pub fn history() -> History {
    HISTORY.get()
}

/// Is orch_lease on for this call? Only when both switches are: the database's (`set_enabled`, every
/// session) and this session's `orch_lease.enabled`. Off wins, wherever it is said.
pub fn enabled() -> bool {
    ENABLED.get() && crate::switch::enabled()
}

/// `orch_lease.enabled` as this session has it (ALTER SYSTEM, DATABASE or ROLE … SET, or SET).
pub fn session_enabled() -> bool {
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
