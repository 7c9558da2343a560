//! The kill-switch reaches running actors (issue #28): an actor's session is opened first and has called
//! already; the switch is flipped from another session with the very statements of docs/runbook.md
//! (section 5); the actor's very next call sees it — in autocommit, and inside a transaction that was
//! open across the flip. Both orders of flip and lease: a lease acquired before the switch goes off and
//! committed after, and a grant made while off and committed after it is back on. Off wins between the
//! database's switch and the session's setting; a superuser's own write of the switch reaches sessions
//! too; every switch is recorded and announced.
mod common;
use common::{
    acquire, assert_contains_all, await_backend_exit, cas, connect_timed, dsn_as, fresh_database,
    login_role, stage,
};
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, GenericClient};
use std::time::Duration;

/// The statement of docs/runbook.md that starts with `prefix` (one line of an sql block).
fn runbook_statement(prefix: &str) -> String {
    let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/runbook.md"))
        .expect("docs/runbook.md");
    page.lines()
        .find(|line| line.starts_with(prefix))
        .unwrap_or_else(|| panic!("docs/runbook.md has no line starting with {prefix:?}"))
        .to_string()
}

fn lease_count(db: &mut Client, item: &str) -> i64 {
    db.query_one(
        "SELECT count(*) FROM orch_lease.transition_lease WHERE work_item = $1",
        &[&item],
    )
    .unwrap()
    .get(0)
}

/// What `orch_lease.kill_switch()` says: enabled, database_enabled, session_enabled.
fn switch(db: &mut impl GenericClient) -> (bool, bool, bool) {
    let row = db
        .query_one(
            "SELECT enabled, database_enabled, session_enabled FROM orch_lease.kill_switch()",
            &[],
        )
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

#[test]
fn an_open_actor_session_sees_the_runbooks_switch_at_its_very_next_call() {
    let dsn = fresh_database("kill_switch_next_call");
    login_role("ks_actor", &["orch_lease_actor"]);
    login_role("ks_oncall", &["orch_lease_admin"]);
    let mut superuser = orch_lease_harness::connect(&dsn);
    superuser
        .batch_execute("GRANT SELECT, UPDATE ON tasks TO ks_actor")
        .unwrap();
    let off = runbook_statement("SELECT orch_lease.set_enabled(false,");
    let on = runbook_statement("SELECT orch_lease.set_enabled(true,");

    // The actors' sessions first: connected and serving before anyone touches the switch.
    let mut actor = orch_lease_harness::connect(&dsn_as(&dsn, "ks_actor"));
    let mut other = orch_lease_harness::connect(&dsn_as(&dsn, "ks_actor"));
    for (db, boot) in [(&mut actor, "actor-boot"), (&mut other, "other-boot")] {
        db.query(
            "SELECT * FROM orch_lease.transition_lease_recover($1, $1)",
            &[&boot],
        )
        .unwrap();
    }
    let (outcome, held) = acquire(&mut actor, "task-1", "actor", "actor-boot");
    assert_eq!(outcome, "acquired");
    assert_eq!(switch(&mut actor), (true, true, true));
    let mut listener = orch_lease_harness::connect(&dsn);
    listener.batch_execute("LISTEN orch_lease").unwrap();

    // Off, from the on-call's own session: the actor's very next call grants without a lease.
    let mut oncall = orch_lease_harness::connect(&dsn_as(&dsn, "ks_oncall"));
    let switched: bool = oncall.query_one(off.as_str(), &[]).unwrap().get(0);
    assert!(switched, "{off} switched");
    assert_eq!(
        acquire(&mut actor, "task-2", "actor", "actor-boot"),
        ("disabled".to_string(), None),
        "the actor's next call after the switch went off"
    );
    assert_eq!(switch(&mut actor), (false, false, true));
    // A lease acquired before the switch went off, committed after: the bare UPDATE, and the lease ends.
    let commit = "commit_stage_cas('task-1', $1, 'queued', 'merged')";
    assert_eq!(cas(&mut actor, commit, &[&held]), "unconditional");
    assert_eq!(stage(&mut superuser, "task-1"), "merged");
    assert_eq!(
        lease_count(&mut superuser, "task-1"),
        0,
        "the commit ended its lease"
    );

    // Inside a transaction open across the flip (REPEATABLE READ, even): its next call sees the switch.
    let mut tx = actor
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .start()
        .unwrap();
    assert_eq!(
        acquire(&mut tx, "task-3", "actor", "actor-boot").0,
        "disabled"
    );
    let switched: bool = oncall.query_one(on.as_str(), &[]).unwrap().get(0);
    assert!(switched, "{on} switched");
    let (outcome, in_tx) = acquire(&mut tx, "task-4", "actor", "actor-boot");
    assert_eq!(
        outcome, "acquired",
        "the next call in the open transaction after the switch went on"
    );
    assert_eq!(switch(&mut tx), (true, true, true));
    tx.commit().unwrap();
    assert_eq!(
        cas(
            &mut actor,
            "commit_stage_cas('task-4', $1, 'queued', 'merged')",
            &[&in_tx]
        ),
        "applied"
    );

    // A grant made while off (task-2: no lease, NULL token), written after the switch is back on: a
    // plain CAS by name (update_task_stage_cas; commit_stage_cas refuses a NULL token while on, 0.5.0).
    // Another actor acquired the item meanwhile (nothing held it) and moved it first: the expected
    // stage protects the write.
    let (outcome, token) = acquire(&mut other, "task-2", "other", "other-boot");
    assert_eq!(
        outcome, "acquired",
        "nothing held task-2 while the switch was off"
    );
    assert_eq!(
        cas(
            &mut other,
            "commit_stage_cas('task-2', $1, 'queued', 'merged')",
            &[&token]
        ),
        "applied"
    );
    let none: Option<i64> = None;
    let refused = actor
        .query_one(
            "SELECT outcome FROM orch_lease.commit_stage_cas('task-2', $1, 'queued', 'merged')",
            &[&none],
        )
        .expect_err("a NULL token while on");
    assert_eq!(
        refused.code(),
        Some(&postgres::error::SqlState::NULL_VALUE_NOT_ALLOWED),
        "{refused:?}"
    );
    assert_eq!(
        cas(
            &mut actor,
            "update_task_stage_cas('task-2', 'queued', 'merged')",
            &[]
        ),
        "stage_mismatch"
    );
    assert_eq!(stage(&mut superuser, "task-2"), "merged", "written once");
    // Nobody raced it (task-5): the grant made while off writes as a plain CAS after the switch is on.
    oncall.query_one(off.as_str(), &[]).unwrap();
    assert_eq!(
        acquire(&mut actor, "task-5", "actor", "actor-boot").0,
        "disabled"
    );
    oncall.query_one(on.as_str(), &[]).unwrap();
    assert_eq!(
        cas(
            &mut actor,
            "update_task_stage_cas('task-5', 'queued', 'merged')",
            &[]
        ),
        "applied"
    );

    // Every switch is in the history, with who and why, and was announced.
    let history: Vec<String> = superuser
        .query(
            "SELECT outcome || ' by ' || by_role || ': ' || reason FROM orch_lease.lease_history
              WHERE event = 'switched' ORDER BY event_id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let reason = |statement: &str| statement.split('\'').nth(1).unwrap().to_string();
    let (off_reason, on_reason) = (reason(&off), reason(&on));
    assert_eq!(
        history,
        [
            format!("off by ks_oncall: {off_reason}"),
            format!("on by ks_oncall: {on_reason}"),
            format!("off by ks_oncall: {off_reason}"),
            format!("on by ks_oncall: {on_reason}"),
        ]
    );
    let mut announced = Vec::new();
    let mut notifications = listener.notifications();
    let mut arriving = notifications.timeout_iter(Duration::from_secs(5));
    while announced.len() < 4 {
        match arriving.next().unwrap() {
            Some(note) => announced.push(note.payload().to_string()),
            None => break,
        }
    }
    assert_eq!(announced.len(), 4, "four switches announced: {announced:?}");
    for (payload, outcome) in announced.iter().zip(["off", "on", "off", "on"]) {
        common::assert_contains_all(
            payload,
            &[
                "\"event\":\"switched\"",
                &format!("\"outcome\":\"{outcome}\""),
                "\"work_item\":\"\"",
                "\"by_role\":\"ks_oncall\"",
            ],
        );
    }
}

#[test]
fn off_wins_between_the_database_switch_and_the_session_setting() {
    let dsn = fresh_database("kill_switch_precedence");
    let mut db = orch_lease_harness::connect(&dsn);
    let mut admin = orch_lease_harness::connect(&dsn);
    // The session's setting off, the database's switch on: off.
    db.batch_execute("SET orch_lease.enabled = off").unwrap();
    assert_eq!(switch(&mut db), (false, true, false));
    assert_eq!(acquire(&mut db, "task-1", "a", "boot").0, "disabled");
    // The database's switch off, the session's setting on: off.
    db.batch_execute("RESET orch_lease.enabled").unwrap();
    let changed: bool = admin
        .query_one("SELECT orch_lease.set_enabled(false, 'test')", &[])
        .unwrap()
        .get(0);
    assert!(changed);
    assert_eq!(switch(&mut db), (false, false, true));
    assert_eq!(acquire(&mut db, "task-1", "a", "boot").0, "disabled");
    // A switch to the state it is in changes and records nothing.
    let changed: bool = admin
        .query_one("SELECT orch_lease.set_enabled(false, 'again')", &[])
        .unwrap()
        .get(0);
    assert!(!changed);
    // Both on: on.
    admin
        .query_one("SELECT orch_lease.set_enabled(true, 'test over')", &[])
        .unwrap();
    assert_eq!(switch(&mut db), (true, true, true));
    assert_eq!(acquire(&mut db, "task-1", "a", "boot").0, "acquired");
    let switches: i64 = admin
        .query_one(
            "SELECT count(*) FROM orch_lease.lease_event WHERE event = 'switched'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(switches, 2);
}

#[test]
fn a_superusers_own_write_of_the_switch_reaches_open_sessions_too() {
    let dsn = fresh_database("kill_switch_direct_write");
    let mut actor = orch_lease_harness::connect(&dsn);
    let mut superuser = orch_lease_harness::connect(&dsn);
    assert_eq!(acquire(&mut actor, "task-1", "a", "boot").0, "acquired");
    superuser
        .batch_execute(
            "INSERT INTO orch_lease.kill_switch (enabled, changed_at, changed_by, reason)
             VALUES (false, now(), 'by hand', 'an UPDATE of my own')",
        )
        .unwrap();
    assert_eq!(acquire(&mut actor, "task-2", "a", "boot").0, "disabled");
    superuser
        .batch_execute("UPDATE orch_lease.kill_switch SET enabled = true")
        .unwrap();
    assert_eq!(acquire(&mut actor, "task-3", "a", "boot").0, "acquired");
    superuser
        .batch_execute("UPDATE orch_lease.kill_switch SET enabled = false")
        .unwrap();
    assert_eq!(acquire(&mut actor, "task-4", "a", "boot").0, "disabled");
    superuser
        .batch_execute("TRUNCATE orch_lease.kill_switch")
        .unwrap();
    assert_eq!(acquire(&mut actor, "task-5", "a", "boot").0, "acquired");
    // A switch rolled back never reached anyone.
    superuser
        .batch_execute("BEGIN; SELECT orch_lease.set_enabled(false, 'not meant'); ROLLBACK")
        .unwrap();
    assert_eq!(acquire(&mut actor, "task-6", "a", "boot").0, "acquired");
}

#[test]
fn a_switch_left_open_makes_the_on_calls_switch_fail_within_the_bound_naming_it() {
    // Red team of #28 (F5): an admin's switch left in an open transaction made the on-call's own
    // set_enabled wait until statement_timeout, the actors still on meanwhile.
    let dsn = fresh_database("kill_switch_left_open");
    login_role("ks_drill", &["orch_lease_admin"]);
    login_role("ks_oncall", &["orch_lease_admin"]);
    let mut actor = orch_lease_harness::connect(&dsn);
    let mut drill = orch_lease_harness::connect(&dsn_as(&dsn, "ks_drill"));
    let drill_pid: i32 = drill
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    drill
        .batch_execute("BEGIN; SELECT orch_lease.set_enabled(false, 'drill')")
        .unwrap();
    // The on-call's session: statement_timeout only so that the unbounded wait fails the test, not hangs it.
    let mut oncall = connect_timed(&dsn_as(&dsn, "ks_oncall"));
    let off = runbook_statement("SELECT orch_lease.set_enabled(false,");
    let started = std::time::Instant::now();
    let error = oncall
        .batch_execute(&off)
        .expect_err("the on-call's switch must not pass a switch left open");
    let waited = started.elapsed();
    let error = error.as_db_error().expect("a server error");
    assert_eq!(error.code().code(), "55P03", "{error:?}");
    assert!(
        waited < Duration::from_secs(8),
        "waited {waited:?}, not the 5 s bound"
    );
    assert!(
        error.message().contains("set_enabled gave up waiting"),
        "{error:?}"
    );
    assert_contains_all(
        error.detail().unwrap_or_default(),
        &[
            &format!("pid {drill_pid} (role ks_drill"),
            "orch_lease.kill_switch",
        ],
    );
    assert!(
        error
            .hint()
            .unwrap_or_default()
            .contains("pg_terminate_backend"),
        "{error:?}"
    );
    // The on-call's session is usable, and the hint works: end the drill, switch, the actor sees it.
    assert_eq!(switch(&mut oncall), (true, true, true));
    let mut superuser = orch_lease_harness::connect(&dsn);
    superuser
        .query_one("SELECT pg_terminate_backend($1)", &[&drill_pid])
        .unwrap();
    await_backend_exit(&mut superuser, drill_pid);
    let changed: bool = oncall.query_one(&off, &[]).unwrap().get(0);
    assert!(changed);
    assert_eq!(acquire(&mut actor, "task-1", "a", "boot").0, "disabled");
}
