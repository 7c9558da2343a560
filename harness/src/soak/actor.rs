//! The actor: one soak process driving tasks through the pipeline, each effect logged to its own file.
use super::{next_stage, Break};
use crate::kit::{connect, now_ns, reconnect, Mode, Rng};
use postgres::Client;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

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
pub(super) fn connect_retrying(dsn: &str, instance: &str) -> Client {
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
                "{}: unexpected database error {code}: {}",
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
