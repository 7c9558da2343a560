//! Failover: actors acquire and commit against a primary with a streaming standby; the primary is
//! stopped hard mid-run and the standby promoted; the actors reconnect (one multi-host DSN with
//! `target_session_attrs=read-write`), register a new incarnation with recover and carry on. Then
//! every acknowledged grant and stage commit must be on the promoted server, no token may have been
//! handed out twice, every token granted after the promotion must exceed every token acknowledged
//! before the crash, and a lease acquired in a transaction that never committed must be absent.
//!
//! Each actor appends what the server acknowledged to its own log, one line per acknowledgement:
//! `A <item> <token>` (a grant), `C <item> <token> <stage>` (an applied commit), `R <boot>` (recover).
use crate::kit::{connect, count, reconnect, shell, spawn, Rng};
use postgres::Client;
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

pub struct Plan {
    /// Both servers: `host=P,S port=p,s … target_session_attrs=read-write`.
    pub dsn: String,
    /// The primary alone, for the transaction left in flight at the crash.
    pub primary_dsn: String,
    pub actors: usize,
    pub items: usize,
    /// Load before the crash, and after the promotion.
    pub before: Duration,
    pub after: Duration,
    /// Shell commands: stop the primary hard, promote the standby; optionally freeze the standby's WAL
    /// receiver before the crash (and thaw it after), to measure what an asynchronous standby loses.
    pub crash: String,
    pub promote: String,
    pub freeze: Option<(String, String)>,
    pub dir: PathBuf,
}

/// The tasks `ha-1..n`, stage `v0`: each commit moves one from `vK` to `vK+1`.
pub fn prepare(db: &mut Client, items: usize) {
    db.batch_execute(&format!(
        "DROP TABLE IF EXISTS ha_task;
         CREATE TABLE ha_task (id text PRIMARY KEY, stage text NOT NULL);
         INSERT INTO ha_task SELECT 'ha-' || i, 'v0' FROM generate_series(1, {items}) i;
         SELECT orch_lease.register_task_table('ha_task');"
    ))
    .unwrap();
}

pub fn run(exe: &Path, plan: &Plan) -> Report {
    std::fs::create_dir_all(&plan.dir).unwrap();
    let seconds = (plan.before + plan.after).as_secs();
    let actors: Vec<Child> = (0..plan.actors)
        .map(|n| {
            spawn(
                exe,
                "failover-actor",
                &[
                    ("dsn", plan.dsn.clone()),
                    ("role", format!("actor-{n}")),
                    ("items", plan.items.to_string()),
                    ("dir", plan.dir.display().to_string()),
                    ("seconds", seconds.to_string()),
                ],
            )
        })
        .collect();
    std::thread::sleep(plan.before);

    // A transaction in flight at the crash: its lease must not survive it.
    let mut in_flight = connect(&plan.primary_dsn);
    in_flight.batch_execute("BEGIN").unwrap();
    in_flight
        .query(
            "SELECT orch_lease.transition_lease_acquire('in-flight', 'zombie', 1, 'zombie-boot')",
            &[],
        )
        .unwrap();
    if let Some((freeze, _)) = &plan.freeze {
        shell(freeze);
        std::thread::sleep(Duration::from_secs(1));
    }
    shell(&plan.crash);
    drop(in_flight);
    // What was acknowledged up to the crash; what the logs gain from here on came after it.
    let (before_crash, read) = acknowledged(&plan.dir, &HashMap::new());
    if let Some((_, thaw)) = &plan.freeze {
        shell(thaw);
    }
    shell(&plan.promote);
    for mut actor in actors {
        assert!(actor.wait().unwrap().success(), "an actor failed");
    }
    let (after_crash, _) = acknowledged(&plan.dir, &read);
    let mut db = connect(&plan.dsn);
    check(&mut db, &before_crash, &after_crash)
}

/// What the actors were told had committed: grants (item, token) and commits (item, token, stage).
#[derive(Default)]
struct Acknowledged {
    grants: Vec<(String, i64)>,
    commits: Vec<(String, i64, u32)>,
    recovers: usize,
}

/// The acknowledgements in the actors' logs past the given byte offsets, and the logs' lengths now.
fn acknowledged(
    dir: &Path,
    since: &HashMap<PathBuf, usize>,
) -> (Acknowledged, HashMap<PathBuf, usize>) {
    let mut seen = Acknowledged::default();
    let mut read = HashMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        // Up to the last complete line: an actor may be writing one right now.
        let end = text.rfind('\n').map_or(0, |at| at + 1);
        let start = since.get(&path).copied().unwrap_or(0);
        for line in text[start..end].lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            match fields.as_slice() {
                ["A", item, token] => seen.grants.push((item.to_string(), token.parse().unwrap())),
                ["C", item, token, stage] => seen.commits.push((
                    item.to_string(),
                    token.parse().unwrap(),
                    stage.parse().unwrap(),
                )),
                ["R", _] => seen.recovers += 1,
                _ => unreachable!("an actor log line: {line}"),
            }
        }
        read.insert(path, end);
    }
    (seen, read)
}

#[derive(Debug)]
pub struct Report {
    pub grants_acknowledged: usize,
    pub commits_acknowledged: usize,
    pub grants_lost: usize,
    pub commits_lost: usize,
    pub tokens_granted_twice: usize,
    pub grants_after_promotion: usize,
    pub tokens_not_above_the_crash: usize,
    pub in_flight_survived: bool,
    pub recovers: usize,
}

impl Report {
    pub fn holds(&self) -> bool {
        self.grants_lost == 0
            && self.commits_lost == 0
            && self.tokens_granted_twice == 0
            && self.tokens_not_above_the_crash == 0
            && !self.in_flight_survived
            && self.grants_after_promotion > 0
    }

    pub fn print(&self) {
        println!(
            "failover: {} grants and {} commits acknowledged ({} after the promotion, {} recovers); \
             lost: {} grants, {} commits; tokens granted twice: {}; post-promotion tokens not above \
             the crash: {}; in-flight lease survived: {}",
            self.grants_acknowledged,
            self.commits_acknowledged,
            self.grants_after_promotion,
            self.recovers,
            self.grants_lost,
            self.commits_lost,
            self.tokens_granted_twice,
            self.tokens_not_above_the_crash,
            self.in_flight_survived
        );
    }
}

fn check(db: &mut Client, before_crash: &Acknowledged, after_crash: &Acknowledged) -> Report {
    let server = Promoted::read(db);
    let grants: Vec<&(String, i64)> = before_crash
        .grants
        .iter()
        .chain(&after_crash.grants)
        .collect();
    let commits: Vec<&(String, i64, u32)> = before_crash
        .commits
        .iter()
        .chain(&after_crash.commits)
        .collect();
    // A token acknowledged to two actors was handed out twice, whatever the server remembers.
    let mut tokens = HashSet::new();
    let acknowledged_twice = grants
        .iter()
        .filter(|(_, token)| !tokens.insert(*token))
        .count();
    let crash_token = before_crash
        .grants
        .iter()
        .map(|(_, t)| *t)
        .max()
        .unwrap_or(0);
    Report {
        grants_acknowledged: grants.len(),
        commits_acknowledged: commits.len(),
        grants_lost: grants
            .iter()
            .filter(|grant| !server.has_grant(grant))
            .count(),
        commits_lost: commits
            .iter()
            .filter(|commit| !server.has_commit(commit))
            .count(),
        tokens_granted_twice: server.granted_twice + acknowledged_twice,
        grants_after_promotion: after_crash.grants.len(),
        tokens_not_above_the_crash: after_crash
            .grants
            .iter()
            .filter(|(_, t)| *t <= crash_token)
            .count(),
        in_flight_survived: server.in_flight_survived,
        recovers: before_crash.recovers + after_crash.recovers,
    }
}

/// What the promoted server holds.
struct Promoted {
    /// Every grant it knows of, by token (the history records each one).
    granted: HashMap<i64, String>,
    /// Grants its history holds twice for one token.
    granted_twice: usize,
    /// Every applied commit: (item, token, stage reached).
    applied: HashSet<(String, i64, String)>,
    /// Each task's stage number now.
    stages: HashMap<String, u32>,
    /// The lease or the history of the transaction in flight at the crash.
    in_flight_survived: bool,
}

impl Promoted {
    fn read(db: &mut Client) -> Promoted {
        let mut granted: HashMap<i64, String> = HashMap::new();
        let mut granted_twice = 0;
        for row in db
            .query(
                "SELECT work_item, new_token FROM orch_lease.lease_event
                  WHERE event IN ('acquired', 'reclaimed') AND new_token IS NOT NULL",
                &[],
            )
            .unwrap()
        {
            if granted.insert(row.get(1), row.get(0)).is_some() {
                granted_twice += 1;
            }
        }
        let applied = db
            .query(
                "SELECT work_item, old_token, stage_to FROM orch_lease.lease_event WHERE event = 'cas_applied'",
                &[],
            )
            .unwrap()
            .iter()
            .map(|row| (row.get(0), row.get(1), row.get(2)))
            .collect();
        let stages = db
            .query("SELECT id, substr(stage, 2)::int FROM ha_task", &[])
            .unwrap()
            .iter()
            .map(|row| (row.get(0), row.get::<_, i32>(1) as u32))
            .collect();
        let in_flight = count(
            db,
            "SELECT (SELECT count(*) FROM orch_lease.lease_event WHERE work_item = 'in-flight')
                  + (SELECT count(*) FROM orch_lease.transition_lease WHERE work_item = 'in-flight')",
        );
        Promoted {
            granted,
            granted_twice,
            applied,
            stages,
            in_flight_survived: in_flight > 0,
        }
    }

    fn has_grant(&self, (item, token): &(String, i64)) -> bool {
        self.granted.get(token) == Some(item)
    }

    /// The commit is in the history, and the task is at its stage or beyond.
    fn has_commit(&self, (item, token, stage): &(String, i64, u32)) -> bool {
        self.applied
            .contains(&(item.clone(), *token, format!("v{stage}")))
            && self.stages.get(item).is_some_and(|now| now >= stage)
    }
}

/// One actor: acquire, read the stage, commit the next stage; on a lost connection, reconnect, register
/// a new incarnation with recover (which releases the leases of the old one) and go on.
pub fn run_actor(dsn: &str, role: &str, items: usize, dir: &Path, seconds: u64) {
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{role}.log")))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut incarnation = 0;
    let mut rng = Rng::seeded(std::process::id() as u64);
    while Instant::now() < deadline {
        incarnation += 1;
        let boot = format!("{role}-boot-{incarnation}");
        let Some(mut db) = reconnect(dsn, deadline) else {
            return;
        };
        if db
            .query(
                "SELECT * FROM orch_lease.transition_lease_recover($1, $2)",
                &[&boot, &role],
            )
            .is_err()
        {
            continue;
        }
        writeln!(log, "R {boot}").unwrap();
        while Instant::now() < deadline {
            let item = format!("ha-{}", rng.below(items as u64) + 1);
            if step(&mut db, &mut log, role, &boot, &item).is_err() {
                break; // the connection is gone: a new incarnation
            }
        }
    }
}

fn step(
    db: &mut Client,
    log: &mut File,
    role: &str,
    boot: &str,
    item: &str,
) -> Result<(), postgres::Error> {
    let grant = db.query_one(
        "SELECT acquired, token FROM orch_lease.transition_lease_acquire($1, $2, $3, $4)",
        &[&item, &role, &(std::process::id() as i32), &boot],
    )?;
    let Some(token) = grant
        .get::<_, Option<i64>>(1)
        .filter(|_| grant.get::<_, bool>(0))
    else {
        return Ok(());
    };
    writeln!(log, "A {item} {token}").unwrap();
    let stage: String = db
        .query_one("SELECT stage FROM ha_task WHERE id = $1", &[&item])?
        .get(0);
    let next = stage[1..].parse::<u32>().unwrap() + 1;
    let outcome: String = db
        .query_one(
            "SELECT outcome FROM orch_lease.commit_stage_cas($1, $2, $3, $4)",
            &[&item, &token, &stage, &format!("v{next}")],
        )?
        .get(0);
    if outcome == "applied" {
        writeln!(log, "C {item} {token} {next}").unwrap();
    }
    Ok(())
}
