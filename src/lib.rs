//! orch_lease: owner-exclusion and atomic stage writes for workflow orchestrators, inside PostgreSQL.
//!
//! Two layers, both reachable through plain SQL from any language:
//! - a durable *transition lease* per work item (`lease`), whose owner liveness is the owner's boot
//!   incarnation (`recovery`) rather than a heartbeat;
//! - an *expected-stage compare-and-swap* on the application's own task table (`stage_cas`).
//!
//! Everything lives in the `orch_lease` schema. `recovery` also holds the reaper; `config` the
//! kill-switch, scope and history GUCs; `events` the lease history, its NOTIFY, the status view and
//! the metrics; `stage_rules` the stage graph and the bypass guard; `roles` the grants; `errors` the
//! SQLSTATE-carrying input errors; and `guard` the machinery shared by every function (cached plans,
//! lost-race handling, running orch_lease's own statements as the extension's owner).
use pgrx::prelude::*;

mod config;
mod errors;
mod events;
mod guard;
mod lease;
mod recovery;
mod roles;
mod stage_cas;
mod stage_rules;

::pgrx::pg_module_magic!(name, version);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    config::init();
    stage_cas::init();
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
