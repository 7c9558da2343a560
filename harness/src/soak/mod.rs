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
//!
//! Three parts, one module each: [`actor`] (one actor process), [`supervisor`] (the actor processes and
//! the fault injector) and [`checker`] (the invariants, measured once the actors are done).
mod actor;
mod checker;
mod supervisor;

pub use actor::run_actor;
pub use checker::{duplicates_in, leftovers, Leftovers, Report};
pub use supervisor::{run, Faults, Plan};

use crate::kit::create_tasks;
use postgres::Client;

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
