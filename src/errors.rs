//! Errors for bad input: each carries a proper SQLSTATE and names the argument at fault.
//! Lost races never come here: they are outcomes (see `races`); errors PostgreSQL raises inside
//! orch_lease's statements are `error_context`'s.
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

/// Longest text accepted for identifiers such as work_item, owner or boot_id, and for stages. It keeps
/// every key well inside a btree entry. (NOTIFY payloads cut every value shorter still: see `events`.)
pub const MAX_TEXT_BYTES: usize = 1024;

/// Raises an ERROR with the given SQLSTATE and message.
pub fn raise(code: PgSqlErrorCode, message: String) -> ! {
    explain(ErrorReport::new(code, message, "orch_lease"))
}

/// Raises an ERROR with a hint (what to do) and, when there is one, a detail (what was found).
pub fn raise_hinted(
    code: PgSqlErrorCode,
    message: String,
    hint: &str,
    detail: Option<String>,
) -> ! {
    let report = ErrorReport::new(code, message, "orch_lease").set_hint(hint);
    explain(match detail {
        Some(detail) => report.set_detail(detail),
        None => report,
    })
}

/// Raises an internal fault (XX000): orch_lease's own statement or row did not behave. The message is
/// short; DETAIL names what failed, never Rust internals.
pub fn internal(what: &str, subject: &str, error: impl std::fmt::Display) -> ! {
    let subject = subject.split_whitespace().collect::<Vec<_>>().join(" ");
    let report = ErrorReport::new(
        PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
        format!("orch_lease: internal error: {what}"),
        "orch_lease",
    )
    .set_detail(format!("{subject}: {error}"));
    explain(report)
}

fn explain(report: ErrorReport) -> ! {
    report.report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// A required text argument: not NULL, not blank, at most `MAX_TEXT_BYTES`.
pub fn required<'a>(argument: &str, value: Option<&'a str>) -> &'a str {
    match value {
        None => raise(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            format!("orch_lease: {argument} must not be NULL"),
        ),
        Some(text) if text.trim().is_empty() => raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("orch_lease: {argument} must not be empty"),
        ),
        Some(text) => bounded(argument, text),
    }
}

/// An optional text argument: NULL is fine, anything given obeys the length bound.
pub fn optional<'a>(argument: &str, value: Option<&'a str>) -> Option<&'a str> {
    value.map(|text| bounded(argument, text))
}

fn bounded<'a>(argument: &str, text: &'a str) -> &'a str {
    at_most(argument, text, MAX_TEXT_BYTES)
}

/// `text` if it is at most `max` bytes long (22001 otherwise).
pub fn at_most<'a>(argument: &str, text: &'a str, max: usize) -> &'a str {
    if text.len() > max {
        raise(
            PgSqlErrorCode::ERRCODE_STRING_DATA_RIGHT_TRUNCATION,
            format!(
                "orch_lease: {argument} is too long ({} bytes, at most {max})",
                text.len()
            ),
        );
    }
    text
}

/// A required text argument that may be empty (a stage): not NULL, at most `MAX_TEXT_BYTES`.
pub fn bounded_present<'a>(argument: &str, value: Option<&'a str>) -> &'a str {
    bounded(argument, present(argument, value))
}

/// A required non-NULL value of any other type.
pub fn present<T>(argument: &str, value: Option<T>) -> T {
    value.unwrap_or_else(|| {
        raise(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            format!("orch_lease: {argument} must not be NULL"),
        )
    })
}

/// A process id: present and positive.
pub fn positive_pid(argument: &str, value: Option<i32>) -> i32 {
    let pid = present(argument, value);
    if pid <= 0 {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("orch_lease: {argument} must be a positive process id, not {pid}"),
        );
    }
    pid
}
