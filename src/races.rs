//! A lost race is an outcome, not an aborted caller: the attempt runs in a subtransaction, and when it
//! loses only the subtransaction is rolled back.
use crate::{error_context, errors};
use pgrx::pg_sys::panic::{CaughtError, ErrorReportWithLevel};
use pgrx::pg_sys::{self, PgTryBuilder};
use pgrx::prelude::*;
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
    // SAFETY: as above; `end` closes it on every path, the error's included.
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

/// Does this transaction keep one snapshot (REPEATABLE READ, SERIALIZABLE)? Then a row committed after
/// that snapshot is not seen, and what depends on it is refused or a `retry`.
pub fn one_snapshot() -> bool {
    // SAFETY: a plain global of the backend (the transaction's isolation level), read on its only thread.
    let level = unsafe { pg_sys::XactIsoLevel };
    level >= pg_sys::XACT_REPEATABLE_READ as i32
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

/// Runs `body` with `lock_timeout` at most `LOCK_WAIT_MS` (the caller's, when it is shorter).
pub fn bounded_lock_wait<R>(body: impl FnOnce() -> R) -> R {
    with_lock_timeout(lock_wait_ms(), body)
}

/// Runs `body` with `lock_timeout` at its least (1 ms): for reads that must never wait, whatever lock
/// they need — acquire's reads of the task table reach its row-level security policies' tables and its
/// TOAST index, which a migration may hold (red team G17, G20). A lock not free gives up with 55P03,
/// which `lost_race_as` answers as a lost race (`busy`).
pub fn at_once<R>(body: impl FnOnce() -> R) -> R {
    with_lock_timeout(1, body)
}

/// Runs `body` with `lock_timeout` = `ms`, and puts the caller's back afterwards, as a function's `SET`
/// clause would; an error's rollback does it too.
fn with_lock_timeout<R>(ms: i32, body: impl FnOnce() -> R) -> R {
    let value = std::ffi::CString::new(ms.to_string()).unwrap_or_default();
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
    // SAFETY: pops the GUC nest level pushed above, as fmgr does after the call.
    unsafe { pg_sys::AtEOXact_GUC(true, nest) };
    result
}

/// Runs `body` in a subtransaction with its lock waits bounded (`bounded_lock_wait`). When a wait runs
/// out, only the subtransaction is rolled back and 55P03 "`what` gave up waiting for another transaction"
/// is raised: its detail names the transactions that hold locks on `tables` (what `body` waits for,
/// `waited_for`), so that on call sees whom to end rather than a hang or a guess (#28, #34).
pub fn naming_holders<R>(
    what: &str,
    (waited_for, tables): (&str, &[&str]),
    hint: &str,
    body: impl FnOnce() -> R,
) -> R {
    let error = match subtransaction(|| bounded_lock_wait(body)) {
        Ok(result) => return result,
        Err(error) => error,
    };
    if report_of(&error).sql_error_code() != PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE {
        error.rethrow();
    }
    error_context::forget_passing();
    errors::raise_hinted(
        PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE,
        format!("orch_lease: {what} gave up waiting for another transaction"),
        hint,
        Some(format!(
            "Waited {LOCK_WAIT_MS} ms at most for a lock {waited_for}. Holding locks on {}: {}.",
            tables.join(", "),
            holders(tables).unwrap_or_else(|| "none any more (it has ended: call again)".into())
        )),
    )
}

/// The sessions (pid, role, state) and prepared transactions that hold a lock on one of `tables` that
/// only writers and row lockers take, this session aside. Read as the caller, so pg_stat_activity shows
/// it what it shows the caller; every name is qualified (a hostile search_path reaches nothing here).
fn holders(tables: &[&str]) -> Option<String> {
    Spi::get_one_with_args::<String>(
        "SELECT pg_catalog.string_agg(holder, '; ' ORDER BY holder) FROM (
           SELECT DISTINCT CASE WHEN l.pid IS NULL
                  THEN pg_catalog.format('prepared transaction %L (owner %s, prepared %s)',
                                         p.gid, p.owner, p.prepared)
                  ELSE pg_catalog.format('pid %s (role %s, %s, transaction started %s)', l.pid,
                                         a.usename, coalesce(a.state, 'state not shown to you'),
                                         coalesce(a.xact_start::pg_catalog.text, '?'))
                  END AS holder
             FROM pg_catalog.pg_locks l
             LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid OPERATOR(pg_catalog.=) l.pid
             LEFT JOIN pg_catalog.pg_locks x ON l.pid IS NULL AND x.pid IS NULL
                  AND x.locktype OPERATOR(pg_catalog.=) 'transactionid'
                  AND x.virtualtransaction OPERATOR(pg_catalog.=) l.virtualtransaction
             LEFT JOIN pg_catalog.pg_prepared_xacts p
                  ON p.transaction OPERATOR(pg_catalog.=) x.transactionid
            WHERE l.locktype OPERATOR(pg_catalog.=) 'relation' AND l.granted
              AND l.mode OPERATOR(pg_catalog.<>) 'AccessShareLock'
              AND l.relation OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.regclass[])
              AND l.database OPERATOR(pg_catalog.=) (SELECT d.oid FROM pg_catalog.pg_database d
                   WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())
              AND (l.pid IS NULL OR l.pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid())) h",
        &[tables.to_vec().into()],
    )
    .ok()
    .flatten()
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
