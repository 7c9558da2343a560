//! The soak: N actor processes drive M tasks through a stage pipeline while faults are injected —
//! SIGKILL of actors (restarted with a new boot id, which call recover), `pg_terminate_backend` of their
//! sessions, and immediate server stops. Each transition has an irreversible effect recorded OUTSIDE the
//! database, in the actor incarnation's own append-only file: `S` when the effect starts, `E` when it
//! ends, `D` when the commit that closes the transition has answered (with its outcome). Between `S` and
//! `D` the actor is inside the transition's side-effect region. Afterwards the files and the database are checked against the
//! invariants and the figures printed.
use crate::{connect, create_tasks, now_ns, Mode, Rng};
use postgres::Client;
use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The pipeline every task goes through, one irreversible effect per transition.
pub const PIPELINE: [&str; 5] = ["queued", "built", "tested", "merged", "deployed"];

fn next_stage(stage: &str) -> Option<&'static str> {
    let at = PIPELINE.iter().position(|s| *s == stage)?;
    PIPELINE.get(at + 1).copied()
}

/// The application tables of the soak (see `create_tasks`), with an index on the unfinished tasks.
pub fn prepare(db: &mut Client, items: usize) {
    create_tasks(db, "soak", items);
    db.batch_execute("CREATE INDEX soak_task_open ON soak_task (id) WHERE stage <> 'deployed'")
        .expect("soak index");
}

/// One actor incarnation: its session, its boot, its effect log, and the commit it still owes.
struct Actor {
    dsn: String,
    mode: Mode,
    instance: String,
    boot_id: String,
    pid: i32,
    effect_ms: u64,
    log: File,
    db: Client,
    rng: Rng,
    /// An effect done whose commit has not been answered yet: (task, token, from, to).
    pending: Option<(String, Option<i64>, String, String)>,
}

/// The body of one soak actor process. Runs until no task is left, or `max_attempts` in naive mode.
pub fn run_actor(
    dsn: &str,
    mode: Mode,
    instance: &str,
    dir: &Path,
    effect_ms: u64,
    max_attempts: u64,
) {
    let pid = std::process::id() as i32;
    let boot_id = format!("{instance}-{pid}-{}", now_ns());
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{boot_id}.log")))
        .expect("effect log");
    let db = connect_retrying(dsn, instance);
    let mut actor = Actor {
        dsn: dsn.into(),
        mode,
        instance: instance.into(),
        boot_id,
        pid,
        effect_ms,
        log,
        db,
        rng: Rng::seeded(pid as u64),
        pending: None,
    };
    if mode == Mode::Lease {
        // A fresh incarnation registers itself and takes back what the killed one left behind.
        while let Err(error) = actor.db.query(
            "SELECT * FROM orch_lease.transition_lease_recover($1, $2, $3)",
            &[&actor.boot_id, &actor.instance, &actor.pid],
        ) {
            actor.reconnect(&error);
        }
    }
    let mut attempts = 0;
    loop {
        attempts += 1;
        if mode == Mode::Naive && attempts > max_attempts {
            return;
        }
        match actor.step() {
            Ok(true) => {}
            Ok(false) => return, // nothing left to do
            Err(error) => actor.reconnect(&error),
        }
    }
}

fn connect_retrying(dsn: &str, instance: &str) -> Client {
    let dsn = format!("{dsn} application_name=soak-{instance}");
    for _ in 0..600 {
        if let Ok(client) = postgres::Client::connect(&dsn, postgres::NoTls) {
            return client;
        }
        std::thread::sleep(Duration::from_millis(100)); // the server may be restarting
    }
    connect(&dsn)
}

impl Actor {
    fn mark(&mut self, line: String) {
        // One write per line on an O_APPEND file: a SIGKILL leaves whole lines or none.
        self.log
            .write_all(format!("{line} {}\n", now_ns()).as_bytes())
            .expect("effect log write");
    }

    /// After a lost connection (terminated session, server restart): reconnect, and free any lease of
    /// this boot whose grant we never heard of — its effect was never started.
    fn reconnect(&mut self, error: &postgres::Error) {
        // Only a lost connection is expected here: operator intervention (57…, a terminated session or
        // a server going down) or a connection exception (08…). Anything else is a bug.
        if let Some(code) = error.code().map(|code| code.code()) {
            assert!(
                code.starts_with("57") || code.starts_with("08"),
                "{}: unexpected database error: {}",
                self.instance,
                error
                    .as_db_error()
                    .map_or(error.to_string(), |db| db.message().to_string())
            );
        }
        self.db = connect_retrying(&self.dsn, &self.instance);
        if self.mode == Mode::Lease {
            let keep = self.pending.as_ref().and_then(|(_, token, _, _)| *token);
            let _ = self.db.execute(
                "SELECT orch_lease.transition_lease_release(work_item, token)
                   FROM orch_lease.transition_lease
                  WHERE owner_boot_id = $1 AND token IS DISTINCT FROM $2",
                &[&self.boot_id, &keep],
            );
        }
    }

    /// One attempt at one transition. `Ok(false)` when every task is done.
    fn step(&mut self) -> Result<bool, postgres::Error> {
        if let Some((task, token, from, to)) = self.pending.clone() {
            self.commit(&task, token, &from, &to)?;
        }
        let open = self.db.query(
            "SELECT id, stage FROM soak_task WHERE stage <> 'deployed' ORDER BY random() LIMIT 1",
            &[],
        )?;
        let Some(row) = open.first() else {
            return Ok(false);
        };
        let (task, seen): (String, String) = (row.get(0), row.get(1));
        let to = next_stage(&seen)
            .expect("a stage of the pipeline")
            .to_string();
        match self.mode {
            Mode::Naive => {
                self.effect(&task, &seen, &to);
                self.db.execute(
                    "UPDATE soak_task SET stage = $2 WHERE id = $1",
                    &[&task, &to],
                )?;
                self.mark(format!("D {task} {to} applied"));
            }
            Mode::Lease => {
                let grant = self.db.query_one(
                    "SELECT acquired, outcome, token FROM orch_lease.transition_lease_acquire($1, $2, $3, $4)",
                    &[&task, &self.instance, &self.pid, &self.boot_id],
                )?;
                let (acquired, outcome, token): (bool, String, Option<i64>) =
                    (grant.get(0), grant.get(1), grant.get(2));
                if outcome == "superseded" {
                    panic!("{}: boot superseded while alive", self.instance);
                }
                if !acquired {
                    std::thread::sleep(Duration::from_millis(self.rng.below(3)));
                    return Ok(true);
                }
                // Under the lease: the stage now, not the one seen before acquiring.
                let from: String = self
                    .db
                    .query_one("SELECT stage FROM soak_task WHERE id = $1", &[&task])?
                    .get(0);
                let Some(to) = next_stage(&from) else {
                    self.db.execute(
                        "SELECT orch_lease.transition_lease_release($1, $2)",
                        &[&task, &token],
                    )?;
                    return Ok(true);
                };
                self.effect(&task, &from, to);
                self.pending = Some((task.clone(), token, from.clone(), to.to_string()));
                self.commit(&task, token, &from, to)?;
            }
        }
        Ok(true)
    }

    /// The irreversible effect of `task` going `from` → `to`, marked before and after.
    fn effect(&mut self, task: &str, from: &str, to: &str) {
        self.mark(format!("S {task} {from} {to}"));
        std::thread::sleep(Duration::from_millis(self.rng.below(self.effect_ms + 1)));
        self.mark(format!("E {task} {from} {to}"));
    }

    fn commit(
        &mut self,
        task: &str,
        token: Option<i64>,
        from: &str,
        to: &str,
    ) -> Result<(), postgres::Error> {
        let outcome: String = self
            .db
            .query_one(
                "SELECT outcome FROM orch_lease.commit_stage_cas($1, $2, $3, $4)",
                &[&task, &token, &from, &to],
            )?
            .get(0);
        self.pending = None;
        self.mark(format!("D {task} {to} {outcome}"));
        Ok(())
    }
}

/// How a soak run is shaped.
pub struct Plan {
    pub dsn: String,
    pub mode: Mode,
    pub actors: usize,
    pub items: usize,
    pub effect_ms: u64,
    /// Inject faults (kills, terminations, server restarts)?
    pub faults: bool,
    /// Shell command that stops the server immediately and starts it again.
    pub restart_command: Option<String>,
    pub server_restarts: usize,
    /// Naive mode stops each actor after this many attempts (it may never finish otherwise).
    pub max_attempts: u64,
    pub budget: Duration,
}

/// What the injector did.
#[derive(Default, Debug)]
pub struct Faults {
    pub kills: usize,
    pub terminations: usize,
    pub server_restarts: usize,
    /// When each killed incarnation died: its log file → ns.
    kill_time: HashMap<PathBuf, u128>,
}

struct Slot {
    instance: String,
    child: Child,
}

fn spawn(exe: &Path, plan: &Plan, dir: &Path, instance: &str) -> Child {
    Command::new(exe)
        .args(["soak-actor", "--mode", plan.mode.name(), "--role", instance])
        .args([
            "--effect-ms",
            &plan.effect_ms.to_string(),
            "--max-attempts",
            &plan.max_attempts.to_string(),
        ])
        .args(["--dir", dir.to_str().unwrap(), "--dsn", &plan.dsn])
        .spawn()
        .expect("spawn soak actor")
}

/// The newest log file of an actor process (its current incarnation).
fn log_of(dir: &Path, pid: u32) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .find(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.contains(&format!("-{pid}-")))
        })
}

/// Runs the soak: actors, faults, and then the checks.
pub fn run(exe: &Path, plan: &Plan) -> Report {
    let dir = std::env::temp_dir().join(format!(
        "orch_lease-soak-{}-{}",
        std::process::id(),
        now_ns()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let mut admin = connect(&plan.dsn);
    prepare(&mut admin, plan.items);
    let started = Instant::now();
    let mut slots: Vec<Slot> = (0..plan.actors)
        .map(|n| {
            let instance = format!("actor-{n}");
            Slot {
                child: spawn(exe, plan, &dir, &instance),
                instance,
            }
        })
        .collect();

    let mut faults = Faults::default();
    let mut rng = Rng::seeded(now_ns() as u64);
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let mut running = 0;
        for slot in &mut slots {
            match slot.child.try_wait().expect("actor status") {
                None => running += 1,
                Some(status) if !status.success() => panic!("{} failed: {status}", slot.instance),
                Some(_) => {}
            }
        }
        if running == 0 {
            break;
        }
        assert!(
            started.elapsed() < plan.budget,
            "the soak ran past its budget of {:?}",
            plan.budget
        );
        if !plan.faults {
            continue;
        }
        let open: i64 = match admin.query_one(
            "SELECT count(*) FROM soak_task WHERE stage <> 'deployed'",
            &[],
        ) {
            Ok(row) => row.get(0),
            Err(_) => {
                admin = connect_retrying(&plan.dsn, "injector");
                continue;
            }
        };
        let progress = 1.0 - open as f64 / plan.items as f64;
        // Server restarts at evenly spaced points of progress.
        if let Some(restart) = &plan.restart_command {
            let due = (faults.server_restarts + 1) as f64 / (plan.server_restarts + 1) as f64;
            if faults.server_restarts < plan.server_restarts && progress >= due {
                let status = Command::new("sh")
                    .args(["-c", restart])
                    .status()
                    .expect("restart command");
                assert!(status.success(), "server restart failed: {status}");
                faults.server_restarts += 1;
                admin = connect_retrying(&plan.dsn, "injector");
                continue;
            }
        }
        match rng.below(4) {
            0 => {
                // SIGKILL an actor mid-whatever; its replacement is a new incarnation.
                let slot = &mut slots[rng.below(plan.actors as u64) as usize];
                if slot.child.try_wait().expect("status").is_none() {
                    let pid = slot.child.id();
                    slot.child.kill().expect("kill");
                    let died = now_ns();
                    slot.child.wait().expect("reap");
                    if let Some(log) = log_of(&dir, pid) {
                        faults.kill_time.insert(log, died);
                    }
                    faults.kills += 1;
                    slot.child = spawn(exe, plan, &dir, &slot.instance);
                }
            }
            1 => {
                let gone: i64 = admin
                    .query_one(
                        "SELECT count(pg_terminate_backend(pid)) FROM (
                             SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'soak-actor-%'
                              ORDER BY random() LIMIT 1) victim",
                        &[],
                    )
                    .map(|row| row.get(0))
                    .unwrap_or(0);
                faults.terminations += gone as usize;
            }
            _ => {}
        }
    }
    let report = check(&mut admin, &dir, plan, &faults, started.elapsed());
    let _ = std::fs::remove_dir_all(&dir);
    report
}

/// The invariants, measured.
#[derive(Debug, Default)]
pub struct Report {
    pub items: usize,
    pub transitions_committed: i64,
    pub effects: usize,
    /// Effects that ran more than once for the same task and transition (each extra run counts).
    pub duplicate_effects: usize,
    /// Incarnations killed inside a side-effect region: effect started, commit not answered.
    pub killed_inside_effect: usize,
    /// Pairs of runs of one task's effects whose intervals overlap: two owners inside at once.
    pub overlapping_effects: usize,
    /// Tasks whose history is not the pipeline path: a skipped, repeated or backwards transition.
    pub bad_histories: i64,
    /// Tasks not at the last stage.
    pub unfinished: i64,
    /// Commits an actor saw acknowledged but the history does not hold.
    pub lost_commits: usize,
    /// Leases still held by a superseded boot after every recover.
    pub stale_leases: i64,
    pub leftover_leases: i64,
    pub kills: usize,
    pub terminations: usize,
    pub server_restarts: usize,
    pub elapsed: Duration,
}

/// One run of an effect: when it started and when it ended (or its process died), in ns.
type Run = (u128, Option<u128>);

fn check(db: &mut Client, dir: &Path, plan: &Plan, faults: &Faults, elapsed: Duration) -> Report {
    // Effects from the incarnations' files.
    let mut runs: BTreeMap<(String, String), Vec<Run>> = BTreeMap::new();
    let mut committed: Vec<(String, String)> = Vec::new();
    let mut killed_inside = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut open: Option<(String, String, u128)> = None; // started, not ended
        let mut inside = false; // started, commit not answered
        for line in text.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            match fields.as_slice() {
                ["S", task, from, to, at] => {
                    open = Some((
                        task.to_string(),
                        format!("{from}>{to}"),
                        at.parse().unwrap(),
                    ));
                    inside = true;
                }
                ["E", task, from, to, at] => {
                    let (t, transition, started) = open.take().expect("an end after its start");
                    assert_eq!(
                        (t.as_str(), transition.as_str()),
                        (*task, format!("{from}>{to}").as_str())
                    );
                    runs.entry((t, transition))
                        .or_default()
                        .push((started, Some(at.parse().unwrap())));
                }
                ["D", task, to, outcome, _] => {
                    inside = false;
                    if *outcome == "applied" {
                        committed.push((task.to_string(), to.to_string()));
                    }
                }
                _ => {} // a line cut short by SIGKILL
            }
        }
        if let Some((task, transition, started)) = open {
            // Killed mid-effect: the run ended when the process died.
            let died = faults.kill_time.get(&path).copied();
            runs.entry((task, transition))
                .or_default()
                .push((started, died));
        }
        killed_inside += usize::from(inside);
    }
    let effects = runs.values().map(Vec::len).sum();
    let duplicate_effects = runs.values().map(|r| r.len().saturating_sub(1)).sum();
    let mut overlapping_effects = 0;
    for list in runs.values() {
        for (i, a) in list.iter().enumerate() {
            for b in &list[i + 1..] {
                let (a_end, b_end) = (a.1.unwrap_or(u128::MAX), b.1.unwrap_or(u128::MAX));
                if a.0 < b_end && b.0 < a_end {
                    overlapping_effects += 1;
                }
            }
        }
    }

    // The database side, after one more recover-free look: histories, commits, leases.
    let one = |db: &mut Client, sql: &str| -> i64 { db.query_one(sql, &[]).expect(sql).get(0) };
    let bad_histories = one(
        db,
        "WITH steps AS (
             SELECT task_id, from_stage, to_stage,
                    row_number() OVER (PARTITION BY task_id ORDER BY seq) AS n
               FROM soak_history),
         path(n, from_stage, to_stage) AS (VALUES (1, 'queued', 'built'), (2, 'built', 'tested'),
                                                 (3, 'tested', 'merged'), (4, 'merged', 'deployed'))
         SELECT count(DISTINCT s.task_id) FROM steps s LEFT JOIN path p USING (n, from_stage, to_stage)
          WHERE p.n IS NULL",
    );
    let in_history: std::collections::HashSet<(String, String)> = db
        .query("SELECT task_id, to_stage FROM soak_history", &[])
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let lost_commits = committed.iter().filter(|c| !in_history.contains(c)).count();
    Report {
        items: plan.items,
        transitions_committed: one(db, "SELECT count(*) FROM soak_history"),
        effects,
        duplicate_effects,
        killed_inside_effect: killed_inside,
        overlapping_effects,
        bad_histories,
        unfinished: one(
            db,
            "SELECT count(*) FROM soak_task WHERE stage <> 'deployed'",
        ),
        lost_commits,
        stale_leases: one(
            db,
            "SELECT count(*) FROM orch_lease.transition_lease_status WHERE liveness = 'stale'",
        ),
        leftover_leases: one(db, "SELECT count(*) FROM orch_lease.transition_lease"),
        kills: faults.kills,
        terminations: faults.terminations,
        server_restarts: faults.server_restarts,
        elapsed,
    }
}

impl Report {
    /// Every invariant of the lease mode holds.
    pub fn holds(&self) -> bool {
        self.overlapping_effects == 0
            && self.bad_histories == 0
            && self.unfinished == 0
            && self.lost_commits == 0
            && self.stale_leases == 0
            && self.leftover_leases == 0
            && self.duplicate_effects <= self.killed_inside_effect
    }

    pub fn print(&self, mode: Mode) {
        let rows = [
            ("tasks", self.items.to_string()),
            (
                "transitions committed",
                self.transitions_committed.to_string(),
            ),
            ("effects run", self.effects.to_string()),
            ("effects run twice", self.duplicate_effects.to_string()),
            (
                "actors killed inside an effect",
                self.killed_inside_effect.to_string(),
            ),
            (
                "overlapping effects (two owners inside)",
                self.overlapping_effects.to_string(),
            ),
            (
                "histories off the pipeline path",
                self.bad_histories.to_string(),
            ),
            ("tasks unfinished", self.unfinished.to_string()),
            ("acknowledged commits lost", self.lost_commits.to_string()),
            ("stale leases left", self.stale_leases.to_string()),
            ("leases left", self.leftover_leases.to_string()),
            ("faults: actors SIGKILLed", self.kills.to_string()),
            ("faults: sessions terminated", self.terminations.to_string()),
            (
                "faults: immediate server restarts",
                self.server_restarts.to_string(),
            ),
            ("elapsed", format!("{:.1} s", self.elapsed.as_secs_f64())),
        ];
        println!("\n  soak, {} mode", mode.name());
        for (what, figure) in rows {
            println!("  {what:<42} {figure:>8}");
        }
        println!(
            "  verdict: {}",
            if self.holds() {
                "ALL INVARIANTS HOLD"
            } else {
                "VIOLATIONS"
            }
        );
    }
}
