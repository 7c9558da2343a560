//! The supervisor: starts the actor processes, injects the faults, then hands over to the checker.
use super::actor::connect_retrying;
use super::checker::{check, Report};
use super::{prepare, Break};
use crate::kit::{connect, now_ns, shell, spawn, Mode, Rng};
use postgres::Client;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

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
    pub(super) kill_time: HashMap<PathBuf, u128>,
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
