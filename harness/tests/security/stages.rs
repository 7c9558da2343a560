//! The stage graph and the CAS: a terminal stage is left by no CAS, whatever the collation or a renamed
//! label; a new graph binds every transaction once the old one's users are done; a commit ends its lease.

use super::*;

// 0.3.0's hole 9. Terminal stages were only enforced against listed transitions: with none listed, a
// task left 'done'.
#[test]
fn a_terminal_stage_is_left_by_no_cas() {
    let dsn = fresh_database_with(
        "sec_terminal",
        &format!("{TEXT_TASKS} UPDATE tasks SET stage = 'done' WHERE id = 'task-1';"),
    );
    let mut db = connect_timed(&dsn);
    db.batch_execute("SELECT orch_lease.register_stage_graph('{}', '{done}')")
        .unwrap();
    let mut v = Verdict::default();
    let cas = outcome(
        &mut db,
        "update_task_stage_cas('task-1', 'done', 'queued')",
        &[],
    );
    v.answers(
        "update_task_stage_cas out of terminal 'done'",
        cas,
        "invalid_transition",
    );
    v.eq("stage", stage(&mut db, "task-1"), "done".to_string());
    v.finish();
}

// #29.11. Terminal stages failed open: with a case-insensitive stage collation 'DONE' was no terminal
// stage to the graph check yet matched 'done'; after ALTER TYPE … RENAME VALUE 'done' TO 'finished' the
// graph still named 'done', and 'finished' -> 'queued' applied.
#[test]
fn a_terminal_stage_holds_under_a_collation_or_a_renamed_label() {
    let mut v = Verdict::default();
    let dsn = fresh_database_with(
        "sec29_terminal_enum",
        "CREATE TYPE public.st AS ENUM ('queued', 'done');
         CREATE TABLE tasks (id text PRIMARY KEY, stage public.st NOT NULL);
         INSERT INTO tasks VALUES ('task-1', 'done');
         SELECT orch_lease.register_task_table('tasks');
         SELECT orch_lease.register_stage_graph('{}', '{done}');",
    );
    let (mut actor, mut owner) = (connect_timed(&dsn), connect_timed(&dsn));
    v.answers(
        "done -> queued",
        outcome(
            &mut actor,
            "update_task_stage_cas('task-1', 'done', 'queued')",
            &[],
        ),
        "invalid_transition",
    );
    owner
        .batch_execute("ALTER TYPE public.st RENAME VALUE 'done' TO 'finished'")
        .unwrap();
    let left = outcome(
        &mut actor,
        "update_task_stage_cas('task-1', 'finished', 'queued')",
        &[],
    );
    v.sqlstate(
        "finished (the renamed terminal stage) -> queued",
        left,
        "55000",
    );
    v.eq(
        "stage of task-1",
        owner
            .query_one("SELECT stage::text FROM tasks", &[])
            .unwrap()
            .get::<_, String>(0),
        "finished".to_string(),
    );

    let dsn = fresh_database_with("sec29_terminal_ci", "");
    let mut db = connect_timed(&dsn);
    if db
        .batch_execute(
            "CREATE COLLATION public.ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
             CREATE TABLE tasks (id text PRIMARY KEY, stage text COLLATE public.ci NOT NULL);",
        )
        .is_ok()
    {
        v.sqlstate(
            "register_task_table with a case-insensitive stage column",
            db.execute("SELECT orch_lease.register_task_table('tasks')", &[]),
            "42804",
        );
    }
    v.finish();
}

// #12. A new stage graph absorbed inside a REPEATABLE READ transaction was described from that transaction's
// snapshot and stayed cached past its COMMIT: the session went on allowing what the graph forbids.
#[test]
fn a_stage_graph_registered_meanwhile_is_seen_after_a_repeatable_read_transaction() {
    let dsn = fresh_database_with(
        "sec_rr_cache",
        "CREATE TABLE tasks (id bigint PRIMARY KEY, stage text NOT NULL);
         INSERT INTO tasks SELECT i, 'queued' FROM generate_series(1, 3) i;
         SELECT orch_lease.register_task_table('tasks');",
    );
    let mut v = Verdict::default();
    let mut actor = connect_timed(&dsn);
    let mut admin = connect_timed(&dsn);
    let cas = |db: &mut Client, id: &str| {
        db.query_one(
            "SELECT outcome FROM orch_lease.update_task_stage_cas($1, 'queued', 'merged')",
            &[&id],
        )
        .map(|row| row.get::<_, String>(0))
    };
    actor
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM tasks")
        .unwrap();
    admin
        .batch_execute("SELECT orch_lease.register_stage_graph('{\"queued -> rolled_back\"}')")
        .unwrap();
    // Since 0.5.0 a transaction checks by the rules committed when it first calls orch_lease, not by
    // those its snapshot shows (issue #29).
    v.answers(
        "a CAS in the old snapshot, its first call",
        cas(&mut actor, "1"),
        "invalid_transition",
    );
    actor.batch_execute("COMMIT").unwrap();
    v.answers(
        "the next CAS, after that transaction",
        cas(&mut actor, "2"),
        "invalid_transition",
    );
    v.finish();
}

// #29.2 (c). A stage graph registered while a transaction that had used the old rules was open: that
// transaction went on checking by the old rules and moved a task out of the new terminal stage.
#[test]
fn a_stage_graph_waits_for_the_transactions_that_used_the_old_one() {
    let mut v = Verdict::default();
    let dsn = fresh_database_with("sec29_graph_inflight", TEXT_TASKS);
    let (mut a, mut admin) = (connect_timed(&dsn), connect_timed(&dsn));
    admin.batch_execute("SET lock_timeout = '300ms'").unwrap();
    let cas = |db: &mut Client, from: &str, to: &str| {
        outcome(db, "update_task_stage_cas('task-1', $1, $2)", &[&from, &to])
    };
    a.batch_execute("BEGIN").unwrap();
    v.answers("queued -> done", cas(&mut a, "queued", "done"), "applied");
    let registered = admin.execute(
        "SELECT orch_lease.register_stage_graph('{}', '{done}')",
        &[],
    );
    let left = cas(&mut a, "done", "queued");
    v.check(
        !(registered.is_ok() && left.as_deref().ok() == Some("applied")),
        "the terminal stage 'done' was registered and left by one open transaction",
    );
    v.sqlstate(
        "register_stage_graph while a transaction that used the old rules is open",
        registered,
        "55P03",
    );
    a.batch_execute("COMMIT").unwrap();
    v.ok(
        "register_stage_graph once it ended",
        admin.execute(
            "SELECT orch_lease.register_stage_graph('{}', '{done}')",
            &[],
        ),
    );
    v.answers("queued -> done", cas(&mut a, "queued", "done"), "applied");
    v.answers(
        "done -> queued",
        cas(&mut a, "done", "queued"),
        "invalid_transition",
    );
    v.finish();
}

// 0.3.0's hole 8. With the kill-switch off, commit_stage_cas wrote the stage but kept the lease: when
// the switch came back on, the item stayed held by a transition that had finished.
#[test]
fn a_commit_with_the_kill_switch_off_also_ends_the_lease() {
    let dsn = fresh_database_with("sec_kill_switch", TEXT_TASKS);
    let mut db = connect_timed(&dsn);
    let (first, token) = grant(&mut db, "task-1", "monitor", "boot-1").unwrap();
    assert_eq!(first, "acquired");
    let mut v = Verdict::default();
    db.batch_execute("SET orch_lease.enabled = off").unwrap();
    let commit = outcome(
        &mut db,
        "commit_stage_cas('task-1', $1, 'queued', 'merged')",
        &[&token],
    );
    v.answers(
        "commit_stage_cas with the switch off",
        commit,
        "unconditional",
    );
    db.batch_execute("RESET orch_lease.enabled").unwrap();
    v.eq(
        "stage written",
        stage(&mut db, "task-1"),
        "merged".to_string(),
    );
    v.eq(
        "the lease once the switch is on again",
        lease_token(&mut db, "task-1"),
        None,
    );
    let again = grant(&mut db, "task-1", "webhook", "boot-2").map(|(outcome, _)| outcome);
    v.answers("a new acquire of the item", again, "acquired");
    v.finish();
}
