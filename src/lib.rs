//! orch_lease: owner-exclusion and atomic stage writes for workflow orchestrators, inside PostgreSQL.
//!
//! Two layers, both reachable through plain SQL from any language:
//! - a durable *transition lease* per work item (`lease`), whose owner liveness is the owner's boot
//!   incarnation (`recovery`) rather than a heartbeat;
//! - an *expected-stage compare-and-swap* on the application's own task table (`stage_cas`).
//!
//! Data flows one way. `task_table` describes the registered table and keys work items; `lease` is the
//! only writer of leases, `recovery` of boots, `events` of the history (and its alerts); `stage_cas`
//! writes the task table, `stage_rules` checks writes against the stage graph and the bypass guard;
//! `status` only reads (status view, history view, metrics). Shared machinery: `plans` (cached
//! statements), `races` (a lost race as an outcome), `rows` (reading and forming rows), `owner` (the
//! switch to the extension's owner), `errors` (SQLSTATEs for bad input), `error_context` (an error
//! raised inside orch_lease's statements reaches the client whole), `config` (GUCs), `switch` (the
//! database's kill-switch, read by `config::enabled`), `roles` (grants).
use pgrx::prelude::*;

mod config;
mod error_context;
mod errors;
mod events;
mod lease;
mod owner;
mod plans;
mod races;
mod recovery;
mod roles;
mod rows;
mod stage_cas;
mod stage_rules;
mod status;
mod switch;
mod task_table;

::pgrx::pg_module_magic!(name, version);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // Errors reach the client as PostgreSQL raised them: never with a Rust backtrace in DETAIL, whatever
    // RUST_BACKTRACE says in the server's environment (std reads this before RUST_BACKTRACE, once).
    // SAFETY: the backend is single-threaded while a library loads.
    unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    config::init();
    // SAFETY: from _PG_init, once per backend; the callback is a function of this library, loaded for
    // the backend's life, and touches thread-locals only.
    unsafe {
        pg_sys::CacheRegisterRelcacheCallback(Some(relcache_invalidated), pg_sys::Datum::from(0))
    };
    task_table::init();
    error_context::init();
}

/// The library's one relation cache callback, for every cache it keeps: a backend has room for ten
/// (PostgreSQL 15), and core and Citus take most of them (a callback more was FATAL under Citus).
#[pg_guard]
unsafe extern "C-unwind" fn relcache_invalidated(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    switch::invalidated(relid);
    task_table::forget_task_table(relid);
    lease::mark_invalidated(relid);
    events::counters_invalidated(relid);
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}

#[cfg(any(test, feature = "pg_test"))]
mod tests;
