//! The detectors no full run shows firing, each fed an input made to trip it (issue #30, items 3 and 4):
//! the soak's duplicate attribution (a kill explains an extra run only if it came before that run), its
//! server-side checks (`unfinished`, `stale_leases`, `leftover_leases`) against a real database left in
//! each bad state, and the failover checker's `tokens_granted_twice` and `tokens_not_above_the_crash`
//! against actor logs written by hand over grants the real server made. Each test first shows the
//! detector quiet on a clean input, so that a detector that always fires fails too.
mod common;
use orch_lease_harness::{connect, failover, soak};
use postgres::Client;
use std::path::{Path, PathBuf};

/// One incarnation's effect log: `S`/`E` around the effect of `task-1` queued → built at `start`..`end`,
/// then the commit's answer `D` unless `answered` is false (it was killed before hearing it).
fn effect_log(token: i64, start: u128, end: u128, answered: bool) -> String {
    let mut log =
        format!("S task-1 queued built {token} {start}\nE task-1 queued built {token} {end}\n");
    if answered {
        log.push_str(&format!("D task-1 built applied {token} {}\n", end + 1));
    }
    log
}

#[test]
fn a_soak_duplicate_is_tied_only_to_a_kill_that_came_before_it() {
    let killed = effect_log(1, 100, 200, false);
    let rerun = effect_log(2, 400, 500, true);
    // The killed incarnation died at 300, before the rerun started at 400: explained.
    assert_eq!(
        soak::duplicates_in(&[(&killed, Some(300)), (&rerun, None)]),
        (1, 0)
    );
    // The same logs, the kill at 450: the rerun had started at 400, so the kill is not why it ran.
    assert_eq!(
        soak::duplicates_in(&[(&killed, Some(450)), (&rerun, None)]),
        (0, 1)
    );
    // One kill, two extra runs after it: it explains one of them, not both.
    let again = effect_log(3, 600, 700, true);
    assert_eq!(
        soak::duplicates_in(&[(&killed, Some(300)), (&rerun, None), (&again, None)]),
        (1, 1)
    );
    // No kill at all: the extra run is a violation.
    let answered = effect_log(1, 100, 200, true);
    assert_eq!(
        soak::duplicates_in(&[(&answered, None), (&rerun, None)]),
        (0, 1)
    );
}

#[test]
fn the_soak_sees_unfinished_tasks_stale_leases_and_leftover_leases() {
    let dsn = common::fresh_database_with("orch_lease_detectors_soak", "");
    let mut db = connect(&dsn);
    soak::prepare(&mut db, 3);
    db.batch_execute("UPDATE soak_task SET stage = 'deployed'")
        .unwrap();
    let clean = soak::Leftovers {
        unfinished: 0,
        stale_leases: 0,
        leftover_leases: 0,
    };
    assert_eq!(soak::leftovers(&mut db), clean, "a finished soak");

    db.batch_execute("UPDATE soak_task SET stage = 'merged' WHERE id = 'task-1'")
        .unwrap();
    assert_eq!(soak::leftovers(&mut db).unfinished, 1, "a task left behind");
    db.batch_execute("UPDATE soak_task SET stage = 'deployed'")
        .unwrap();

    // A live lease left held: leftover, not stale.
    db.query(
        "SELECT * FROM orch_lease.transition_lease_recover('detectors-boot', 'detectors')",
        &[],
    )
    .unwrap();
    let (outcome, _) = common::acquire(&mut db, "task-2", "detectors", "detectors-boot");
    assert_eq!(outcome, "acquired");
    let left = soak::leftovers(&mut db);
    assert_eq!(
        (left.leftover_leases, left.stale_leases),
        (1, 0),
        "{left:?}"
    );

    // A session-bound lease whose session is gone: stale (and leftover).
    let mut session = connect(&dsn);
    let pid: i32 = session
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let acquired: bool = session
        .query_one(
            "SELECT acquired FROM orch_lease.transition_lease_acquire_session('task-3', 'gone')",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(acquired);
    drop(session);
    common::await_backend_exit(&mut db, pid);
    let left = soak::leftovers(&mut db);
    assert_eq!(
        (left.leftover_leases, left.stale_leases),
        (2, 1),
        "{left:?}"
    );
}

/// A fresh directory for hand-written actor logs.
fn log_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("orch_lease-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir); // left over from an earlier run, if any
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Actor logs in `dir`: one file per actor, its lines as given.
fn write_logs(dir: &Path, actors: &[&[String]]) {
    for (n, lines) in actors.iter().enumerate() {
        let text: String = lines.iter().map(|line| format!("{line}\n")).collect();
        std::fs::write(dir.join(format!("actor-{n}.log")), text).unwrap();
    }
}

/// A real grant of `item` on the server, released again: its token.
fn granted(db: &mut Client, item: &str) -> i64 {
    let (outcome, token) = common::acquire(db, item, "detectors", "detectors-boot");
    assert_eq!(outcome, "acquired");
    let token = token.unwrap();
    db.execute(
        "SELECT orch_lease.transition_lease_release($1, $2)",
        &[&item, &token],
    )
    .unwrap();
    token
}

#[test]
fn the_failover_check_sees_a_token_granted_twice_and_one_not_above_the_crash() {
    let dsn = common::fresh_database_with("orch_lease_detectors_failover", "");
    let mut db = connect(&dsn);
    failover::prepare(&mut db, 2);
    db.query(
        "SELECT * FROM orch_lease.transition_lease_recover('detectors-boot', 'detectors')",
        &[],
    )
    .unwrap();
    let (first, second) = (granted(&mut db, "ha-1"), granted(&mut db, "ha-2"));
    assert!(first < second);
    // One server on one port; the fault at 200: grants at 100 are before it, those at 300 after it.
    let fault = failover::Fault {
        injected: 200,
        old_port: 5432,
        new_port: 5432,
        in_flight: None,
    };
    let dir = log_dir("detectors-failover");
    let grant = |item: &str, token: i64, at: u128| format!("A {item} {token} {at} 5432");

    // Clean: the lower token before the fault, the higher after it, each told to one actor.
    write_logs(
        &dir,
        &[&[grant("ha-1", first, 100)], &[grant("ha-2", second, 300)]],
    );
    let report = failover::check_fault(&dsn, &dir, &fault);
    assert!(report.holds(), "{report:?}");
    assert_eq!(
        (
            report.tokens_granted_twice,
            report.tokens_not_above_the_crash
        ),
        (0, 0)
    );

    // The higher token before the fault, the lower after it: not above the crash.
    write_logs(
        &dir,
        &[&[grant("ha-2", second, 100)], &[grant("ha-1", first, 300)]],
    );
    let report = failover::check_fault(&dsn, &dir, &fault);
    assert!(!report.holds(), "{report:?}");
    assert_eq!(report.tokens_not_above_the_crash, 1, "{report:?}");
    assert_eq!(report.tokens_granted_twice, 0, "{report:?}");

    // One token acknowledged to two actors, both before the fault: granted twice.
    write_logs(
        &dir,
        &[
            &[grant("ha-1", first, 100)],
            &[grant("ha-1", first, 150), grant("ha-2", second, 300)],
        ],
    );
    let report = failover::check_fault(&dsn, &dir, &fault);
    assert!(!report.holds(), "{report:?}");
    assert_eq!(report.tokens_granted_twice, 1, "{report:?}");
    assert_eq!(report.tokens_not_above_the_crash, 0, "{report:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
