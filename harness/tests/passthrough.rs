//! Errors PostgreSQL raises inside orch_lease — the user's CHECK, a varchar's length, the user's trigger,
//! a missing UPDATE grant, row-level security — reach the client as PostgreSQL raised them: SQLSTATE,
//! message, detail, hint, context and the table and constraint named, never anything of Rust (make test's
//! server runs with RUST_BACKTRACE=1 in its environment).
mod common;
use common::*;
use postgres::error::DbError;

const TASKS: &str = "CREATE TABLE tasks (id text PRIMARY KEY, stage varchar(8) NOT NULL CHECK (stage <> 'banned'));
     INSERT INTO tasks SELECT 'task-' || i, 'queued' FROM generate_series(1, 10) i;
     SELECT orch_lease.register_task_table('tasks');
     CREATE FUNCTION refuse_stage() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
         RAISE EXCEPTION 'stage % refused', NEW.stage USING DETAIL = 'by the trigger', HINT = 'ask the owner';
     END $$;
     CREATE TRIGGER refuse_stage BEFORE UPDATE ON tasks FOR EACH ROW
         WHEN (NEW.stage = 'trigger') EXECUTE FUNCTION refuse_stage();
     ALTER TABLE tasks ENABLE ROW LEVEL SECURITY;
     CREATE POLICY everyone ON tasks USING (true) WITH CHECK (stage <> 'hidden');";

/// The error a CAS to `stage` raises, as the client receives it.
fn cas_error(db: &mut postgres::Client, stage: &str) -> DbError {
    db.query_one(
        "SELECT * FROM orch_lease.update_task_stage_cas('task-1', 'queued', $1)",
        &[&stage],
    )
    .expect_err("the CAS must fail")
    .as_db_error()
    .expect("a database error")
    .clone()
}

fn no_rust(error: &DbError) {
    for text in [
        Some(error.message()),
        error.detail(),
        error.hint(),
        error.where_(),
    ]
    .into_iter()
    .flatten()
    {
        assert!(
            !text.contains(".rs:") && !text.contains("backtrace"),
            "Rust internals in {error:?}"
        );
    }
}

#[test]
fn errors_raised_inside_orch_lease_reach_the_client_whole() {
    let dsn = fresh_database_with("passthrough", TASKS);
    login_role("passthrough_actor", &["orch_lease_actor"]);
    let mut owner = connect_timed(&dsn);
    owner
        .batch_execute("GRANT SELECT ON tasks TO passthrough_actor")
        .unwrap();

    let check = cas_error(&mut owner, "banned");
    assert_eq!(check.code().code(), "23514", "{check:?}");
    assert_eq!(check.constraint(), Some("tasks_stage_check"), "{check:?}");
    assert_eq!(check.table(), Some("tasks"), "{check:?}");
    assert!(
        check
            .detail()
            .is_some_and(|d| d.starts_with("Failing row contains")),
        "{check:?}"
    );
    assert!(
        check.where_().is_some_and(|w| w.contains("SQL statement")),
        "{check:?}"
    );
    no_rust(&check);

    let length = cas_error(&mut owner, "much-too-long");
    assert_eq!(length.code().code(), "22001", "{length:?}");
    assert!(
        length.where_().is_some_and(|w| w.contains("SQL statement")),
        "{length:?}"
    );
    no_rust(&length);

    let trigger = cas_error(&mut owner, "trigger");
    assert_eq!(trigger.code().code(), "P0001", "{trigger:?}");
    assert_eq!(trigger.message(), "stage trigger refused");
    assert_eq!(trigger.detail(), Some("by the trigger"));
    assert_eq!(trigger.hint(), Some("ask the owner"));
    let context = trigger.where_().unwrap_or_default();
    assert!(
        context.starts_with("PL/pgSQL function refuse_stage() line 3 at RAISE"),
        "the trigger's context first: {trigger:?}"
    );
    assert!(context.contains("SQL statement"), "{trigger:?}");
    no_rust(&trigger);

    // The actor may read the table but not update it.
    let mut actor = connect_timed(&dsn_as(&dsn, "passthrough_actor"));
    let grant = cas_error(&mut actor, "merged");
    assert_eq!(grant.code().code(), "42501", "{grant:?}");
    assert_eq!(grant.message(), "permission denied for table tasks");
    no_rust(&grant);

    owner
        .batch_execute("GRANT UPDATE ON tasks TO passthrough_actor")
        .unwrap();
    let policy = cas_error(&mut actor, "hidden");
    assert_eq!(policy.code().code(), "42501", "{policy:?}");
    assert_eq!(
        policy.message(),
        "new row violates row-level security policy for table \"tasks\""
    );
    no_rust(&policy);

    // Nothing was written by any of them.
    assert_eq!(stage(&mut owner, "task-1"), "queued");
}
