//! Failover: actors acquire and commit against a primary with a streaming standby; the primary is
//! stopped hard mid-run and the standby promoted; the actors reconnect (one multi-host DSN with
//! `target_session_attrs=read-write`), register a new incarnation with recover and carry on. Then
//! every acknowledged grant and stage commit must be on the promoted server, no token may have been
//! handed out twice, and every token granted after the promotion must exceed every token acknowledged
//! before the crash. With an asynchronous standby whose WAL receiver is frozen before the crash and
//! killed (not thawed) before the promotion, the same check must report lost grants and commits: the
//! red run that proves it can see a loss.
//!
//! Each actor appends what the server acknowledged to its own log, one line per acknowledgement (one
//! write each, so a log read mid-run ends at worst in one unfinished line), with the server's clock when
//! it answered (ns since the epoch; every server runs on this machine) and the server's port:
//! `A <item> <token> <at> <port>` (a grant), `C <item> <token> <stage> <at> <port>` (an applied commit),
//! `R <boot> <at>` (recover). Acknowledgements answered before the crash command returned came from the
//! old primary; those answered after the promotion came from the promoted standby.
//!
//! A longer run with several faults (scripts/patroni-test.sh: Patroni decides the promotions) starts the
//! actors itself and, after each fault, calls [`check_fault`] while they keep working: everything
//! acknowledged so far must be on the current leader, the old leader must not have acknowledged anything
//! once the new one answered, and a lease acquired in a transaction left open across the fault must be
//! absent.
use crate::kit::{applied_commits, connect, lost_connection, now_ns, reconnect, shell, spawn, Rng};
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
    let window = Window {
        before: crashed,
        after: promoted,
        injected: crashed,
        leaders: None,
        in_flight: None,
    };
    check(&mut db, &acknowledged, &window)
}

/// One fault of a longer run: when it was injected, the ports of the leader before and after it, and
/// the work item of a transaction that was left open on the old leader across it.
pub struct Fault {
    pub injected: u128,
    pub old_port: i32,
    pub new_port: i32,
    pub in_flight: Option<String>,
}

/// Checks, while the actors keep working, what they were told so far (their logs in `dir`) against the
/// server `dsn` finds (the leader now). The failover's moment is the first grant the new leader
/// acknowledged after the fault: the old leader must acknowledge nothing from then on, and every token
/// granted from then on must exceed every token acknowledged before it.
pub fn check_fault(dsn: &str, dir: &Path, fault: &Fault) -> Report {
    let seen = acknowledged(dir); // first: whatever it lists had committed before the server is read
    let back = seen
        .grants
        .iter()
        .filter(|grant| grant.port == fault.new_port && grant.at > fault.injected)
        .map(|grant| grant.at)
        .min()
        .unwrap_or(u128::MAX);
    let moved = fault.old_port != fault.new_port;
    let window = Window {
        before: if moved { back } else { fault.injected },
        after: back,
        injected: fault.injected,
        leaders: moved.then_some((fault.old_port, back)),
        in_flight: fault.in_flight.as_deref(),
    };
    check(&mut connect(dsn), &seen, &window)
}

/// How a check splits the acknowledgements around a failover (ns since the epoch).
struct Window<'a> {
    /// Grants acknowledged before this came before the failover…
    before: u128,
    /// …and those from this on after it: every token of the latter must exceed every one of the former.
    after: u128,
    /// When the fault was injected: where the pauses in the actors' work are looked for.
    injected: u128,
    /// When the leader changed: the old leader's port, and the moment from which it must acknowledge
    /// nothing.
    leaders: Option<(i32, u128)>,
    /// A lease acquired in a transaction that never committed: absent from the server.
    in_flight: Option<&'a str>,
}

/// One acknowledgement: a grant (`stage` None) or an applied commit, with the server's answer time
/// and port.
struct Ack {
    item: String,
    token: i64,
    stage: Option<u32>,
    at: u128,
    port: i32,
}

/// What the actors were told had committed.
#[derive(Default)]
struct Acknowledged {
    grants: Vec<Ack>,
    commits: Vec<Ack>,
    recovers: usize,
}

/// Every acknowledgement in the actors' logs; a last line still being written is left for later.
fn acknowledged(dir: &Path) -> Acknowledged {
    let mut seen = Acknowledged::default();
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for line in text
            .split_inclusive('\n')
            .filter_map(|l| l.strip_suffix('\n'))
        {
            let fields: Vec<&str> = line.split(' ').collect();
            let ack = |item: &str, token: &str, stage: Option<&str>, at: &str, port: &str| Ack {
                item: item.to_string(),
                token: token.parse().unwrap(),
                stage: stage.map(|stage| stage.parse().unwrap()),
                at: at.parse().unwrap(),
                port: port.parse().unwrap(),
            };
            match fields.as_slice() {
                ["A", item, token, at, port] => seen.grants.push(ack(item, token, None, at, port)),
                ["C", item, token, stage, at, port] => {
                    seen.commits.push(ack(item, token, Some(stage), at, port))
                }
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
    /// Grants and commits the old leader acknowledged once the new one had answered.
    pub old_leader_acks_after_promotion: usize,
    /// The lease of a transaction left open across the failover is on the server.
    pub in_flight_present: bool,
    /// The longest time without a grant acknowledged, from the fault on: how long the actors stood.
    pub longest_pause_ms: u128,
    pub recovers: usize,
}

impl Report {
    pub fn holds(&self) -> bool {
        self.grants_lost == 0
            && self.commits_lost == 0
            && self.tokens_granted_twice == 0
            && self.tokens_not_above_the_crash == 0
            && self.old_leader_acks_after_promotion == 0
            && !self.in_flight_present
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
             post-promotion tokens not above the crash: {}; old leader's acknowledgements after the \
             promotion: {}; in-flight lease present: {}; longest pause in grants: {:.1} s",
            self.grants_acknowledged,
            self.commits_acknowledged,
            self.grants_before_crash,
            self.grants_after_promotion,
            self.recovers,
            self.grants_lost,
            self.commits_lost,
            self.tokens_granted_twice,
            self.tokens_not_above_the_crash,
            self.old_leader_acks_after_promotion,
            self.in_flight_present,
            self.longest_pause_ms as f64 / 1000.0,
        );
    }
}

fn check(db: &mut Client, seen: &Acknowledged, window: &Window) -> Report {
    let server = Promoted::read(db, window.in_flight);
    // A token acknowledged to two actors was handed out twice, whatever the server remembers.
    let mut tokens = HashSet::new();
    let acknowledged_twice = seen
        .grants
        .iter()
        .filter(|grant| !tokens.insert(grant.token))
        .count();
    let before_crash: Vec<i64> = seen
        .grants
        .iter()
        .filter(|grant| grant.at < window.before)
        .map(|grant| grant.token)
        .collect();
    let crash_token = before_crash.iter().copied().max().unwrap_or(0);
    let after_promotion: Vec<i64> = seen
        .grants
        .iter()
        .filter(|grant| grant.at >= window.after)
        .map(|grant| grant.token)
        .collect();
    let old_leader_acks_after_promotion = window.leaders.map_or(0, |(old_port, promoted)| {
        seen.grants
            .iter()
            .chain(&seen.commits)
            .filter(|ack| ack.port == old_port && ack.at >= promoted)
            .count()
    });
    Report {
        grants_acknowledged: seen.grants.len(),
        commits_acknowledged: seen.commits.len(),
        grants_lost: seen
            .grants
            .iter()
            .filter(|grant| !server.has_grant(&grant.item, grant.token))
            .count(),
        commits_lost: seen
            .commits
            .iter()
            .filter(|commit| !server.has_commit(commit))
            .count(),
        tokens_granted_twice: server.granted_twice + acknowledged_twice,
        grants_before_crash: before_crash.len(),
        grants_after_promotion: after_promotion.len(),
        tokens_not_above_the_crash: after_promotion
            .iter()
            .filter(|t| **t <= crash_token)
            .count(),
        old_leader_acks_after_promotion,
        in_flight_present: server.in_flight_present,
        longest_pause_ms: longest_pause(seen, window.injected) / 1_000_000,
        recovers: seen.recovers,
    }
}

/// The longest time between two grants acknowledged one after the other (by any actor), the later one
/// after `from`, in ns.
fn longest_pause(seen: &Acknowledged, from: u128) -> u128 {
    let mut times: Vec<u128> = seen.grants.iter().map(|grant| grant.at).collect();
    times.sort_unstable();
    times
        .windows(2)
        .filter(|pair| pair[1] > from)
        .map(|pair| pair[1] - pair[0])
        .max()
        .unwrap_or(0)
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
    /// A lease or an event of the in-flight transaction's item exists.
    in_flight_present: bool,
}

impl Promoted {
    fn read(db: &mut Client, in_flight: Option<&str>) -> Promoted {
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
        let in_flight_present = in_flight.is_some_and(|item| {
            db.query_one(
                "SELECT EXISTS (SELECT FROM orch_lease.transition_lease WHERE work_item = $1)
                     OR EXISTS (SELECT FROM orch_lease.lease_event WHERE work_item = $1)",
                &[&item],
            )
            .unwrap()
            .get(0)
        });
        Promoted {
            granted,
            granted_twice,
            applied,
            stages,
            in_flight_present,
        }
    }

    fn has_grant(&self, item: &str, token: i64) -> bool {
        self.granted
            .get(&token)
            .is_some_and(|granted| granted == item)
    }

    /// The commit is in the history, and the task is at its stage or beyond.
    fn has_commit(&self, commit: &Ack) -> bool {
        let stage = commit.stage.unwrap();
        self.applied
            .contains(&(commit.item.clone(), commit.token, format!("v{stage}")))
            && self
                .stages
                .get(&commit.item)
                .is_some_and(|now| *now >= stage)
    }
}

/// The server's clock as it answers, in ns since the epoch (microsecond precision), and its port.
const NOW_NS: &str =
    "(extract(epoch FROM clock_timestamp()) * 1e9)::bigint, current_setting('port')::int";

/// Appends one line to an actor's log in one write.
fn log_line(log: &mut File, line: String) {
    log.write_all(format!("{line}\n").as_bytes()).unwrap();
}

/// One actor: acquire (which says the stage), commit the next stage; on a lost connection, reconnect, register
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
        let at = match db.query_one(
            &format!("WITH r AS (SELECT * FROM orch_lease.transition_lease_recover($1, $2)) SELECT {NOW_NS}"),
            &[&boot, &role],
        ) {
            Ok(row) => row.get::<_, i64>(0),
            Err(error) => {
                expect_lost_connection(role, "recover", &error);
                continue;
            }
        };
        log_line(&mut log, format!("R {boot} {at}"));
        while Instant::now() < deadline {
            let item = format!("ha-{}", rng.below(items as u64) + 1);
            if let Err(error) = step(&mut db, &mut log, role, &boot, &item) {
                expect_lost_connection(role, &item, &error);
                break; // the connection is gone: a new incarnation
            }
        }
    }
}

/// Only a lost connection sends an actor to a new incarnation; any other error — orch_lease raising
/// where contention must come back as an outcome, under failover too — fails the actor (and the run:
/// its exit status is checked).
fn expect_lost_connection(role: &str, doing: &str, error: &postgres::Error) {
    assert!(
        lost_connection(error),
        "{role} ({doing}): an error that is not a lost connection: {} {}",
        error.code().map_or("(no SQLSTATE)", |code| code.code()),
        error
            .as_db_error()
            .map_or(error.to_string(), |db| db.message().to_string())
    );
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
            "SELECT acquired, token, {NOW_NS}, stage
               FROM orch_lease.transition_lease_acquire($1, $2, $3, $4)"
        ),
        &[&item, &role, &(std::process::id() as i32), &boot],
    )?;
    let Some(token) = grant
        .get::<_, Option<i64>>(1)
        .filter(|_| grant.get::<_, bool>(0))
    else {
        return Ok(());
    };
    let (at, port) = (grant.get::<_, i64>(2), grant.get::<_, i32>(3));
    log_line(log, format!("A {item} {token} {at} {port}"));
    let stage: String = grant.get(4);
    let next = stage[1..].parse::<u32>().unwrap() + 1;
    let commit = db.query_one(
        &format!("SELECT outcome, {NOW_NS} FROM orch_lease.commit_stage_cas($1, $2, $3, $4)"),
        &[&item, &token, &stage, &format!("v{next}")],
    )?;
    if commit.get::<_, String>(0) == "applied" {
        let (at, port) = (commit.get::<_, i64>(1), commit.get::<_, i32>(2));
        log_line(log, format!("C {item} {token} {next} {at} {port}"));
    }
    Ok(())
}
