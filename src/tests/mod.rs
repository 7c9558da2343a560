//! In-process tests: each runs inside one backend, in a transaction the harness rolls back.
//! Races between sessions are tested from outside, with real connections (`tests/`).
mod config;
mod events;
mod lease;
mod recovery;
mod roles;
mod stage_cas;
mod stage_rules;

use crate::races;
pub use pgrx::prelude::*;
pub use pgrx::PgSqlErrorCode;

/// The single value `sql` returns.
pub fn one<T: IntoDatum + FromDatum>(sql: &str) -> Option<T> {
    Spi::get_one::<T>(sql).unwrap_or_else(|error| panic!("{sql}: {error}"))
}

/// Runs a statement that must succeed.
pub fn run(sql: &str) {
    Spi::run(sql).unwrap_or_else(|error| panic!("{sql}: {error}"));
}

/// The SQLSTATE that `sql` raises (it must raise), and its message. Runs in a subtransaction, so the
/// test's transaction carries on.
pub fn error_of(sql: &str) -> (PgSqlErrorCode, String) {
    match races::subtransaction(|| Spi::run(sql)) {
        Ok(_) => panic!("expected an error from: {sql}"),
        Err(error) => {
            let report = races::report_of(&error);
            (report.sql_error_code(), report.message().to_string())
        }
    }
}

/// Asserts `sql` fails with `code` and a message containing `needle`.
pub fn assert_error(sql: &str, code: PgSqlErrorCode, needle: &str) {
    let (actual, message) = error_of(sql);
    assert_eq!(actual, code, "{sql} raised {actual:?}: {message}");
    assert!(
        message.contains(needle),
        "{sql}: message {message:?} lacks {needle:?}"
    );
}

/// `transition_lease_acquire(...)` as `outcome|token-or-empty|holder-or-empty`.
pub fn acquire(item: &str, owner: &str, boot: &str) -> String {
    one::<String>(&format!(
        "SELECT concat_ws('|', g.outcome, coalesce(g.token::text, ''), coalesce(g.holder, ''))
           FROM orch_lease.transition_lease_acquire('{item}', '{owner}', 4242, '{boot}') g"
    ))
    .unwrap()
}

/// The token of a fresh grant (panics unless acquired).
pub fn token_of(item: &str, owner: &str, boot: &str) -> i64 {
    let grant = acquire(item, owner, boot);
    let mut parts = grant.split('|');
    assert_eq!(parts.next(), Some("acquired"), "{grant}");
    parts.next().unwrap().parse().unwrap()
}

/// A task table `tasks(id bigint, stage <stage_type>)` with rows, registered with orch_lease.
pub fn tasks(stage_type: &str, rows: &[(i64, &str)]) {
    run(&format!(
        "CREATE TABLE public.tasks (id bigint PRIMARY KEY, stage {stage_type} NOT NULL)"
    ));
    for (id, stage) in rows {
        run(&format!(
            "INSERT INTO public.tasks VALUES ({id}, '{stage}')"
        ));
    }
    run("SELECT orch_lease.register_task_table('public.tasks')");
}

/// `update_task_stage_cas` / `commit_stage_cas` result as `applied|outcome|current_stage`.
pub fn cas(call: &str) -> String {
    one::<String>(&format!(
        "SELECT concat_ws('|', r.applied::text, r.outcome, coalesce(r.current_stage, '')) FROM {call} r"
    ))
    .unwrap()
}

pub fn stage_of(id: i64) -> String {
    one::<String>(&format!(
        "SELECT stage::text FROM public.tasks WHERE id = {id}"
    ))
    .unwrap()
}

/// The history's takeovers: the events that are always recorded and announced.
pub const TAKEOVERS: &str =
    "orch_lease.lease_event WHERE event IN ('reclaimed', 'reaped', 'forced')";

pub fn count(sql_from_where: &str) -> i64 {
    one::<i64>(&format!("SELECT count(*) FROM {sql_from_where}")).unwrap()
}
