//! Snapshots, isolation levels and waits: what a caller's transaction does (an old snapshot, SERIALIZABLE,
//! a row lock, lock_timeout, a transaction left open) is an outcome or a clean error, within a bound.

use super::*;

// -------------------------------------------------------------------------------------------------
// Snapshots and isolation levels.

// 0.3.0's hole 11. recover and reap ran at REPEATABLE READ / SERIALIZABLE, where they cannot see the
// leases committed after their snapshot.
#[test]
fn recover_and_reap_refuse_a_transaction_snapshot() {
    let dsn = fresh_database_with("sec_isolation_refused", TEXT_TASKS);
    let mut db = connect_timed(&dsn);
    let mut v = Verdict::default();
    let calls = [
        (
            "recover",
            "SELECT count(*) FROM orch_lease.transition_lease_recover('boot-1', 'orchestrator')",
        ),
        (
            "reap",
            "SELECT count(*) FROM orch_lease.transition_lease_reap(3600)",
        ),
    ];
    for level in ["REPEATABLE READ", "SERIALIZABLE"] {
        for (what, call) in calls {
            db.batch_execute(&format!("BEGIN ISOLATION LEVEL {level}"))
                .unwrap();
            v.sqlstate(
                &format!("{what} at {level}"),
                db.query_one(call, &[]).map(|row| row.get::<_, i64>(0)),
                "25000",
            );
            db.batch_execute("ROLLBACK").unwrap();
        }
    }
    for (what, call) in calls {
        v.ok(
            &format!("{what} at READ COMMITTED"),
            db.query_one(call, &[]).map(|row| row.get::<_, i64>(0)),
        );
    }
    v.finish();
}

// 0.3.0's hole 13a. A serialization failure inside acquire was reported as 'busy' (someone else is
// acquiring), when nobody was: the caller must retry in a new transaction.
#[test]
fn a_serialization_failure_inside_acquire_is_retry_not_busy() {
    let dsn = fresh_database_with("sec_ssi_acquire", TEXT_TASKS);
    let (mut one, mut two) = (connect_timed(&dsn), connect_timed(&dsn));
    let mut first = one
        .build_transaction()
        .isolation_level(IsolationLevel::Serializable)
        .start()
        .unwrap();
    let mut second = two
        .build_transaction()
        .isolation_level(IsolationLevel::Serializable)
        .start()
        .unwrap();
    // Each reads the item the other will acquire: a read-write cycle once both have written.
    let probe = "SELECT count(*) FROM orch_lease.transition_lease WHERE work_item = $1";
    first.query_one(probe, &[&"task-2"]).unwrap();
    second.query_one(probe, &[&"task-1"]).unwrap();
    let (granted, _) = grant(&mut first, "task-1", "first", "boot-1").unwrap();
    assert_eq!(granted, "acquired");
    first.commit().unwrap();

    let mut v = Verdict::default();
    let closing = grant(&mut second, "task-2", "second", "boot-2").map(|(outcome, _)| outcome);
    v.answers(
        "acquire closing a read-write cycle (nobody else acquires task-2)",
        closing,
        "retry",
    );
    v.ok(
        "the caller's transaction stays usable",
        second.query_one("SELECT 1", &[]),
    );
    let _ = second.rollback();
    let again = grant(&mut two, "task-2", "second", "boot-2").map(|(outcome, _)| outcome);
    v.answers("acquire retried in a new transaction", again, "acquired");
    v.finish();
}

// 0.3.0's hole 13b. A CAS at REPEATABLE READ on a row updated after the snapshot (another column, the
// stage still the expected one) answered stage_mismatch, and commit_stage_cas dropped the lease.
#[test]
fn a_cas_on_a_row_updated_after_the_snapshot_is_retry() {
    let dsn = fresh_database_with(
        "sec_rr_cas",
        &format!("{TEXT_TASKS} ALTER TABLE tasks ADD COLUMN note text;"),
    );
    let (mut one, mut two) = (connect_timed(&dsn), connect_timed(&dsn));
    let (granted, token) = grant(&mut one, "task-2", "monitor", "boot-1").unwrap();
    assert_eq!(granted, "acquired");
    let mut v = Verdict::default();
    for (item, call) in [
        (
            "task-1",
            "update_task_stage_cas('task-1', 'queued', 'merged')",
        ),
        (
            "task-2",
            "commit_stage_cas('task-2', $1, 'queued', 'merged')",
        ),
    ] {
        let mut snapshot = one
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .start()
            .unwrap();
        snapshot
            .query_one("SELECT stage FROM tasks WHERE id = $1", &[&item])
            .unwrap();
        two.execute("UPDATE tasks SET note = 'touched' WHERE id = $1", &[&item])
            .unwrap();
        let params: &[&(dyn postgres::types::ToSql + Sync)] =
            if item == "task-2" { &[&token] } else { &[] };
        v.answers(call, outcome(&mut snapshot, call, params), "retry");
        v.ok(
            &format!("{call}: the transaction stays usable"),
            snapshot.query_one("SELECT 1", &[]),
        );
        let _ = snapshot.rollback();
        v.eq(
            &format!("{call}: stage"),
            stage(&mut two, item),
            "queued".to_string(),
        );
    }
    v.eq(
        "the lease after commit_stage_cas said retry",
        lease_token(&mut two, "task-2"),
        token,
    );
    v.finish();
}

// #29.5. At REPEATABLE READ / SERIALIZABLE, a CAS whose stage became the expected one after the
// snapshot answered stage_mismatch with the stale stage, and commit_stage_cas ended the lease.
#[test]
fn a_stage_that_became_the_expected_one_after_the_snapshot_is_retry() {
    let mut v = Verdict::default();
    let dsn = fresh_database_with("sec29_rr_mismatch", TEXT_TASKS);
    let (mut actor, mut other) = (connect_timed(&dsn), connect_timed(&dsn));
    for level in [IsolationLevel::RepeatableRead, IsolationLevel::Serializable] {
        other
            .batch_execute("UPDATE tasks SET stage = 'merged' WHERE id = 'task-1'")
            .unwrap();
        let (granted, token) = acquire(&mut actor, "task-1", "monitor", "boot-1");
        v.eq("acquire", granted.as_str(), "acquired");
        let mut snapshot = actor
            .build_transaction()
            .isolation_level(level)
            .start()
            .unwrap();
        snapshot
            .query_one("SELECT stage FROM tasks WHERE id = 'task-1'", &[])
            .unwrap();
        other
            .batch_execute("UPDATE tasks SET stage = 'queued' WHERE id = 'task-1'")
            .unwrap();
        let answer = snapshot
            .query_one(
                "SELECT concat_ws('|', outcome, current_stage)
                   FROM orch_lease.commit_stage_cas('task-1', $1, 'queued', 'done')",
                &[&token],
            )
            .map(|row| row.get::<_, String>(0));
        v.answers(&format!("{level:?}: commit_stage_cas"), answer, "retry");
        v.ok(
            &format!("{level:?}: the transaction stays usable"),
            snapshot.query_one("SELECT 1", &[]),
        );
        let _ = snapshot.rollback();
        v.eq(
            &format!("{level:?}: the lease after retry"),
            lease_token(&mut other, "task-1"),
            token,
        );
        v.answers(
            &format!("{level:?}: commit_stage_cas in a new transaction"),
            outcome(
                &mut actor,
                "commit_stage_cas('task-1', $1, 'queued', 'done')",
                &[&token],
            ),
            "applied",
        );
    }
    v.finish();
}

// -------------------------------------------------------------------------------------------------
// Locks and waits: every call answers within a bound.

/// The elapsed time of `call`, with its result.
fn timed<T>(call: impl FnOnce() -> T) -> (T, Duration) {
    let started = Instant::now();
    let result = call();
    (result, started.elapsed())
}

// 0.3.0's hole 4. A CAS that could not lock the task row (lock_timeout) answered stage_mismatch, and
// commit_stage_cas deleted the lease: the actor gave up a transition nobody else had made.
#[test]
fn a_cas_that_times_out_on_the_row_lock_says_retry_and_keeps_the_lease() {
    let dsn = fresh_database_with("sec_lock_timeout", TEXT_TASKS);
    let (mut locker, mut actor, mut superuser) = (
        connect_timed(&dsn),
        connect_timed(&dsn),
        connect_timed(&dsn),
    );
    actor.batch_execute("SET lock_timeout = '200ms'").unwrap();
    let (first, token) = grant(&mut actor, "task-1", "monitor", "boot-1").unwrap();
    assert_eq!(first, "acquired");
    let mut v = Verdict::default();

    let mut lock = locker.transaction().unwrap();
    lock.query("SELECT 1 FROM tasks WHERE id = 'task-1' FOR UPDATE", &[])
        .unwrap();
    let update = outcome(
        &mut actor,
        "update_task_stage_cas('task-1', 'queued', 'merged', $1)",
        &[&token],
    );
    v.answers(
        "update_task_stage_cas with the token, row locked",
        update,
        "retry",
    );
    let commit = outcome(
        &mut actor,
        "commit_stage_cas('task-1', $1, 'queued', 'merged')",
        &[&token],
    );
    v.answers("commit_stage_cas, row locked", commit, "retry");
    v.eq(
        "stage after the timed-out CAS",
        stage(&mut superuser, "task-1"),
        "queued".to_string(),
    );
    v.eq(
        "the lease after a retry (same token)",
        lease_token(&mut superuser, "task-1"),
        token,
    );
    // With the kill-switch off the CAS is a bare UPDATE, and a locked row is still contention, not an
    // error (the model's conformance run found it raising 55P03).
    actor.batch_execute("SET orch_lease.enabled = off").unwrap();
    let switched_off = outcome(
        &mut actor,
        "commit_stage_cas('task-1', $1, 'queued', 'merged')",
        &[&token],
    );
    v.answers(
        "commit_stage_cas, switch off, row locked",
        switched_off,
        "retry",
    );
    actor.batch_execute("RESET orch_lease.enabled").unwrap();
    v.eq(
        "the lease after a retry with the switch off",
        lease_token(&mut superuser, "task-1"),
        token,
    );
    lock.rollback().unwrap();

    let commit = outcome(
        &mut actor,
        "commit_stage_cas('task-1', $1, 'queued', 'merged')",
        &[&token],
    );
    v.answers(
        "commit_stage_cas retried once the row is free",
        commit,
        "applied",
    );
    v.finish();
}

// #29.4 A login with CONNECT only held recover's per-instance advisory lock (class 'boot', key
//       hashtext(instance)): every recover and takeover of that instance waited for it without bound.
#[test]
fn a_connect_only_login_holds_up_no_recover() {
    let (nogrant, actor) = ("orch_sec_b4_nogrant", "orch_sec_b4_actor");
    let dsn = fresh_database_with("sec_b4", TEXT_TASKS);
    login_role(nogrant, &[]);
    login_role(actor, &["orch_lease_actor"]);
    let mut squatter = connect_timed(&dsn_as(&dsn, nogrant));
    squatter
        .batch_execute("SELECT pg_advisory_lock(1651470196, hashtext('worker-1'))")
        .unwrap();
    let mut a = connect_timed(&dsn_as(&dsn, actor));
    let mut v = Verdict::default();
    for (function, boot) in [("recover", "boot-1"), ("takeover", "boot-2")] {
        let (answer, took) = timed(|| {
            a.query(
                &format!("SELECT * FROM orch_lease.transition_lease_{function}($1, 'worker-1')"),
                &[&boot],
            )
        });
        v.ok(&format!("{function} while the login holds the key"), answer);
        v.check(
            took < Duration::from_secs(2),
            format!("{function} took {took:?} while the login held the key"),
        );
    }
    v.finish();
}

// #29.4 and #29.8 A transaction left open on the instance's live boot (an acquire idle in transaction)
//       made every takeover, the on-call tool, wait for it without bound: it must answer within a bound.
#[test]
fn a_takeover_gives_up_on_a_transaction_left_open_within_a_bound() {
    let (actor, admin) = ("orch_sec_b8_actor", "orch_sec_b8_admin");
    let dsn = fresh_database_with("sec_b8", TEXT_TASKS);
    login_role(actor, &["orch_lease_actor"]);
    login_role(admin, &["orch_lease_admin"]);
    let mut a = connect_timed(&dsn_as(&dsn, actor));
    recover(&mut a, "boot-1", "worker-1");
    a.batch_execute("BEGIN").unwrap();
    acquire(&mut a, "task-1", "worker", "boot-1"); // share-locks boot-1 until the transaction ends
    let mut on_call = connect_timed(&dsn_as(&dsn, admin));
    let mut v = Verdict::default();
    let (answer, took) = timed(|| takeover_rows(&mut on_call, "boot-2"));
    v.sqlstate("takeover under an open acquire", answer, "55P03");
    v.check(
        took < Duration::from_secs(7),
        format!("the takeover gave up after {took:?}, not within its bound of 5 s"),
    );
    // The caller's own shorter lock_timeout is kept.
    on_call.batch_execute("SET lock_timeout = '200ms'").unwrap();
    let (answer, took) = timed(|| takeover_rows(&mut on_call, "boot-3"));
    v.sqlstate("takeover with lock_timeout 200ms", answer, "55P03");
    v.check(
        took < Duration::from_secs(2),
        format!("with lock_timeout 200ms the takeover gave up after {took:?}"),
    );
    a.batch_execute("COMMIT").unwrap();
    v.eq(
        "takeover once the transaction ended",
        takeover_rows(&mut on_call, "boot-4")
            .map(|rows| rows.len())
            .ok(),
        Some(1),
    );
    v.finish();
}

fn takeover_rows(db: &mut Client, boot: &str) -> Result<Vec<Row>, Error> {
    db.query(
        "SELECT * FROM orch_lease.transition_lease_takeover($1, 'worker-1')",
        &[&boot],
    )
}

// #29.8 A CAS left idle in transaction share-locks its lease: force_release waited for it without
//       bound. It answers (false: the lease is in use) within a bound.
#[test]
fn force_release_answers_while_a_cas_transaction_sits_on_the_lease() {
    let (actor, admin) = ("orch_sec_b8f_actor", "orch_sec_b8f_admin");
    let dsn = fresh_database_with(
        "sec_b8f",
        &format!("{TEXT_TASKS} GRANT SELECT, UPDATE ON tasks TO PUBLIC;"),
    );
    login_role(actor, &["orch_lease_actor"]);
    login_role(admin, &["orch_lease_admin"]);
    let mut a = connect_timed(&dsn_as(&dsn, actor));
    let token = acquire(&mut a, "task-1", "worker", "boot-1").1.unwrap();
    a.batch_execute("BEGIN").unwrap();
    cas(
        &mut a,
        "update_task_stage_cas('task-1', 'queued', 'merged', $1)",
        &[&token],
    );
    let mut on_call = connect_timed(&dsn_as(&dsn, admin));
    let mut v = Verdict::default();
    let (answer, took) = timed(|| {
        on_call
            .query_one(
                "SELECT orch_lease.transition_lease_force_release('task-1', NULL, 'stuck')",
                &[],
            )
            .map(|row| row.get::<_, bool>(0).to_string())
    });
    v.answers("force_release under an open CAS", answer, "false");
    v.check(
        took < Duration::from_secs(7),
        format!("force_release answered after {took:?}, not within its bound of 5 s"),
    );
    a.batch_execute("ROLLBACK").unwrap();
    v.answers(
        "force_release once the CAS transaction ended",
        on_call
            .query_one(
                "SELECT orch_lease.transition_lease_force_release('task-1', NULL, 'stuck')",
                &[],
            )
            .map(|row| row.get::<_, bool>(0).to_string()),
        "true",
    );
    v.finish();
}
