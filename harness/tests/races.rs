//! The contract under real concurrency: separate connections, interleaved by hand at the points that
//! matter. Contention must come back as an outcome, never as an error or an aborted caller.
mod common;
use common::*;
use orch_lease_harness::connect;

#[test]
fn an_acquire_in_flight_elsewhere_is_busy_at_once() {
    let dsn = fresh_database("race_busy");
    let (mut a, mut b) = (connect(&dsn), connect(&dsn));
    b.batch_execute("SET statement_timeout = '2s'").unwrap(); // a wait would fail the test

    let mut tx = a.transaction().unwrap();
    assert_eq!(
        acquire(&mut tx, "task-1", "monitor", "boot-a").0,
        "acquired"
    );
    assert_eq!(acquire(&mut b, "task-1", "webhook", "boot-b").0, "busy");
    tx.commit().unwrap();
    let (outcome, _) = acquire(&mut b, "task-1", "webhook", "boot-b");
    assert_eq!(outcome, "held", "once committed, the lease is simply held");
}

#[test]
fn a_release_in_flight_makes_acquire_busy_not_blocked() {
    let dsn = fresh_database("race_release");
    let (mut a, mut b) = (connect(&dsn), connect(&dsn));
    b.batch_execute("SET statement_timeout = '2s'").unwrap();
    let (_, token) = acquire(&mut a, "task-1", "monitor", "boot-a");
    let mut tx = a.transaction().unwrap();
    cas(
        &mut tx,
        "commit_stage_cas('task-1', $1, 'queued', 'merged')",
        &[&token],
    );
    let (outcome, _) = acquire(&mut b, "task-1", "webhook", "boot-b");
    assert!(outcome == "held" || outcome == "busy", "got {outcome}");
    tx.commit().unwrap();
    assert_eq!(acquire(&mut b, "task-1", "webhook", "boot-b").0, "acquired");
}

#[test]
fn repeatable_read_and_serializable_callers_get_outcomes_and_stay_usable() {
    let dsn = fresh_database("race_isolation");
    for (n, level) in ["REPEATABLE READ", "SERIALIZABLE"].into_iter().enumerate() {
        let (mut a, mut b) = (connect(&dsn), connect(&dsn));
        let item = format!("task-{}", n + 1);
        let isolation = match n {
            0 => postgres::IsolationLevel::RepeatableRead,
            _ => postgres::IsolationLevel::Serializable,
        };
        let mut tx = a
            .build_transaction()
            .isolation_level(isolation)
            .start()
            .unwrap();
        tx.query("SELECT count(*) FROM orch_lease.transition_lease", &[])
            .unwrap(); // take the snapshot

        // Another actor acquires and commits after our snapshot.
        let (_, token) = acquire(&mut b, &item, "webhook", "boot-b");
        assert_eq!(
            acquire(&mut tx, &item, "monitor", "boot-a").0,
            "retry",
            "{level}: a grant committed after our snapshot cannot be seen from it: run again"
        );

        // …and moves the stage after our snapshot: our CAS cannot run, and says so without an error.
        assert_eq!(
            cas(
                &mut b,
                "commit_stage_cas($1, $2, 'queued', 'merged')",
                &[&item, &token]
            ),
            "applied"
        );
        assert_eq!(
            cas(
                &mut tx,
                "update_task_stage_cas($1, 'queued', 'rolled_back')",
                &[&item]
            ),
            "retry",
            "{level}: not stage_mismatch, which our snapshot would not show"
        );
        let released: bool = tx
            .query_one(
                "SELECT orch_lease.transition_lease_release($1, $2)",
                &[&item, &token],
            )
            .unwrap()
            .get(0);
        assert!(!released, "{level}: the lease is already gone");
        let still: i32 = tx.query_one("SELECT 1", &[]).unwrap().get(0);
        assert_eq!(still, 1, "{level}: the caller's transaction is usable");
        tx.commit()
            .unwrap_or_else(|error| panic!("{level}: commit failed: {error}"));
        assert_eq!(stage(&mut b, &item), "merged", "{level}: written once");
    }
}

#[test]
fn of_two_cas_writers_with_the_same_expected_stage_exactly_one_applies() {
    let dsn = fresh_database("race_cas");
    let mut a = connect(&dsn);
    let mut tx = a.transaction().unwrap();
    assert_eq!(
        cas(
            &mut tx,
            "update_task_stage_cas('task-1', 'queued', 'merged')",
            &[]
        ),
        "applied"
    );
    let second_dsn = dsn.clone();
    let (second, waiting) = blocked(move || {
        let mut b = connect(&second_dsn);
        let row = b
            .query_one("SELECT outcome, current_stage FROM orch_lease.update_task_stage_cas('task-1', 'queued', 'rolled_back')", &[])
            .unwrap();
        (row.get::<_, String>(0), row.get::<_, Option<String>>(1))
    });
    assert!(
        waiting,
        "the second writer waits for the first one's row lock"
    );
    tx.commit().unwrap();
    assert_eq!(
        second.join().unwrap(),
        ("stage_mismatch".into(), Some("merged".into()))
    );
    assert_eq!(stage(&mut a, "task-1"), "merged");
}

#[test]
fn a_commit_racing_a_force_release_never_writes_after_losing_the_lease() {
    let dsn = fresh_database("race_force");
    let mut a = connect(&dsn);

    // Force first: the commit waits for it, then finds the lease gone and writes nothing.
    let (_, token) = acquire(&mut a, "task-1", "monitor", "boot-a");
    let mut tx = a.transaction().unwrap();
    assert!(tx
        .query_one(
            "SELECT orch_lease.transition_lease_force_release('task-1')",
            &[]
        )
        .unwrap()
        .get::<_, bool>(0));
    let committer_dsn = dsn.clone();
    let (commit, waiting) = blocked(move || {
        cas(
            &mut connect(&committer_dsn),
            "commit_stage_cas('task-1', $1, 'queued', 'merged')",
            &[&token],
        )
    });
    assert!(waiting);
    tx.commit().unwrap();
    assert_eq!(commit.join().unwrap(), "lease_lost");
    assert_eq!(stage(&mut a, "task-1"), "queued", "nothing written");

    // Commit first: the force waits for it, then finds nothing to free.
    let (_, token) = acquire(&mut a, "task-2", "monitor", "boot-a");
    let mut tx = a.transaction().unwrap();
    assert_eq!(
        cas(
            &mut tx,
            "commit_stage_cas('task-2', $1, 'queued', 'merged')",
            &[&token]
        ),
        "applied"
    );
    let forcer_dsn = dsn.clone();
    let (forced, waiting) = blocked(move || {
        connect(&forcer_dsn)
            .query_one(
                "SELECT orch_lease.transition_lease_force_release('task-2')",
                &[],
            )
            .unwrap()
            .get::<_, bool>(0)
    });
    assert!(waiting, "the force release waits for the commit's row lock");
    tx.commit().unwrap();
    assert!(
        !forced.join().unwrap(),
        "the lease was already released by the commit"
    );
}

#[test]
fn takeover_waits_for_a_zombie_acquire_and_then_releases_its_lease() {
    let dsn = fresh_database("race_recover");
    let mut zombie = connect(&dsn);
    recover(&mut zombie, "boot-1", "orchestrator");
    let mut tx = zombie.transaction().unwrap();
    assert_eq!(
        acquire(&mut tx, "task-1", "monitor", "boot-1").0,
        "acquired"
    );

    let successor_dsn = dsn.clone();
    // The zombie's session is still connected: replacing it is a takeover on purpose.
    let (recovered, waiting) =
        blocked(move || takeover(&mut connect(&successor_dsn), "boot-2", "orchestrator"));
    assert!(
        waiting,
        "recover waits for the in-flight acquire of the boot it supersedes"
    );
    tx.commit().unwrap();
    assert_eq!(
        recovered.join().unwrap(),
        vec!["task-1".to_string()],
        "and then releases its lease"
    );
    assert_eq!(
        acquire(&mut zombie, "task-1", "monitor", "boot-1").0,
        "superseded"
    );
    let left: i64 = zombie
        .query_one("SELECT count(*) FROM orch_lease.transition_lease", &[])
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
}

#[test]
fn forced_and_stale_reclaims_are_announced() {
    let (_, mut listener, mut actor) = listening("race_notify");
    let (_, token) = acquire(&mut actor, "task-1", "monitor", "boot-1");
    actor
        .execute(
            "SELECT orch_lease.transition_lease_force_release('task-1', $1, 'on-call')",
            &[&token],
        )
        .unwrap();
    acquire(&mut actor, "task-2", "monitor", "boot-1");
    recover(&mut actor, "boot-2", "orchestrator");

    let mut payloads = Vec::new();
    let mut notifications = listener.notifications();
    let mut iter = notifications.timeout_iter(std::time::Duration::from_secs(5));
    while payloads.len() < 2 {
        use postgres::fallible_iterator::FallibleIterator;
        let note = iter
            .next()
            .expect("notification")
            .expect("two notifications within 5 s");
        assert_eq!(note.channel(), "orch_lease");
        payloads.push(note.payload().to_string());
    }
    assert!(
        payloads[0].starts_with("{\"version\":3,\"events\":[{"),
        "payload format version 3: {}",
        payloads[0]
    );
    assert_contains_all(
        &payloads[0],
        &[
            "\"event\":\"forced\"",
            "\"work_item\":\"task-1\"",
            "\"old_owner\":\"monitor\"",
            &format!("\"old_token\":{}", token.unwrap()),
            "\"reason\":\"on-call\"",
        ],
    );
    assert_contains_all(
        &payloads[1],
        &["\"event\":\"reclaimed\"", "\"work_item\":\"task-2\""],
    );
}

#[test]
fn many_actors_hammering_few_items_only_ever_get_outcomes() {
    // Regression: an acquire whose insert met a grant committed after its snapshot panicked instead of
    // answering busy. Eight threads race acquire / commit / release on three items, with stale holders
    // to reclaim; every call must answer with a documented outcome.
    let dsn = fresh_database("race_hammer");
    let mut setup = connect(&dsn);
    recover(&mut setup, "dead", "ghost");
    recover(&mut setup, "ghost-2", "ghost");
    let threads: Vec<_> = (0..8)
        .map(|n| {
            let dsn = dsn.clone();
            std::thread::spawn(move || {
                let mut db = connect(&dsn);
                let mut seen = std::collections::BTreeSet::new();
                for i in 0..600 {
                    let item = format!("task-{}", i % 3 + 1);
                    if n == 0 && i % 50 == 0 {
                        // A lease left behind by a superseded boot, for the others to reclaim.
                        db.execute(
                            "INSERT INTO orch_lease.transition_lease (work_item, token, owner, owner_pid, owner_boot_id, task_table)
                             VALUES ($1, nextval('orch_lease.token_seq'), 'ghost', 1, 'dead', 'tasks') ON CONFLICT DO NOTHING",
                            &[&item],
                        )
                        .unwrap();
                    }
                    let (outcome, token) = acquire(&mut db, &item, &format!("actor-{n}"), &format!("boot-{n}"));
                    assert!(["acquired", "held", "busy", "reclaimed"].contains(&outcome.as_str()), "{outcome}");
                    if token.is_some() {
                        let call = if i % 2 == 0 {
                            "commit_stage_cas($1, $2, 'queued', 'queued')"
                        } else {
                            "update_task_stage_cas($1, 'queued', 'queued', $2)"
                        };
                        let result = cas(&mut db, call, &[&item, &token]);
                        assert!(["applied", "lease_lost"].contains(&result.as_str()), "{result}");
                        db.execute("SELECT orch_lease.transition_lease_release($1, $2)", &[&item, &token]).unwrap();
                    }
                    seen.insert(outcome);
                }
                seen
            })
        })
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    for thread in threads {
        seen.extend(thread.join().expect("no call raised an error"));
    }
    // The regression's own outcome was exercised: an acquire met a grant made after its snapshot and
    // answered busy; and the others happened too (granted, refused as held, a stale holder reclaimed).
    for outcome in ["busy", "acquired", "held", "reclaimed"] {
        assert!(
            seen.contains(outcome),
            "no acquire answered {outcome}: saw {seen:?}"
        );
    }
}

#[test]
fn a_session_bound_lease_dies_with_its_session() {
    let dsn = fresh_database("race_session");
    let mut holder = connect(&dsn);
    let grant: String = holder
        .query_one(
            "SELECT outcome FROM orch_lease.transition_lease_acquire_session('task-1', 'webhook')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(grant, "acquired");
    let mut other = connect(&dsn);
    assert_eq!(
        acquire(&mut other, "task-1", "monitor", "boot-m").0,
        "held",
        "live while its session is"
    );

    let pid: i32 = holder
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    drop(holder); // the session ends: no ceiling, no reaper needed
    await_backend_exit(&mut other, pid);
    let liveness: String = other
        .query_one(
            "SELECT liveness FROM orch_lease.transition_lease_status",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(liveness, "stale");
    assert_eq!(
        acquire(&mut other, "task-1", "monitor", "boot-m").0,
        "reclaimed"
    );
}

#[test]
fn the_reaper_skips_a_lease_in_use_and_announces_what_it_takes() {
    let (dsn, mut listener, mut actor) = listening("race_reap");
    let (_, token) = acquire(&mut actor, "task-1", "deployer", "boot-1");
    actor
        .batch_execute(
            "UPDATE orch_lease.transition_lease SET acquired_at = now() - interval '2 hours'",
        )
        .unwrap();

    // The holder is in the middle of a CAS under its lease: the reaper passes it by without waiting.
    actor.batch_execute("BEGIN").unwrap();
    assert_eq!(
        cas(
            &mut actor,
            "update_task_stage_cas('task-1', 'queued', 'deploying', $1)",
            &[&token]
        ),
        "applied"
    );
    let mut reaper = connect(&dsn);
    reaper
        .batch_execute("SET statement_timeout = '5s'")
        .unwrap();
    let reap = "SELECT work_item, kind FROM orch_lease.transition_lease_reap(3600)";
    assert!(
        reaper.query(reap, &[]).unwrap().is_empty(),
        "a lease in use is skipped, not waited for"
    );
    actor.batch_execute("COMMIT").unwrap();

    let reaped = reaper.query(reap, &[]).unwrap();
    assert_eq!(reaped.len(), 1);
    assert_eq!(
        (reaped[0].get::<_, String>(0), reaped[0].get::<_, String>(1)),
        ("task-1".to_string(), "ceiling".to_string())
    );
    use postgres::fallible_iterator::FallibleIterator;
    let mut notifications = listener.notifications();
    let note = notifications
        .timeout_iter(std::time::Duration::from_secs(5))
        .next()
        .expect("notification")
        .expect("an announcement within 5 s");
    assert_contains_all(
        note.payload(),
        &[
            "{\"version\":3,\"events\":[{",
            "\"event\":\"reaped\"",
            "\"outcome\":\"ceiling\"",
            "\"old_owner\":\"deployer\"",
            &format!("\"old_token\":{}", token.unwrap()),
        ],
    );
    assert_eq!(
        cas(
            &mut actor,
            "commit_stage_cas('task-1', $1, 'deploying', 'deployed')",
            &[&token]
        ),
        "lease_lost",
        "the reaped holder's late commit writes nothing"
    );
}

/// A fresh database, a connection listening on `orch_lease`, and an actor whose boot-1 is registered.
fn listening(database: &str) -> (String, postgres::Client, postgres::Client) {
    let dsn = fresh_database(database);
    let mut listener = connect(&dsn);
    listener.batch_execute("LISTEN orch_lease").unwrap();
    let mut actor = connect(&dsn);
    recover(&mut actor, "boot-1", "orchestrator");
    (dsn, listener, actor)
}

/// Two running processes with one instance name would supersede each other and redo each other's
/// effects: while the session that registered the live boot is connected, recover refuses (55006) and
/// changes nothing; `transition_lease_takeover` replaces it on purpose; once that session is gone (the
/// process crashed), recover works as before.
#[test]
fn recover_refuses_an_instance_whose_session_is_connected() {
    let dsn = fresh_database("race_twin");
    let mut first = connect(&dsn);
    recover(&mut first, "boot-1", "webhook");
    assert_eq!(
        acquire(&mut first, "task-1", "webhook", "boot-1").0,
        "acquired"
    );

    let mut twin = connect(&dsn);
    let refused = twin
        .query(
            "SELECT * FROM orch_lease.transition_lease_recover('boot-2', 'webhook')",
            &[],
        )
        .expect_err("a second process with the same instance name is refused");
    let refused = refused.as_db_error().expect("a database error");
    assert_eq!(refused.code().code(), "55006", "{refused:?}");
    assert!(
        refused
            .hint()
            .unwrap_or("")
            .contains("transition_lease_takeover"),
        "{refused:?}"
    );
    assert_eq!(
        acquire(&mut first, "task-2", "webhook", "boot-1").0,
        "acquired",
        "the first process's boot is still the live one"
    );

    let taken = takeover(&mut twin, "boot-2", "webhook");
    assert_eq!(
        taken,
        vec!["task-1", "task-2"],
        "a takeover on purpose ends the first's leases"
    );
    assert_eq!(
        acquire(&mut first, "task-3", "webhook", "boot-1").0,
        "superseded"
    );

    // The twin's process crashes: its session ends, and a restart recovers without a takeover.
    let pid: i32 = twin
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    drop(twin);
    await_backend_exit(&mut first, pid);
    assert!(recover(&mut first, "boot-3", "webhook").is_empty());
}

/// Red-team findings F5 and F3 of #21: a second process started with the same deterministic boot id
/// is a twin too; and a boot registered by someone else than the process itself — on call's psql,
/// an admin registering an actor's instance, a takeover — leaves no session guarding the instance, so
/// the real process's restart is not refused while that psql stays open.
#[test]
fn only_a_process_registering_itself_guards_its_instance() {
    let dsn = fresh_database_with("race_guard", "");
    login_role("guard_actor", &["orch_lease_actor"]);
    let mut pod = connect(&dsn_as(&dsn, "guard_actor"));
    recover(&mut pod, "pod-0", "worker-0");

    let mut same_boot = connect(&dsn_as(&dsn, "guard_actor"));
    let refused = same_boot
        .query(
            "SELECT * FROM orch_lease.transition_lease_recover('pod-0', 'worker-0')",
            &[],
        )
        .expect_err("a second process with the same boot id is a twin");
    let refused = refused.as_db_error().expect("a database error");
    assert_eq!(refused.code().code(), "55006", "{refused:?}");

    // The process dies; on call registers the instance's next incarnation by hand and keeps psql open.
    let mut oncall = connect(&dsn);
    let pid: i32 = pod
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    drop(pod);
    await_backend_exit(&mut oncall, pid);
    recover(&mut oncall, "pod-0-oncall", "worker-0");
    let mut restarted = connect(&dsn_as(&dsn, "guard_actor"));
    assert!(recover(&mut restarted, "pod-0-restart", "worker-0").is_empty());

    // The same after a takeover (behind a pooler, or on call's).
    takeover(&mut oncall, "pod-0-taken", "worker-0");
    let mut again = connect(&dsn_as(&dsn, "guard_actor"));
    assert!(recover(&mut again, "pod-0-again", "worker-0").is_empty());
}

/// The metrics' counters are exact with many sessions counting at once (each draws from a sequence, so
/// none waits for another), across prunes that empty the history meanwhile; a grant rolled back is
/// counted too (the counters are not transactional, as pg_stat_statements' are not).
#[test]
fn counters_stay_exact_across_sessions_and_prunes() {
    let dsn = fresh_database("race_counts");
    let (sessions, rounds) = (6, 300);
    let workers: Vec<_> = (0..sessions)
        .map(|session| {
            let dsn = dsn.clone();
            std::thread::spawn(move || {
                let mut db = connect(&dsn);
                let mut seen = std::collections::BTreeMap::<String, i64>::new();
                for round in 0..rounds {
                    let item = format!("task-{}", (session + round) % 3 + 1);
                    let (outcome, token) =
                        acquire(&mut db, &item, "actor", &format!("boot-{session}"));
                    if outcome == "acquired" {
                        let released: bool = db
                            .query_one(
                                "SELECT orch_lease.transition_lease_release($1, $2)",
                                &[&item, &token],
                            )
                            .unwrap()
                            .get(0);
                        *seen.entry(format!("released {released}")).or_default() += 1;
                    }
                    *seen.entry(outcome).or_default() += 1;
                }
                seen
            })
        })
        .collect();
    let mut pruner = connect(&dsn);
    let mut rolled_back = pruner.transaction().unwrap();
    assert_eq!(
        acquire(&mut rolled_back, "task-9", "actor", "boot-x").0,
        "acquired"
    );
    rolled_back.rollback().unwrap();
    while !workers.iter().all(|worker| worker.is_finished()) {
        pruner
            .execute("SELECT orch_lease.transition_lease_prune('0 seconds')", &[])
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let mut seen = std::collections::BTreeMap::<String, i64>::new();
    for worker in workers {
        for (outcome, n) in worker.join().unwrap() {
            *seen.entry(outcome).or_default() += n;
        }
    }
    let metric = |db: &mut postgres::Client, name: &str, label: &str| -> i64 {
        db.query_one(
            "SELECT value::bigint FROM orch_lease.transition_lease_metrics() WHERE metric = $1 AND label = $2",
            &[&name, &label],
        )
        .unwrap()
        .get(0)
    };
    let count = |outcome: &str| seen.get(outcome).copied().unwrap_or(0);
    assert_eq!(
        count("acquired") + count("held") + count("busy"),
        sessions as i64 * rounds as i64,
        "only these outcomes: {seen:?}"
    );
    assert!(
        count("held") + count("busy") > 0,
        "the sessions contended: {seen:?}"
    );
    for (name, label, expected) in [
        ("orch_lease_grants_total", "acquired", count("acquired") + 1),
        ("orch_lease_refusals_total", "held", count("held")),
        ("orch_lease_refusals_total", "busy", count("busy")),
        (
            "orch_lease_releases_total",
            "released",
            count("released true"),
        ),
    ] {
        assert_eq!(
            metric(&mut pruner, name, label),
            expected,
            "{name}{{{label}}}: {seen:?}"
        );
    }
}

/// The stage a grant says (0.5.0) is never older than the grant: at REPEATABLE READ, a task row changed
/// after the caller's snapshot makes the acquire `retry` (the grant undone), not `acquired` with the
/// stage the snapshot still shows; at READ COMMITTED the stage is read after the grant, as it is now.
#[test]
fn a_grant_never_says_a_stage_older_than_itself() {
    let dsn = fresh_database("race_stage_after_grant");
    let mut actor = connect(&dsn);
    let mut writer = connect(&dsn);
    let said = |db: &mut postgres::Transaction<'_>| -> (String, Option<String>) {
        let row = db
            .query_one(
                "SELECT outcome, stage FROM orch_lease.transition_lease_acquire_session('task-5', 'actor')",
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    let mut tx = actor
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .start()
        .unwrap();
    tx.query_one("SELECT stage FROM tasks WHERE id = 'task-5'", &[])
        .unwrap(); // the snapshot
    writer
        .execute("UPDATE tasks SET stage = 'merged' WHERE id = 'task-5'", &[])
        .unwrap();
    assert_eq!(said(&mut tx), ("retry".into(), None), "REPEATABLE READ");
    tx.rollback().unwrap();
    let leases: i64 = writer
        .query_one("SELECT count(*) FROM orch_lease.transition_lease", &[])
        .unwrap()
        .get(0);
    assert_eq!(leases, 0, "the retried grant was undone");
    let mut tx = actor.transaction().unwrap();
    assert_eq!(
        said(&mut tx),
        ("acquired".into(), Some("merged".into())),
        "READ COMMITTED"
    );
    tx.commit().unwrap();
}
