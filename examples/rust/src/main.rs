//! An orch_lease actor in Rust (the `postgres` crate): owner-exclusion and atomic stage writes through SQL.
//!
//!     actor --dsn "host=... dbname=..." [--instance NAME] [--task-table TABLE] task-1 task-2 ...
//!
//! --task-table names the registered table the tasks are rows of: needed once a database registers
//! several (tasks, jobs…), where a call naming none is refused (42P08); optional while there is one.
//!     actor --dsn "..." --listen 10        # print NOTIFY orch_lease alerts for 10 s
//!
//! Each task moves queued -> merged with one irreversible effect, recorded in example_effect (the tables:
//! examples/setup.sql). Run several copies at once: each effect still happens once.
//!
//! An instance name stands for one running process. Without --instance, the actor takes its host's first
//! free slot, `rust-actor-<host>-<slot>` (the Python client's convention, slots from 0): recover refuses a
//! slot whose process is still connected (55006), and a restarted process finds its own slot again and
//! recovers what its predecessor left. Exit status, as the other examples: 0; 1 for an error (a failed
//! effect stops it, its lease released); 2 for an instance name in use (55006); 3 when superseded.
use postgres::error::SqlState;
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, NoTls};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const FROM_STAGE: &str = "queued";
const TO_STAGE: &str = "merged";

/// The pretend irreversible effect. In real life: idempotent, or checked before it is redone.
fn merge_pull_request(db: &mut Client, task: &str, actor: &str) -> Result<(), postgres::Error> {
    db.execute(
        "INSERT INTO example_effect (task_id, actor) VALUES ($1, $2)",
        &[&task, &actor],
    )?;
    std::thread::sleep(Duration::from_millis(20));
    Ok(())
}

/// One attempt at one transition; returns what happened, for the summary.
fn advance(
    db: &mut Client,
    task: &str,
    actor: &str,
    pid: i32,
    boot_id: &str,
    task_table: Option<&str>,
) -> Result<String, postgres::Error> {
    let mut attempt = 0;
    let (acquired, outcome, token, stage): (bool, String, Option<i64>, Option<String>) = loop {
        let grant = db.query_one(
            "SELECT acquired, outcome, token, stage
               FROM orch_lease.transition_lease_acquire($1, $2, $3, $4,
                                                        task_table => $5::text::regclass)",
            &[&task, &actor, &pid, &boot_id, &task_table],
        )?;
        attempt += 1;
        let outcome: String = grant.get(1);
        if !matches!(outcome.as_str(), "busy" | "retry") || attempt == 5 {
            break (grant.get(0), outcome, grant.get(2), grant.get(3));
        }
        // busy: another transaction is acquiring it right now; retry: a lost race rolled the attempt
        // back. Either way, try again in a moment.
        std::thread::sleep(Duration::from_millis(10 * attempt));
    };
    if outcome == "superseded" {
        // A newer incarnation of this instance exists: this process is a zombie and must stop.
        eprintln!("{actor}: boot {boot_id} was superseded; exiting");
        std::process::exit(3);
    }
    if !acquired {
        // held: a live owner is doing it; busy, retry (after retries): next round; not_found: no task
        // has this id (nothing was granted).
        return Ok(outcome);
    }
    // acquired, reclaimed, disabled or out_of_scope (token None). Every way out but a commit that
    // answered ends the lease: no error leaves a lease behind for the reaper.
    let attempt = under_lease(db, (task, task_table), actor, token, stage.as_deref());
    if !matches!(&attempt, Ok((_, true))) {
        if let Err(error) = db.execute(
            "SELECT orch_lease.transition_lease_release($1, $2, task_table => $3::text::regclass)",
            &[&task, &token, &task_table],
        ) {
            eprintln!("{actor}: could not release {task}: {error}");
        }
    }
    let (committed, _) = attempt?;
    Ok(if outcome == "reclaimed" {
        format!("reclaimed+{committed}")
    } else {
        committed
    })
}

/// The work under the lease: the effect and the commit, from `stage`, which the acquire read after
/// the grant (two round trips a cycle: no read of our own). Returns the outcome and whether the commit
/// ended the lease (every answer but `retry` does).
fn under_lease(
    db: &mut Client,
    (task, task_table): (&str, Option<&str>),
    actor: &str,
    token: Option<i64>,
    stage: Option<&str>,
) -> Result<(String, bool), postgres::Error> {
    // The task may have moved on already.
    if stage != Some(FROM_STAGE) {
        return Ok(("already_done".into(), false));
    }
    merge_pull_request(db, task, actor)?;
    let mut attempt = 0;
    let (committed, current): (String, Option<String>) = loop {
        // A grant without a lease (disabled, out_of_scope: no token) writes by name, checking no
        // lease: commit_stage_cas refuses a NULL token while orch_lease is on.
        let result = match token {
            Some(token) => db.query_one(
                "SELECT outcome, current_stage
                   FROM orch_lease.commit_stage_cas($1, $2, $3, $4, task_table => $5::text::regclass)",
                &[&task, &token, &FROM_STAGE, &TO_STAGE, &task_table],
            )?,
            None => db.query_one(
                "SELECT outcome, current_stage
                   FROM orch_lease.update_task_stage_cas($1, $2, $3, task_table => $4::text::regclass)",
                &[&task, &FROM_STAGE, &TO_STAGE, &task_table],
            )?,
        };
        attempt += 1;
        if result.get::<_, String>(0) != "retry" || attempt == 5 {
            break (result.get(0), result.get(1));
        }
        // retry: the commit could not run (a lock timeout, a deadlock); the lease is still ours.
        std::thread::sleep(Duration::from_millis(10 * attempt));
    };
    // applied or unconditional: done. Otherwise (stage_mismatch, lease_lost, not_held, not_found,
    // invalid_transition, retry after retries) the effect happened and the stage was not written.
    if !matches!(committed.as_str(), "applied" | "unconditional") {
        eprintln!(
            "{actor}: {task} effect done, stage not written: {committed} (stage {current:?})"
        );
    }
    let ended = committed != "retry";
    Ok((committed, ended))
}

/// Registers this process start (a fresh boot id) under `instance`, or under this host's first free
/// slot, and takes back the leases its previous incarnation left. Returns the instance and the boot id.
fn register(
    db: &mut Client,
    instance: Option<&str>,
    pid: i32,
) -> Result<(String, String), postgres::Error> {
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_else(|_| "localhost".into());
    for slot in 0.. {
        let name = instance.map_or_else(
            || format!("rust-actor-{}-{slot}", host.trim()),
            str::to_string,
        );
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let boot_id = format!("{name}-{pid}-{nanos}"); // a fresh boot id per process start
        match db.query(
            "SELECT work_item, token FROM orch_lease.transition_lease_recover($1, $2, $3)",
            &[&boot_id, &name, &pid],
        ) {
            Ok(recovered) => {
                for lease in recovered {
                    let (item, token): (String, i64) = (lease.get(0), lease.get(1));
                    println!(
                        "{name}: recovered lease on {item} (token {token}) from a previous incarnation"
                    );
                }
                return Ok((name, boot_id));
            }
            // 55006: a running process holds that instance name. A chosen name is an error; a slot,
            // the next one.
            Err(error) if error.code() == Some(&SqlState::OBJECT_IN_USE) && instance.is_none() => {}
            Err(error) => return Err(error),
        }
    }
    unreachable!("there is always a next slot")
}

fn run_actor(
    dsn: &str,
    instance: Option<&str>,
    task_table: Option<&str>,
    items: &[String],
) -> Result<(), postgres::Error> {
    let mut db = Client::connect(dsn, NoTls)?;
    let pid = std::process::id() as i32;
    let (instance, boot_id) = register(&mut db, instance, pid)?;
    let mut outcomes = BTreeMap::new();
    for task in items {
        *outcomes
            .entry(advance(
                &mut db, task, &instance, pid, &boot_id, task_table,
            )?)
            .or_insert(0) += 1;
    }
    let summary: Vec<String> = outcomes.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("{instance}: {}", summary.join(" "));
    Ok(())
}

/// The alerting bridge: every forced or stale reclaim arrives as JSON on channel orch_lease.
fn listen(dsn: &str, seconds: u64) -> Result<(), postgres::Error> {
    let mut db = Client::connect(dsn, NoTls)?;
    db.batch_execute("LISTEN orch_lease")?;
    println!("listening");
    let deadline = SystemTime::now() + Duration::from_secs(seconds);
    let mut notifications = db.notifications();
    while let Ok(left) = deadline.duration_since(SystemTime::now()) {
        if let Some(note) = notifications.timeout_iter(left).next()? {
            println!("ALERT {}", note.payload()); // JSON, format version 3: {"version":3,"events":[{event, work_item, task_table, old_owner, old_token, reason…}]}
        }
    }
    Ok(())
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut option = |name: &str| {
        let at = args.iter().position(|a| a == name)?;
        let value = args.get(at + 1).cloned();
        args.drain(at..(at + 2).min(args.len()));
        value
    };
    let dsn = option("--dsn").expect("--dsn is required");
    let instance = option("--instance");
    let task_table = option("--task-table");
    let result = match option("--listen") {
        Some(seconds) => listen(&dsn, seconds.parse().expect("--listen SECONDS")),
        None => run_actor(&dsn, instance.as_deref(), task_table.as_deref(), &args),
    };
    if let Err(error) = result {
        match error.as_db_error() {
            // As PostgreSQL sent it: SQLSTATE, message, detail, hint.
            Some(db) => {
                eprintln!("{} {}: {}", db.severity(), db.code().code(), db.message());
                db.detail().inspect(|detail| eprintln!("DETAIL: {detail}"));
                db.hint().inspect(|hint| eprintln!("HINT: {hint}"));
            }
            None => eprintln!("{error}"),
        }
        let in_use = error.code() == Some(&SqlState::OBJECT_IN_USE);
        std::process::exit(if in_use { 2 } else { 1 });
    }
}
