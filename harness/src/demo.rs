//! `make demo`: the incident, replayed. Five actor processes race to advance the same tasks through
//! orch_lease, first with the kill-switch off (exactly the old bare-UPDATE behaviour), then on. Then one
//! actor crashes holding a lease, is restarted, and its recover reclaims the lease while an alerting
//! listener receives the announcement.
use crate::kit::{connect, count, Mode};
use crate::race::{prepare, race, race_of, report, Report};
use postgres::fallible_iterator::FallibleIterator;
use postgres::Client;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

fn heading(text: &str) {
    println!("\n\x1b[1m{text}\x1b[0m");
}

/// The kill-switch for every new session of this database (it needs a superuser).
fn kill_switch(db: &mut Client, on: bool) {
    let setting = if on {
        "RESET orch_lease.enabled"
    } else {
        "SET orch_lease.enabled = off"
    };
    db.batch_execute(&format!(
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I {setting}', current_database()); END $$"
    ))
    .expect("kill-switch");
}

fn status(db: &mut Client) {
    let rows = db
        .query(
            "SELECT task_table::text, work_item, owner, owner_pid, token, liveness
               FROM orch_lease.transition_lease_status ORDER BY 1, 2",
            &[],
        )
        .expect("status view");
    println!("  orch_lease.transition_lease_status:");
    if rows.is_empty() {
        println!("    (no lease held)");
    }
    for row in rows {
        let (table, item, owner, pid, token, liveness): (String, String, String, i32, i64, String) = (
            row.get(0),
            row.get(1),
            row.get(2),
            row.get(3),
            row.get(4),
            row.get(5),
        );
        println!(
            "    {item} of {table}  held by {owner} (pid {pid}, token {token}), liveness {liveness}"
        );
    }
}

const ITEMS: usize = 20;
const EFFECT_MS: u64 = 20;
/// The crash round's tasks: 3 ids in each of the race's two tables.
const CRASH_ITEMS: i64 = 6;

pub fn run(exe: &Path, dsn: &str) {
    let mut db = connect(dsn);

    heading("Round 1 — kill-switch OFF (orch_lease.enabled = off): the old unconditional writes");
    let off = race_round(&mut db, exe, dsn, false);
    off.print("kill-switch off");

    heading("Round 2 — kill-switch ON: transition lease + expected-stage CAS");
    let on = race_round(&mut db, exe, dsn, true);
    on.print("kill-switch on");

    heading("Round 3 — an actor crashes holding a lease, restarts, and recovers it");
    let (alert, merged) = crash_round(&mut db, exe, dsn);

    // Every claim of the summary is asserted before it is printed.
    assert!(
        !off.exactly_once(),
        "with the kill-switch off the race should duplicate effects"
    );
    assert!(
        on.exactly_once(),
        "with orch_lease on every effect should run once"
    );
    assert!(alert.contains("\"event\":\"reclaimed\""), "{alert}");
    assert_eq!(
        merged, CRASH_ITEMS,
        "the restarted actor finished the work, in both tables"
    );
    heading("Summary");
    summary(&off, &on);
}

/// The five actors race over fresh tasks with the kill-switch as given (and on again afterwards).
fn race_round(db: &mut Client, exe: &Path, dsn: &str, switch_on: bool) -> Report {
    prepare(db, ITEMS);
    if !switch_on {
        kill_switch(db, false);
    }
    race(exe, dsn, Mode::Lease, ITEMS, EFFECT_MS);
    if !switch_on {
        kill_switch(db, true);
    }
    report(db)
}

/// A listener on `orch_lease`, ready when this returns: the payloads of the next 20 s.
fn listen(dsn: &str) -> mpsc::Receiver<String> {
    let (alerts, received) = mpsc::channel();
    let listener_dsn = dsn.to_string();
    let (ready, listening) = mpsc::channel();
    std::thread::spawn(move || {
        let mut listener = connect(&listener_dsn);
        listener.batch_execute("LISTEN orch_lease").expect("listen");
        ready.send(()).unwrap();
        let mut notifications = listener.notifications();
        let mut iter = notifications.timeout_iter(Duration::from_secs(20));
        while let Ok(Some(note)) = iter.next() {
            let _ = alerts.send(note.payload().to_string());
        }
    });
    listening.recv().unwrap();
    received
}

/// The deploy finalizer dies holding a lease, restarts and recovers it: the alert, and the tasks
/// merged in the end.
fn crash_round(db: &mut Client, exe: &Path, dsn: &str) -> (String, i64) {
    prepare(db, 3);
    let received = listen(dsn);
    let finalizer = |crash_after_grant: bool| {
        race_of(
            exe,
            dsn,
            Mode::Lease,
            &["deploy-finalizer"],
            3,
            EFFECT_MS,
            crash_after_grant,
        )
    };
    finalizer(true);
    println!("  The process is gone, but no heartbeat has to time out: its boot is simply still registered.");
    status(db);
    println!(
        "  deploy-finalizer restarts with a fresh boot id and calls transition_lease_recover:"
    );
    finalizer(false);
    let alert = received
        .recv_timeout(Duration::from_secs(10))
        .expect("the alert arrives");
    println!("  ALERT on channel orch_lease: {alert}");
    status(db);
    let merged = count(
        db,
        "SELECT (SELECT count(*) FROM demo_task WHERE stage = 'merged')
              + (SELECT count(*) FROM demo_jobs_task WHERE stage = 'merged')",
    );
    println!("  tasks merged after the restart: {merged} of {CRASH_ITEMS} (3 tasks, 3 jobs)");
    (alert, merged)
}

fn summary(off: &Report, on: &Report) {
    println!(
        "  {:<22} {:>8} {:>11} {:>15}  verdict",
        "round", "effects", "duplicated", "contradictory"
    );
    for (name, r) in [("kill-switch off", off), ("kill-switch on", on)] {
        let verdict = if r.exactly_once() {
            "each effect exactly once"
        } else {
            "duplicate effects"
        };
        println!(
            "  {name:<22} {:>8} {:>11} {:>15}  {verdict}",
            r.effects, r.duplicated_items, r.contradictory_items
        );
    }
    println!(
        "  {:<22} {:>8} {:>11} {:>15}  lease recovered, alert sent",
        "crash + restart", "", "", ""
    );
}
