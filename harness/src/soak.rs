//! The soak: N actor processes drive M tasks through a stage pipeline while faults are injected —
//! SIGKILL of actors (restarted with a new boot id, which call recover), `pg_terminate_backend` of their
//! sessions, and immediate server stops. Each transition has an irreversible effect recorded OUTSIDE the
//! database, in the actor incarnation's own append-only file: `S` when the effect starts (with the lease's
//! token), `E` when it ends, `D` when the commit that closes the transition has answered (with its outcome
//! and token). Between `S` and `D` the actor is inside the transition's lease region (its lease granted,
//! its commit not answered). Afterwards the files and the database are checked against the invariants:
//! every duplicated effect must be tied to an incarnation killed inside that same transition's region,
//! and every acknowledged commit must be in the history as `cas_applied` under its own token.
//!
//! [`Break`] makes an actor misbehave on purpose, to show that the detectors fire: it runs an effect twice
//! without dying, or acknowledges a commit it never made.
use crate::kit::{
    applied_commits, connect, count, create_tasks, now_ns, reconnect, shell, spawn, Mode, Rng,
};
use postgres::Client;
use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Child;
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

/// A deliberate misbehaviour of the lease-mode actors, so that the checks can be seen to fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Break {
    None,
    /// About one transition in 20 runs its effect twice, under its lease, without any kill.
    DoubleEffect,
    /// About one applied commit in 20 is acknowledged in the log under a token that never committed.
    PhantomAck,
}

impl Break {
    pub fn parse(text: &str) -> Result<Break, String> {
        match text {
            "none" => Ok(Break::None),
            "double-effect" => Ok(Break::DoubleEffect),
            "phantom-ack" => Ok(Break::PhantomAck),
            other => Err(format!(
                "break must be none, double-effect or phantom-ack, not {other:?}"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Break::None => "none",
            Break::DoubleEffect => "double-effect",
            Break::PhantomAck => "phantom-ack",
        }
    }
}

/// One actor incarnation: its session, its boot, its effect log, and the commit it still owes.
struct Actor {
    dsn: String,
    mode: Mode,
    broken: Break,
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
#[allow(clippy::too_many_arguments)]
pub fn run_actor(
    dsn: &str,
    mode: Mode,
    broken: Break,
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
        broken,
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

/// A connection named after the actor (the injector terminates sessions by that name), made once the
/// server answers: it may be restarting.
fn connect_retrying(dsn: &str, instance: &str) -> Client {
    let dsn = format!("{dsn} application_name=soak-{instance}");
    reconnect(&dsn, Instant::now() + Duration::from_secs(60)).unwrap_or_else(|| connect(&dsn))
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
        // a server going down) or a connection exception (08…) — or, through a Citus coordinator, a
        // worker's lost connection, which Citus reports without a SQLSTATE of its own (XX000). Anything
        // else is a bug.
        if let Some(code) = error.code().map(|code| code.code()) {
            let relayed_by_citus = code == "XX000"
                && error.as_db_error().is_some_and(|db| {
                    db.message().contains("connection marked as essential")
                        || db.message().contains("server closed the connection")
                        || db.message().contains("connection to the remote node")
                        // a multi-row write (recover's history) to a shard of the restarted worker
                        || db.message().contains("failed to COPY to shard")
                });
            assert!(
                code.starts_with("57") || code.starts_with("08") || relayed_by_citus,
                "{}: unexpected database error: {}",
                self.instance,
                error
                    .as_db_error()
                    .map_or(error.to_string(), |db| db.message().to_string())
            );
        }
        self.db = connect_retrying(&self.dsn, &self.instance);
        if self.mode == Mode::Lease {
            // Read first, then released one by one: on Citus a release is delegated to the worker holding
            // its item, which it cannot be from inside a query over every shard.
            let keep = self.pending.as_ref().and_then(|(_, token, _, _)| *token);
            let unheard = self.db.query(
                "SELECT work_item, token FROM orch_lease.transition_lease
                  WHERE owner_boot_id = $1 AND token IS DISTINCT FROM $2",
                &[&self.boot_id, &keep],
            );
            for lease in unheard.iter().flatten() {
                let (item, token): (String, i64) = (lease.get(0), lease.get(1));
                let _ = self.db.execute(
                    "SELECT orch_lease.transition_lease_release($1, $2)",
                    &[&item, &token],
                );
            }
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
        match self.mode {
            Mode::Naive => self.advance_naively(&task, &seen)?,
            Mode::Lease => self.advance_with_lease(&task)?,
        }
        Ok(true)
    }

    /// The effect, then the bare UPDATE, for the stage seen.
    fn advance_naively(&mut self, task: &str, seen: &str) -> Result<(), postgres::Error> {
        let to = next_stage(seen).expect("a stage of the pipeline");
        self.effect(task, seen, to, None);
        self.db.execute(
            "UPDATE soak_task SET stage = $2 WHERE id = $1",
            &[&task, &to],
        )?;
        self.mark(format!("D {task} {to} applied -"));
        Ok(())
    }

    /// The lease (which answers the stage, read after the grant), the effect, then `commit_stage_cas`.
    fn advance_with_lease(&mut self, task: &str) -> Result<(), postgres::Error> {
        let grant = self.db.query_one(
            "SELECT acquired, outcome, token, stage
               FROM orch_lease.transition_lease_acquire($1, $2, $3, $4)",
            &[&task, &self.instance, &self.pid, &self.boot_id],
        )?;
        let (acquired, outcome, token, stage): (bool, String, Option<i64>, Option<String>) =
            (grant.get(0), grant.get(1), grant.get(2), grant.get(3));
        if outcome == "superseded" {
            panic!("{}: boot superseded while alive", self.instance);
        }
        if !acquired {
            std::thread::sleep(Duration::from_millis(self.rng.below(3)));
            return Ok(());
        }
        // Under the lease: the stage now (as the grant said it), not the one seen before acquiring.
        let from = stage.expect("a granted task has a row");
        let Some(to) = next_stage(&from) else {
            self.db.execute(
                "SELECT orch_lease.transition_lease_release($1, $2)",
                &[&task, &token],
            )?;
            return Ok(());
        };
        self.effect(task, &from, to, token);
        if self.broken == Break::DoubleEffect && self.rng.below(20) == 0 {
            self.effect(task, &from, to, token); // on purpose: a duplicate with no kill behind it
        }
        self.pending = Some((task.to_string(), token, from.clone(), to.to_string()));
        self.commit(task, token, &from, to)
    }

    /// The irreversible effect of `task` going `from` → `to` under the lease `token`, marked before and after.
    fn effect(&mut self, task: &str, from: &str, to: &str, token: Option<i64>) {
        let token = token.map_or("-".to_string(), |t| t.to_string());
        self.mark(format!("S {task} {from} {to} {token}"));
        std::thread::sleep(Duration::from_millis(self.rng.below(self.effect_ms + 1)));
        self.mark(format!("E {task} {from} {to} {token}"));
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
        let mut acknowledged = token.map_or("-".to_string(), |t| t.to_string());
        if self.broken == Break::PhantomAck && outcome == "applied" && self.rng.below(20) == 0 {
            acknowledged = format!("-{acknowledged}"); // on purpose: a token that never committed
        }
        self.mark(format!("D {task} {to} {outcome} {acknowledged}"));
        Ok(())
    }
}

/// How a soak run is shaped.
pub struct Plan {
    pub dsn: String,
    pub mode: Mode,
    pub broken: Break,
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

/// A running soak: its actors, the admin session the injector works through, what it did so far.
struct Soak<'a> {
    exe: &'a Path,
    plan: &'a Plan,
    /// Where the actor incarnations write their effect logs.
    dir: PathBuf,
    admin: Client,
    slots: Vec<Slot>,
    faults: Faults,
    rng: Rng,
    started: Instant,
}

/// Runs the soak: actors, faults, and then the checks.
pub fn run(exe: &Path, plan: &Plan) -> Report {
    let mut soak = Soak::start(exe, plan);
    loop {
        std::thread::sleep(Duration::from_millis(50));
        if soak.running() == 0 {
            break;
        }
        assert!(
            soak.started.elapsed() < plan.budget,
            "the soak ran past its budget of {:?}",
            plan.budget
        );
        if plan.faults {
            soak.inject_fault();
        }
    }
    soak.finish()
}

impl<'a> Soak<'a> {
    /// Fresh tasks, a fresh log directory, and one actor process per slot.
    fn start(exe: &'a Path, plan: &'a Plan) -> Soak<'a> {
        let dir = std::env::temp_dir().join(format!(
            "orch_lease-soak-{}-{}",
            std::process::id(),
            now_ns()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut admin = connect(&plan.dsn);
        prepare(&mut admin, plan.items);
        let mut soak = Soak {
            exe,
            plan,
            dir,
            admin,
            slots: Vec::new(),
            faults: Faults::default(),
            rng: Rng::seeded(now_ns() as u64),
            started: Instant::now(),
        };
        soak.slots = (0..plan.actors)
            .map(|n| {
                let instance = format!("actor-{n}");
                Slot {
                    child: soak.spawn(&instance),
                    instance,
                }
            })
            .collect();
        soak
    }

    fn spawn(&self, instance: &str) -> Child {
        spawn(
            self.exe,
            "soak-actor",
            &[
                ("mode", self.plan.mode.name().to_string()),
                ("break", self.plan.broken.name().to_string()),
                ("role", instance.to_string()),
                ("effect-ms", self.plan.effect_ms.to_string()),
                ("max-attempts", self.plan.max_attempts.to_string()),
                ("dir", self.dir.display().to_string()),
                ("dsn", self.plan.dsn.clone()),
            ],
        )
    }

    /// How many actors are still at work; an actor that failed fails the soak.
    fn running(&mut self) -> usize {
        let mut running = 0;
        for slot in &mut self.slots {
            match slot.child.try_wait().expect("actor status") {
                None => running += 1,
                Some(status) if !status.success() => panic!("{} failed: {status}", slot.instance),
                Some(_) => {}
            }
        }
        running
    }

    /// One round of the injector: a server restart when one is due, else maybe a kill or a termination.
    fn inject_fault(&mut self) {
        let Some(progress) = self.progress() else {
            return;
        };
        if self.server_restart_due(progress) {
            self.restart_server();
            return;
        }
        match self.rng.below(4) {
            0 => self.kill_an_actor(),
            1 => self.terminate_a_session(),
            _ => {}
        }
    }

    /// The share of tasks done; None (and a new admin session) when the server is away.
    fn progress(&mut self) -> Option<f64> {
        match self.admin.query_one(
            "SELECT count(*) FROM soak_task WHERE stage <> 'deployed'",
            &[],
        ) {
            Ok(row) => Some(1.0 - row.get::<_, i64>(0) as f64 / self.plan.items as f64),
            Err(_) => {
                self.admin = connect_retrying(&self.plan.dsn, "injector");
                None
            }
        }
    }

    /// Server restarts come at evenly spaced points of progress (when there is a restart command).
    fn server_restart_due(&self, progress: f64) -> bool {
        let (done, planned) = (self.faults.server_restarts, self.plan.server_restarts);
        self.plan.restart_command.is_some()
            && done < planned
            && progress >= (done + 1) as f64 / (planned + 1) as f64
    }

    fn restart_server(&mut self) {
        shell(self.plan.restart_command.as_deref().unwrap());
        self.faults.server_restarts += 1;
        self.admin = connect_retrying(&self.plan.dsn, "injector");
    }

    /// SIGKILL an actor mid-whatever; its replacement is a new incarnation.
    fn kill_an_actor(&mut self) {
        let at = self.rng.below(self.plan.actors as u64) as usize;
        let slot = &mut self.slots[at];
        if slot.child.try_wait().expect("status").is_some() {
            return;
        }
        let pid = slot.child.id();
        slot.child.kill().expect("kill");
        let died = now_ns();
        slot.child.wait().expect("reap");
        if let Some(log) = log_of(&self.dir, pid) {
            self.faults.kill_time.insert(log, died);
        }
        self.faults.kills += 1;
        let instance = self.slots[at].instance.clone();
        self.slots[at].child = self.spawn(&instance);
    }

    /// `pg_terminate_backend` of one actor session. Only a server going away (a connection error) is
    /// forgiven (the injector reconnects); any other error fails the soak.
    fn terminate_a_session(&mut self) {
        match self.admin.query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM (
                 SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'soak-actor-%'
                  ORDER BY random() LIMIT 1) victim",
            &[],
        ) {
            Ok(row) => self.faults.terminations += row.get::<_, i64>(0) as usize,
            Err(error) if lost_connection(&error) => {
                self.admin = connect_retrying(&self.plan.dsn, "injector");
            }
            Err(error) => panic!("terminating an actor session: {error}"),
        }
    }

    /// The checks, and the log directory removed.
    fn finish(mut self) -> Report {
        let elapsed = self.started.elapsed();
        let report = check(&mut self.admin, &self.dir, self.plan, &self.faults, elapsed);
        let _ = std::fs::remove_dir_all(&self.dir);
        report
    }
}

/// A connection lost to a terminated session or a server going down: 57… or 08…, or a closed socket.
fn lost_connection(error: &postgres::Error) -> bool {
    match error.code().map(|code| code.code()) {
        Some(code) => code.starts_with("57") || code.starts_with("08"),
        None => true,
    }
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

/// The invariants, measured.
#[derive(Debug, Default)]
pub struct Report {
    pub items: usize,
    pub transitions_committed: i64,
    pub effects: usize,
    /// Effects that ran more than once for the same task and transition (each extra run counts).
    pub duplicate_effects: usize,
    /// Of those, the extra runs of a (task, transition) matched by an incarnation killed inside that same
    /// transition's lease region (its effect started, its commit not answered): one kill explains one.
    pub duplicates_tied_to_a_kill: usize,
    /// The extra runs no such kill explains: any is a violation.
    pub duplicates_without_a_kill: usize,
    /// Incarnations killed inside a lease region: effect started, commit not answered.
    pub killed_inside_effect: usize,
    /// Pairs of runs of one task's effects whose intervals overlap: two owners inside at once.
    pub overlapping_effects: usize,
    /// Tasks whose history is not the pipeline path: a skipped, repeated or backwards transition.
    pub bad_histories: i64,
    /// Tasks not at the last stage.
    pub unfinished: i64,
    /// Commits an actor saw acknowledged (task, token, stage) that the history does not hold as
    /// `cas_applied` under that token.
    pub acknowledged_commits: usize,
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

/// What the incarnations' effect logs say.
#[derive(Default)]
struct EffectLogs {
    /// Every run of each (task, transition) effect.
    runs: BTreeMap<(String, String), Vec<Run>>,
    /// The (task, token, stage) commits an actor saw applied under a lease.
    committed: Vec<(String, i64, String)>,
    /// Per (task, transition): when each incarnation killed inside its lease region died (ns).
    killed_inside: HashMap<(String, String), Vec<u128>>,
}

impl EffectLogs {
    /// (extra runs explained by a kill inside their transition's region, extra runs not explained).
    /// The first run of a (task, transition) is the original; every later one is an extra run, and a
    /// kill explains it only if the killed incarnation died before that run started (a kill after it
    /// began cannot be why it ran). Each kill explains one extra run at most: taken in order of start,
    /// each extra run is given the earliest kill not given yet that came before it.
    fn duplicates(&self) -> (usize, usize) {
        let (mut tied, mut untied) = (0, 0);
        for (key, runs) in &self.runs {
            let mut starts: Vec<u128> = runs.iter().map(|run| run.0).collect();
            starts.sort_unstable();
            let mut deaths = self.killed_inside.get(key).cloned().unwrap_or_default();
            deaths.sort_unstable();
            let mut deaths = deaths.into_iter().peekable();
            for start in starts.into_iter().skip(1) {
                if deaths.next_if(|died| *died < start).is_some() {
                    tied += 1;
                } else {
                    untied += 1;
                }
            }
        }
        (tied, untied)
    }
}

/// The duplicate check of effect logs given as text, one per incarnation with when it was killed (if
/// it was): (extra runs tied to a kill before them, extra runs with none). For fabricated logs.
pub fn duplicates_in(logs: &[(&str, Option<u128>)]) -> (usize, usize) {
    let mut effect_logs = EffectLogs::default();
    for (text, died) in logs {
        read_effect_log(text, *died, &mut effect_logs);
    }
    effect_logs.duplicates()
}

/// What the soak's checks read from the server once the actors are done.
#[derive(Debug, PartialEq, Eq)]
pub struct Leftovers {
    /// Tasks not at the last stage.
    pub unfinished: i64,
    /// Leases whose owner's boot is stale (superseded, or its session gone).
    pub stale_leases: i64,
    /// Leases held at all.
    pub leftover_leases: i64,
}

/// The soak's server-side checks, on the database `db` is connected to.
pub fn leftovers(db: &mut Client) -> Leftovers {
    Leftovers {
        unfinished: count(
            db,
            "SELECT count(*) FROM soak_task WHERE stage <> 'deployed'",
        ),
        stale_leases: count(
            db,
            "SELECT count(*) FROM orch_lease.transition_lease_status WHERE liveness = 'stale'",
        ),
        leftover_leases: count(db, "SELECT count(*) FROM orch_lease.transition_lease"),
    }
}

fn check(db: &mut Client, dir: &Path, plan: &Plan, faults: &Faults, elapsed: Duration) -> Report {
    let logs = read_effect_logs(dir, faults);
    let (tied, untied) = logs.duplicates();
    let left = leftovers(db);
    Report {
        items: plan.items,
        transitions_committed: count(db, "SELECT count(*) FROM soak_history"),
        effects: logs.runs.values().map(Vec::len).sum(),
        duplicate_effects: logs.runs.values().map(|r| r.len().saturating_sub(1)).sum(),
        duplicates_tied_to_a_kill: tied,
        duplicates_without_a_kill: untied,
        killed_inside_effect: logs.killed_inside.values().map(Vec::len).sum(),
        overlapping_effects: logs.runs.values().map(|list| overlaps(list)).sum(),
        bad_histories: bad_histories(db),
        unfinished: left.unfinished,
        acknowledged_commits: logs.committed.len(),
        lost_commits: lost_commits(db, &logs.committed),
        stale_leases: left.stale_leases,
        leftover_leases: left.leftover_leases,
        kills: faults.kills,
        terminations: faults.terminations,
        server_restarts: faults.server_restarts,
        elapsed,
    }
}

/// Every incarnation's file in `dir`.
fn read_effect_logs(dir: &Path, faults: &Faults) -> EffectLogs {
    let mut logs = EffectLogs::default();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let died = faults.kill_time.get(&path).copied();
        read_effect_log(&std::fs::read_to_string(&path).unwrap(), died, &mut logs);
    }
    logs
}

/// One incarnation's file; `died` is when it was killed, if it was.
fn read_effect_log(text: &str, died: Option<u128>, logs: &mut EffectLogs) {
    let mut open: Option<(String, String, u128)> = None; // started, not ended
    let mut inside: Option<(String, String)> = None; // started, commit not answered
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        match fields.as_slice() {
            ["S", task, from, to, _token, at] => {
                let transition = format!("{from}>{to}");
                open = Some((task.to_string(), transition.clone(), at.parse().unwrap()));
                inside = Some((task.to_string(), transition));
            }
            ["E", task, from, to, _token, at] => {
                let (t, transition, started) = open.take().expect("an end after its start");
                assert_eq!(
                    (t.as_str(), transition.as_str()),
                    (*task, format!("{from}>{to}").as_str())
                );
                logs.runs
                    .entry((t, transition))
                    .or_default()
                    .push((started, Some(at.parse().unwrap())));
            }
            ["D", task, to, outcome, token, _] => {
                inside = None;
                if *outcome == "applied" {
                    if let Ok(token) = token.parse() {
                        logs.committed
                            .push((task.to_string(), token, to.to_string()));
                    }
                }
            }
            _ => {} // a line cut short by SIGKILL
        }
    }
    if let Some((task, transition, started)) = open {
        // Killed mid-effect: the run ended when the process died.
        logs.runs
            .entry((task, transition))
            .or_default()
            .push((started, died));
    }
    if let (Some(key), Some(died)) = (inside, died) {
        logs.killed_inside.entry(key).or_default().push(died);
    }
}

/// Pairs of runs of one effect whose intervals overlap: two owners inside at once.
fn overlaps(runs: &[Run]) -> usize {
    let mut overlapping = 0;
    for (i, a) in runs.iter().enumerate() {
        for b in &runs[i + 1..] {
            let (a_end, b_end) = (a.1.unwrap_or(u128::MAX), b.1.unwrap_or(u128::MAX));
            if a.0 < b_end && b.0 < a_end {
                overlapping += 1;
            }
        }
    }
    overlapping
}

/// Tasks whose history is not the pipeline path.
fn bad_histories(db: &mut Client) -> i64 {
    count(
        db,
        "WITH steps AS (
             SELECT task_id, from_stage, to_stage,
                    row_number() OVER (PARTITION BY task_id ORDER BY seq) AS n
               FROM soak_history),
         path(n, from_stage, to_stage) AS (VALUES (1, 'queued', 'built'), (2, 'built', 'tested'),
                                                 (3, 'tested', 'merged'), (4, 'merged', 'deployed'))
         SELECT count(DISTINCT s.task_id) FROM steps s LEFT JOIN path p USING (n, from_stage, to_stage)
          WHERE p.n IS NULL",
    )
}

/// Commits an actor saw applied that the history does not hold as `cas_applied` under their token, as
/// the failover check matches them: (task, token, stage reached).
fn lost_commits(db: &mut Client, committed: &[(String, i64, String)]) -> usize {
    let applied = applied_commits(db);
    committed.iter().filter(|c| !applied.contains(c)).count()
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
            && self.duplicates_without_a_kill == 0
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
                "  tied to a kill inside that transition",
                self.duplicates_tied_to_a_kill.to_string(),
            ),
            (
                "  with no such kill",
                self.duplicates_without_a_kill.to_string(),
            ),
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
            (
                "commits acknowledged (with a token)",
                self.acknowledged_commits.to_string(),
            ),
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
