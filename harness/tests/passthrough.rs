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

/// A database whose registered task table holds one task, `task-1` at `queued`; then `setup`.
fn one_task_database(name: &str, setup: &str) -> String {
    fresh_database_with(
        name,
        &format!(
            "CREATE TABLE tasks (id text PRIMARY KEY, stage text NOT NULL);
             INSERT INTO tasks VALUES ('task-1', 'queued');
             SELECT orch_lease.register_task_table('tasks');
             {setup}"
        ),
    )
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

/// The server runs with RUST_BACKTRACE=1 in its environment, or "no Rust internals" proves little. What a
/// program the backend starts sees (the superuser's COPY FROM PROGRAM): /proc/self/environ would not do,
/// PostgreSQL writes its process title over that memory.
fn assert_rust_backtrace_on(db: &mut postgres::Client) {
    db.batch_execute(
        "CREATE TEMP TABLE server_environment (value text);
         COPY server_environment FROM PROGRAM 'echo \"[$RUST_BACKTRACE]\"'",
    )
    .expect("the server's environment");
    let seen: String = db
        .query_one("SELECT value FROM server_environment", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        seen, "[1]",
        "the server does not run with RUST_BACKTRACE=1 (make test starts it so): this test proves nothing"
    );
}

#[test]
fn errors_raised_inside_orch_lease_reach_the_client_whole() {
    let dsn = fresh_database_with("passthrough", TASKS);
    assert_rust_backtrace_on(&mut connect_timed(&dsn));
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

/// A caught error (here the trigger's, caught by the caller's EXCEPTION block) leaves nothing behind:
/// a later error with the same text, raised outside orch_lease, carries only its own context (red21 F1),
/// and catching many does not grow the backend's memory (red21 F2: ~200 bytes of TopMemoryContext each).
#[test]
fn a_caught_error_leaves_no_context_and_no_memory_behind() {
    let dsn = one_task_database(
        "passthrough_caught",
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'refused %', NEW.id; END $$;
         CREATE TRIGGER refuse BEFORE UPDATE ON tasks FOR EACH ROW EXECUTE FUNCTION refuse();
         CREATE FUNCTION caught(n int) RETURNS int LANGUAGE plpgsql AS $$
         DECLARE c int := 0; r record;
         BEGIN
             FOR i IN 1..n LOOP
                 BEGIN
                     SELECT * INTO r FROM orch_lease.update_task_stage_cas('task-1', 'queued', 'merged');
                 EXCEPTION WHEN others THEN c := c + 1;
                 END;
             END LOOP;
             RETURN c;
         END $$;",
    );
    let mut db = connect_timed(&dsn);
    let top = |db: &mut postgres::Client| -> i64 {
        db.query_one(
            "SELECT total_bytes FROM pg_backend_memory_contexts WHERE name = 'TopMemoryContext'",
            &[],
        )
        .unwrap()
        .get(0)
    };
    let warm: i32 = db.query_one("SELECT caught(200)", &[]).unwrap().get(0);
    assert_eq!(warm, 200);
    let before = top(&mut db);
    let caught: i32 = db.query_one("SELECT caught(20000)", &[]).unwrap().get(0);
    assert_eq!(caught, 20000);
    let growth = top(&mut db) - before;
    assert!(
        growth < 256 * 1024,
        "TopMemoryContext grew {growth} bytes over 20000 caught errors"
    );

    let unrelated = db
        .batch_execute("DO $$ BEGIN RAISE EXCEPTION 'refused task-1'; END $$")
        .expect_err("the DO block raises");
    let unrelated = unrelated.as_db_error().expect("a database error");
    assert_eq!(
        unrelated.where_(),
        Some("PL/pgSQL function inline_code_block line 1 at RAISE"),
        "only its own context: {unrelated:?}"
    );
}

/// A lost race given as an outcome (a CAS that times out on the task row's lock says `retry`) leaves no
/// context behind for the caller's next lock timeout, elsewhere (red21 F1).
#[test]
fn a_lost_race_leaves_no_context_behind() {
    let dsn = one_task_database(
        "passthrough_lost_race",
        "CREATE TABLE other (id int PRIMARY KEY);
         INSERT INTO other VALUES (1);",
    );
    let (mut locker, mut caller) = (connect_timed(&dsn), connect_timed(&dsn));
    let mut lock = locker.transaction().unwrap();
    lock.batch_execute(
        "SELECT FROM tasks WHERE id = 'task-1' FOR UPDATE; SELECT FROM other FOR UPDATE",
    )
    .unwrap();
    caller.batch_execute("SET lock_timeout = '100ms'").unwrap();
    let outcome = cas(
        &mut caller,
        "update_task_stage_cas('task-1', 'queued', 'merged')",
        &[],
    );
    assert_eq!(outcome, "retry");
    let timeout = caller
        .batch_execute("SELECT FROM other FOR UPDATE")
        .expect_err("the row is locked");
    let timeout = timeout.as_db_error().expect("a database error");
    assert_eq!(timeout.code().code(), "55P03");
    assert_eq!(
        timeout.where_(),
        Some("while locking tuple (0,1) in relation \"other\""),
        "only its own context: {timeout:?}"
    );
}

/// A FATAL raised inside a statement is reported by PostgreSQL at once, whole: its context is not
/// added to it a second time (red21 F7).
#[test]
fn a_fatal_inside_a_statement_keeps_its_context_once() {
    let dsn = one_task_database(
        "passthrough_fatal",
        "CREATE FUNCTION leave() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); PERFORM pg_sleep(5); RETURN NEW; END $$;
         CREATE TRIGGER leave BEFORE UPDATE ON tasks FOR EACH ROW EXECUTE FUNCTION leave();",
    );
    let mut db = connect_timed(&dsn);
    let fatal = cas_error(&mut db, "merged");
    assert_eq!(fatal.code().code(), "57P01", "{fatal:?}");
    let context = fatal.where_().unwrap_or_default();
    assert_eq!(
        context.matches("pg_terminate_backend").count(),
        1,
        "the context once: {fatal:?}"
    );
}
