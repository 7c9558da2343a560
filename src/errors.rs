//! Errors for bad input: each carries a proper SQLSTATE and names the argument at fault.
//! Lost races never come here: they are outcomes (see `races`). And errors PostgreSQL raises inside
//! orch_lease's statements (the user's CHECK, trigger, grants, row-level security), which must reach the
//! client whole.
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{pg_guard, pg_sys, PgLogLevel, PgSqlErrorCode};
use std::cell::Cell;
use std::ffi::{c_char, c_void, CStr};
use std::ptr::null_mut;

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

// pgrx turns a PostgreSQL error raised inside an SPI call into a Rust panic and raises it again at the
// function's boundary with its SQLSTATE, message, detail and hint, but without its CONTEXT and without
// the schema, table, column, data type and constraint it names. `keeping_context` notes the whole error
// as it passes one of orch_lease's statements; `restore`, PostgreSQL's emit_log_hook, puts back what
// pgrx left out when that error is reported.

thread_local! {
    /// The last error that passed one of orch_lease's statements, copied whole into `PASSING_MEMORY`.
    static PASSING: Cell<*mut pg_sys::ErrorData> = const { Cell::new(null_mut()) };
    /// Holds that one copy only: emptied before each copy and whenever it is forgotten, so nothing
    /// accumulates however many errors pass.
    static PASSING_MEMORY: Cell<pg_sys::MemoryContext> = const { Cell::new(null_mut()) };
}

static mut PREVIOUS_HOOK: pg_sys::emit_log_hook_type = None;

/// Installs `restore` (from _PG_init).
pub fn init() {
    // SAFETY: the backend is single-threaded; the hook chain is PostgreSQL's convention.
    unsafe {
        PREVIOUS_HOOK = pg_sys::emit_log_hook;
        pg_sys::emit_log_hook = Some(restore);
        pg_sys::RegisterSubXactCallback(Some(forget_at_subtransaction_abort), null_mut());
        pg_sys::RegisterXactCallback(Some(forget_at_transaction_end), null_mut());
    }
}

/// An error caught (an EXCEPTION block, a lost race given as an outcome) is never reported: the copy
/// noted on its way must not be attached to a later error that merely has the same text.
pub fn forget_passing() {
    PASSING.set(null_mut());
    let memory = PASSING_MEMORY.get();
    if !memory.is_null() {
        // SAFETY: our own context; nothing else points into it once PASSING is cleared.
        unsafe { pg_sys::MemoryContextReset(memory) };
    }
}

/// Runs `rollback` (a subtransaction rolled back before its error is raised again) keeping the error
/// noted, so that it is still restored when reported.
pub fn keeping_passing(rollback: impl FnOnce()) {
    let (passing, memory) = (PASSING.take(), PASSING_MEMORY.take());
    rollback();
    PASSING.set(passing);
    let noted_meanwhile = PASSING_MEMORY.replace(memory);
    if !noted_meanwhile.is_null() {
        // SAFETY: a context created by an error noted during the rollback, referenced by nothing now.
        unsafe { pg_sys::MemoryContextDelete(noted_meanwhile) };
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn forget_at_subtransaction_abort(
    event: pg_sys::SubXactEvent::Type,
    _mine: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut c_void,
) {
    if event == pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB {
        forget_passing();
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn forget_at_transaction_end(
    _event: pg_sys::XactEvent::Type,
    _arg: *mut c_void,
) {
    forget_passing();
}

/// Runs one SPI statement with an error context callback that notes any error raised inside it.
pub fn keeping_context<R>(statement: impl FnOnce() -> R) -> R {
    /// Takes the callback off the stack on return and while unwinding alike.
    struct Pop(*mut pg_sys::ErrorContextCallback);
    impl Drop for Pop {
        fn drop(&mut self) {
            // SAFETY: the callback lives in the caller's frame, which outlives this guard.
            unsafe { pg_sys::error_context_stack = (*self.0).previous };
        }
    }
    // SAFETY: error_context_stack is the backend's; the callback is popped before its frame ends.
    let mut callback = pg_sys::ErrorContextCallback {
        previous: unsafe { pg_sys::error_context_stack },
        callback: Some(note_passing),
        arg: null_mut(),
    };
    unsafe { pg_sys::error_context_stack = &mut callback };
    let _pop = Pop(&mut callback);
    statement()
}

/// Called by errfinish after the callbacks above ours (the statement's, a trigger's) added their
/// context: keeps a copy of the error as it stands.
#[pg_guard]
unsafe extern "C-unwind" fn note_passing(_arg: *mut c_void) {
    // SAFETY: inside errfinish the error being raised is on PostgreSQL's error stack.
    unsafe {
        forget_passing();
        let mut memory = PASSING_MEMORY.get();
        if memory.is_null() {
            memory = pg_sys::AllocSetContextCreateExtended(
                pg_sys::TopMemoryContext,
                c"orch_lease passing error".as_ptr(),
                pg_sys::ALLOCSET_SMALL_MINSIZE as usize,
                pg_sys::ALLOCSET_SMALL_INITSIZE as usize,
                pg_sys::ALLOCSET_SMALL_MAXSIZE as usize,
            );
            PASSING_MEMORY.set(memory);
        }
        let previous = pg_sys::MemoryContextSwitchTo(memory);
        PASSING.set(pg_sys::CopyErrorData());
        pg_sys::MemoryContextSwitchTo(previous);
    }
}

/// When the error pgrx raised again is reported, it takes back the context and the object names of
/// the error as PostgreSQL raised it (same SQLSTATE, same message). pgrx raises again at ERROR only: a
/// FATAL is PostgreSQL's own, reported at once and whole.
#[pg_guard]
unsafe extern "C-unwind" fn restore(edata: *mut pg_sys::ErrorData) {
    // SAFETY: PostgreSQL passes the error being reported; strings are copied into its memory context.
    unsafe {
        name_non_utf8_argument(edata);
        let passed = PASSING.get();
        if !passed.is_null() && (*edata).elevel == PgLogLevel::ERROR as i32 && same(edata, passed) {
            let (to, from) = (&mut *edata, &*passed);
            to.context = joined(from.context, to.context);
            for (field, value) in [
                (&mut to.schema_name, from.schema_name),
                (&mut to.table_name, from.table_name),
                (&mut to.column_name, from.column_name),
                (&mut to.datatype_name, from.datatype_name),
                (&mut to.constraint_name, from.constraint_name),
            ] {
                if field.is_null() && !value.is_null() {
                    *field = pg_sys::pstrdup(value);
                }
            }
            forget_passing();
        }
        if let Some(previous) = PREVIOUS_HOOK {
            previous(edata);
        }
    }
}

/// How pgrx's conversion of a text argument to `&str` panics when the argument is not UTF-8 (in a database
/// whose encoding is not UTF8, SQL_ASCII takes any byte), before any code of orch_lease runs.
const NOT_UTF8_PANIC: &[u8] = b"datums converted to &str should be valid UTF-8";

/// Reports that panic as what it is, 22021 in orch_lease's words, instead of an internal error showing
/// a Rust `Utf8Error`. A PL/pgSQL `EXCEPTION` block, which sees the error before it is reported, still
/// sees XX000 (docs/sql-reference.md).
unsafe fn name_non_utf8_argument(edata: *mut pg_sys::ErrorData) {
    // SAFETY: a valid ErrorData; strings are copied into the current (error) memory context.
    unsafe {
        let edata = &mut *edata;
        if edata.elevel != PgLogLevel::ERROR as i32
            || edata.sqlerrcode != PgSqlErrorCode::ERRCODE_INTERNAL_ERROR as i32
            || edata.message.is_null()
            || !CStr::from_ptr(edata.message)
                .to_bytes()
                .starts_with(NOT_UTF8_PANIC)
        {
            return;
        }
        let encoding = CStr::from_ptr(pg_sys::GetDatabaseEncodingName()).to_string_lossy();
        let text = |text: String| {
            pg_sys::pstrdup(std::ffi::CString::new(text).unwrap_or_default().as_ptr())
        };
        edata.sqlerrcode = PgSqlErrorCode::ERRCODE_CHARACTER_NOT_IN_REPERTOIRE as i32;
        edata.message = text("orch_lease: a text argument is not valid UTF-8".into());
        edata.detail = text(format!(
            "The database encoding is {encoding}; orch_lease reads its text arguments as UTF-8."
        ));
        edata.hint = text("Pass work items, owners, boot ids and stages as ASCII or UTF-8.".into());
    }
}

/// One error: the same SQLSTATE and message.
unsafe fn same(a: *const pg_sys::ErrorData, b: *const pg_sys::ErrorData) -> bool {
    // SAFETY: both are valid ErrorData; messages may be NULL.
    unsafe {
        (*a).sqlerrcode == (*b).sqlerrcode
            && !(*a).message.is_null()
            && !(*b).message.is_null()
            && CStr::from_ptr((*a).message) == CStr::from_ptr((*b).message)
    }
}

/// The inner context (the statement's, a trigger's) first, then what the callers above added.
unsafe fn joined(inner: *const c_char, outer: *mut c_char) -> *mut c_char {
    // SAFETY: NULL or valid C strings.
    unsafe {
        match (inner.is_null(), outer.is_null()) {
            (true, _) => outer,
            (false, true) => pg_sys::pstrdup(inner),
            (false, false) => {
                let text = format!(
                    "{}\n{}",
                    CStr::from_ptr(inner).to_string_lossy(),
                    CStr::from_ptr(outer).to_string_lossy()
                );
                let text = std::ffi::CString::new(text).unwrap_or_default();
                pg_sys::pstrdup(text.as_ptr())
            }
        }
    }
}
