//! Errors PostgreSQL raises inside orch_lease's statements (the user's CHECK, trigger, grants, row-level
//! security) reach the client whole: with their CONTEXT and the objects they name, which pgrx drops.
use pgrx::{pg_guard, pg_sys, PgLogLevel, PgSqlErrorCode};
use std::cell::Cell;
use std::ffi::{c_char, c_void, CStr};
use std::ptr::null_mut;

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
    // SAFETY: `callback` lives in this frame; `_pop`, made next and dropped before it, takes it off the
    // stack again on return or while unwinding.
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
