//! A lost race is an outcome, not an aborted caller: the attempt runs in a subtransaction, and when it
//! loses only the subtransaction is rolled back.
use crate::error_context;
use pgrx::pg_sys::panic::{CaughtError, ErrorReportWithLevel};
use pgrx::pg_sys::{self, PgTryBuilder};
use pgrx::PgSqlErrorCode;
use std::panic::AssertUnwindSafe;

/// How an attempt lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lost {
    /// A lock could not be taken: NOWAIT, or the caller's `lock_timeout` ran out. Someone is there.
    Locked,
    /// A serialization failure (REPEATABLE READ / SERIALIZABLE) or a deadlock: nothing can be said
    /// about the others, only that this attempt must run again (in a new transaction at RR / SER).
    Conflict,
}

impl Lost {
    fn of(code: PgSqlErrorCode) -> Option<Lost> {
        match code {
            PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE => Some(Lost::Locked),
            PgSqlErrorCode::ERRCODE_T_R_SERIALIZATION_FAILURE
            | PgSqlErrorCode::ERRCODE_T_R_DEADLOCK_DETECTED => Some(Lost::Conflict),
            _ => None,
        }
    }
}

/// Runs `body` in a subtransaction. When it loses a race, only the subtransaction is rolled back and
/// `lost` gives the outcome, so the caller's transaction stays usable. Any other error propagates.
pub fn lost_race_as<R>(body: impl FnOnce() -> R, lost: impl FnOnce(Lost) -> R) -> R {
    match subtransaction(body) {
        Ok(result) => result,
        Err(error) => match lost_of(&error) {
            Some(how) => {
                error_context::forget_passing();
                lost(how)
            }
            None => error.rethrow(),
        },
    }
}

/// How a caught error lost a race, if it is one.
pub fn lost_of(error: &CaughtError) -> Option<Lost> {
    Lost::of(report_of(error).sql_error_code())
}

/// Runs `body` in a subtransaction: committed into the caller's transaction when it returns, rolled
/// back alone when it raises, the error then handed back.
pub fn subtransaction<R>(body: impl FnOnce() -> R) -> Result<R, Box<CaughtError>> {
    in_subtransaction(body, true)
}

/// Runs `body` in a subtransaction that is rolled back however it ends: what it saw is kept, what it
/// did (a row lock taken to look) is not.
pub fn probe<R>(body: impl FnOnce() -> R) -> Result<R, Box<CaughtError>> {
    in_subtransaction(body, false)
}

fn in_subtransaction<R>(body: impl FnOnce() -> R, keep: bool) -> Result<R, Box<CaughtError>> {
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
        end(keep);
        Ok(result)
    });
    PgTryBuilder::new(attempt)
        .catch_others(move |error| {
            error_context::keeping_passing(|| end(false));
            Err(Box::new(error))
        })
        .execute()
}

/// The longest orch_lease waits for a lock another transaction holds where waiting is allowed (recover,
/// takeover, force_release): long enough for any acquire or commit in flight, short enough that a
/// transaction left idle or prepared while holding one is an answer, not a hang (#29).
pub const LOCK_WAIT_MS: i32 = 5_000;

/// `LOCK_WAIT_MS`, or the caller's `lock_timeout` when it is shorter.
pub fn lock_wait_ms() -> i32 {
    // SAFETY: the backend's own setting.
    match unsafe { pg_sys::LockTimeout } {
        callers @ 1..LOCK_WAIT_MS => callers,
        _ => LOCK_WAIT_MS,
    }
}

/// Runs `body` with `lock_timeout` at most `LOCK_WAIT_MS` (the caller's, when it is shorter), and puts
/// the caller's back afterwards, as a function's `SET` clause would; an error's rollback does it too.
pub fn bounded_lock_wait<R>(body: impl FnOnce() -> R) -> R {
    let value = std::ffi::CString::new(lock_wait_ms().to_string()).unwrap_or_default();
    // SAFETY: the backend's own GUC stack, used as fmgr does for a function's SET clause.
    let nest = unsafe {
        let nest = pg_sys::NewGUCNestLevel();
        pg_sys::set_config_option(
            c"lock_timeout".as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
        nest
    };
    let result = body();
    unsafe { pg_sys::AtEOXact_GUC(true, nest) };
    result
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
