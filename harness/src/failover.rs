//! Failover: actors acquire and commit against a primary with a streaming standby; the primary is
//! stopped hard mid-run and the standby promoted; the actors reconnect (one multi-host DSN with
//! `target_session_attrs=read-write`), register a new incarnation with recover and carry on. Then
//! every acknowledged grant and stage commit must be on the promoted server, no token may have been
//! handed out twice, and every token granted after the promotion must exceed every token acknowledged
//! before the crash. With an asynchronous standby whose WAL receiver is frozen before the crash and
//! killed (not thawed) before the promotion, the same check must report lost grants and commits: the
//! red run that proves it can see a loss.
//!
//! Each actor appends what the server acknowledged to its own log, one line per acknowledgement, with
//! the server's clock when it answered (ns since the epoch; both servers run on this machine):
//! `A <item> <token> <at>` (a grant), `C <item> <token> <stage> <at>` (an applied commit), `R <boot> <at>`
//! (recover). Acknowledgements answered before the crash command returned came from the old primary;
//! those answered after the promotion came from the promoted standby.
use crate::kit::{applied_commits, connect, now_ns, reconnect, shell, spawn, Rng};
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
    /// The primary alone, for the tasks.
    pub primary_dsn: String,
    pub actors: usize,
    pub items: usize,
    /// Load before the crash, and after the promotion.
    pub before: Duration,
    pub after: Duration,
    /// Shell commands: stop the primary hard, promote the standby; optionally freeze the standby's WAL
    /// receiver a second before the crash and, after it, drop what the receiver never wrote (kill it),
    /// to see what a lagging standby loses.
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
    if let Some((freeze, _)) = &plan.freeze {
        shell(freeze);
        std::thread::sleep(Duration::from_secs(1));
    }
    shell(&plan.crash);
    // Every answer the old primary gave was given before its stop command returned.
    let crashed = now_ns();
    if let Some((_, drop_unwritten)) = &plan.freeze {
        shell(drop_unwritten);
    }
    shell(&plan.promote);
    let promoted = now_ns();
    for mut actor in actors {
        assert!(actor.wait().unwrap().success(), "an actor failed");
    }
    let acknowledged = acknowledged(&plan.dir);
    let mut db = connect(&plan.dsn);
    check(&mut db, &acknowledged, crashed, promoted)
}

/// What the actors were told had committed, each with the server's answer time: grants (item, token,
/// at) and commits (item, token, stage, at).
#[derive(Default)]
struct Acknowledged {
    grants: Vec<(String, i64, u128)>,
    commits: Vec<(String, i64, u32, u128)>,
    recovers: usize,
}

/// Every acknowledgement in the actors' logs (they have all exited).
fn acknowledged(dir: &Path) -> Acknowledged {
    let mut seen = Acknowledged::default();
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for line in text.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            match fields.as_slice() {
                ["A", item, token, at] => seen.grants.push((
                    item.to_string(),
                    token.parse().unwrap(),
                    at.parse().unwrap(),
                )),
                ["C", item, token, stage, at] => seen.commits.push((
                    item.to_string(),
                    token.parse().unwrap(),
                    stage.parse().unwrap(),
                    at.parse().unwrap(),
                )),
                ["R", _, _] => seen.recovers += 1,
                _ => unreachable!("an actor log line: {line}"),
            }
        }
    }
    seen
}

#[derive(Debug)]
pub struct Report {
    pub grants_acknowledged: usize,
    pub commits_acknowledged: usize,
    pub grants_lost: usize,
    pub commits_lost: usize,
    pub tokens_granted_twice: usize,
    pub grants_before_crash: usize,
    pub grants_after_promotion: usize,
    pub tokens_not_above_the_crash: usize,
    pub recovers: usize,
}

impl Report {
    pub fn holds(&self) -> bool {
        self.grants_lost == 0
            && self.commits_lost == 0
            && self.tokens_granted_twice == 0
            && self.tokens_not_above_the_crash == 0
            && self.grants_before_crash > 0
            && self.grants_after_promotion > 0
    }

    /// What an asynchronous standby that missed the last second must show: acknowledged grants and
    /// commits lost, with the load on both sides of the failover.
    pub fn lost_work(&self) -> bool {
        self.grants_lost > 0
            && self.commits_lost > 0
            && self.grants_before_crash > 0
            && self.grants_after_promotion > 0
    }

    pub fn print(&self) {
        println!(
            "failover: {} grants and {} commits acknowledged ({} grants before the crash, {} after the \
             promotion, {} recovers); lost: {} grants, {} commits; tokens granted twice: {}; \
             post-promotion tokens not above the crash: {}",
            self.grants_acknowledged,
            self.commits_acknowledged,
            self.grants_before_crash,
            self.grants_after_promotion,
            self.recovers,
            self.grants_lost,
            self.commits_lost,
            self.tokens_granted_twice,
            self.tokens_not_above_the_crash,
        );
    }
}

fn check(db: &mut Client, seen: &Acknowledged, crashed: u128, promoted: u128) -> Report {
    let server = Promoted::read(db);
    // A token acknowledged to two actors was handed out twice, whatever the server remembers.
    let mut tokens = HashSet::new();
    let acknowledged_twice = seen
        .grants
        .iter()
        .filter(|(_, token, _)| !tokens.insert(*token))
        .count();
    let before_crash: Vec<i64> = seen
        .grants
        .iter()
        .filter(|(_, _, at)| *at < crashed)
        .map(|(_, t, _)| *t)
        .collect();
    let crash_token = before_crash.iter().copied().max().unwrap_or(0);
    let after_promotion: Vec<i64> = seen
        .grants
        .iter()
        .filter(|(_, _, at)| *at > promoted)
        .map(|(_, t, _)| *t)
        .collect();
    Report {
        grants_acknowledged: seen.grants.len(),
        commits_acknowledged: seen.commits.len(),
        grants_lost: seen
            .grants
            .iter()
            .filter(|(item, token, _)| !server.has_grant(item, *token))
            .count(),
        commits_lost: seen
            .commits
            .iter()
            .filter(|(item, token, stage, _)| !server.has_commit(item, *token, *stage))
            .count(),
        tokens_granted_twice: server.granted_twice + acknowledged_twice,
        grants_before_crash: before_crash.len(),
        grants_after_promotion: after_promotion.len(),
        tokens_not_above_the_crash: after_promotion
            .iter()
            .filter(|t| **t <= crash_token)
            .count(),
        recovers: seen.recovers,
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
        let applied = applied_commits(db);
        let stages = db
            .query("SELECT id, substr(stage, 2)::int FROM ha_task", &[])
            .unwrap()
            .iter()
            .map(|row| (row.get(0), row.get::<_, i32>(1) as u32))
            .collect();
        Promoted {
            granted,
            granted_twice,
            applied,
            stages,
        }
    }

    fn has_grant(&self, item: &str, token: i64) -> bool {
        self.granted
            .get(&token)
            .is_some_and(|granted| granted == item)
    }

    /// The commit is in the history, and the task is at its stage or beyond.
    fn has_commit(&self, item: &str, token: i64, stage: u32) -> bool {
        self.applied
            .contains(&(item.to_string(), token, format!("v{stage}")))
            && self.stages.get(item).is_some_and(|now| *now >= stage)
    }
}

/// The server's clock as it answers, in ns since the epoch (microsecond precision).
const NOW_NS: &str = "(extract(epoch FROM clock_timestamp()) * 1e9)::bigint";

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
        let Ok(at) = db
            .query_one(
                &format!("WITH r AS (SELECT * FROM orch_lease.transition_lease_recover($1, $2)) SELECT {NOW_NS}"),
                &[&boot, &role],
            )
            .map(|row| row.get::<_, i64>(0))
        else {
            continue;
        };
        writeln!(log, "R {boot} {at}").unwrap();
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
        &format!(
            "SELECT acquired, token, {NOW_NS} FROM orch_lease.transition_lease_acquire($1, $2, $3, $4)"
        ),
        &[&item, &role, &(std::process::id() as i32), &boot],
    )?;
    let Some(token) = grant
        .get::<_, Option<i64>>(1)
        .filter(|_| grant.get::<_, bool>(0))
    else {
        return Ok(());
    };
    writeln!(log, "A {item} {token} {}", grant.get::<_, i64>(2)).unwrap();
    let stage: String = db
        .query_one("SELECT stage FROM ha_task WHERE id = $1", &[&item])?
        .get(0);
    let next = stage[1..].parse::<u32>().unwrap() + 1;
    let commit = db.query_one(
        &format!("SELECT outcome, {NOW_NS} FROM orch_lease.commit_stage_cas($1, $2, $3, $4)"),
        &[&item, &token, &stage, &format!("v{next}")],
    )?;
    if commit.get::<_, String>(0) == "applied" {
        writeln!(log, "C {item} {token} {next} {}", commit.get::<_, i64>(1)).unwrap();
    }
    Ok(())
}
