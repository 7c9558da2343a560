//! What the race, the demo, the soak and the failover share: connecting (and connecting again while a
//! server restarts or fails over), the application's task table, one random generator, wall-clock
//! time, starting `orch-race` actor processes and running the shell commands the scripts hand over.
use postgres::{Client, NoTls};
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How an actor advances a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Read the stage, apply the effect, `UPDATE … SET stage = $new WHERE id = $id`.
    Naive,
    /// Acquire the lease, re-check the stage, apply the effect, `commit_stage_cas`.
    Lease,
}

impl Mode {
    pub fn parse(text: &str) -> Result<Mode, String> {
        match text {
            "naive" => Ok(Mode::Naive),
            "lease" => Ok(Mode::Lease),
            other => Err(format!("mode must be naive or lease, not {other:?}")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Naive => "naive",
            Mode::Lease => "lease",
        }
    }
}

pub fn connect(dsn: &str) -> Client {
    Client::connect(dsn, NoTls).unwrap_or_else(|error| panic!("cannot connect to {dsn}: {error}"))
}

/// Connects, trying again every 100 ms until `deadline` (the server may be restarting, or its standby
/// being promoted); None when no attempt succeeded by then.
pub fn reconnect(dsn: &str, deadline: Instant) -> Option<Client> {
    while Instant::now() < deadline {
        if let Ok(client) = Client::connect(dsn, NoTls) {
            return Some(client);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// A connection lost to a terminated session, a server going down or a failover: operator
/// intervention (57…), a connection exception (08…), or no SQLSTATE at all because the socket closed or
/// failed. Every other error — an orch_lease error (40001, 55P03, XX000, 22…), a constraint, a wrong
/// number of rows — is not a lost connection, and an actor must not take it for one.
pub fn lost_connection(error: &postgres::Error) -> bool {
    match error.code().map(|code| code.code()) {
        Some(code) => code.starts_with("57") || code.starts_with("08"),
        None => {
            error.is_closed()
                || std::error::Error::source(error)
                    .is_some_and(|source| source.is::<std::io::Error>())
        }
    }
}

/// The one number a query answers, such as a `count(*)`.
pub fn count(db: &mut Client, sql: &str) -> i64 {
    db.query_one(sql, &[]).expect(sql).get(0)
}

/// The commits the history holds as applied, as (task, token it ran under, stage reached): what an
/// acknowledged commit is matched against.
pub fn applied_commits(db: &mut Client) -> std::collections::HashSet<(String, i64, String)> {
    db.query(
        "SELECT work_item, old_token, stage_to FROM orch_lease.lease_event WHERE event = 'cas_applied'",
        &[],
    )
    .unwrap()
    .iter()
    .map(|row| (row.get(0), row.get(1), row.get(2)))
    .collect()
}

/// A fresh application task table `{prefix}_task` (see `add_task_table`), the only one registered with
/// orch_lease; no lease left from before.
pub fn create_tasks(client: &mut Client, prefix: &str, items: usize) {
    // Calls that name no table (#27) need it to be the only one registered. Every table is
    // unregistered while it still exists: under Citus, the registry is a reference table whose rows
    // each node keys by its own oid of the table, reached by the table's name.
    client
        .batch_execute(
            "CREATE EXTENSION IF NOT EXISTS orch_lease; TRUNCATE orch_lease.transition_lease",
        )
        .expect("no lease");
    let registered: Vec<String> = client
        .query("SELECT relid::oid::text FROM orch_lease.task_table", &[])
        .expect("the registered tables")
        .iter()
        .map(|row| row.get(0))
        .collect();
    for relid in registered {
        client
            .execute(
                "SELECT orch_lease.unregister_task_table($1::text::oid::regclass)",
                &[&relid],
            )
            .expect("unregister");
    }
    add_task_table(client, prefix, items);
}

/// Another application task table `{prefix}_task` with `items` tasks in `queued` (ids `task-1`…), a
/// trigger-fed `{prefix}_history` of every stage change, registered with orch_lease beside the others:
/// calls must then name their table. `ORCH_LEASE_TASK_LAYOUT`, when set, is SQL run before the
/// registration, with `{prefix}` standing for the prefix: how scripts/citus-test.sh distributes these
/// tables over a Citus cluster.
pub fn add_task_table(client: &mut Client, prefix: &str, items: usize) {
    client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {prefix}_task, {prefix}_history;
             CREATE TABLE {prefix}_task (id text PRIMARY KEY, stage text NOT NULL);
             CREATE TABLE {prefix}_history (seq bigserial PRIMARY KEY, task_id text, from_stage text,
                                            to_stage text, at timestamptz DEFAULT clock_timestamp());
             CREATE OR REPLACE FUNCTION {prefix}_log_stage() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 INSERT INTO {prefix}_history (task_id, from_stage, to_stage) VALUES (OLD.id, OLD.stage, NEW.stage);
                 RETURN NULL;
             END $$;
             CREATE TRIGGER {prefix}_log_stage AFTER UPDATE OF stage ON {prefix}_task
                 FOR EACH ROW EXECUTE FUNCTION {prefix}_log_stage();
             INSERT INTO {prefix}_task SELECT 'task-' || i, 'queued' FROM generate_series(1, {items}) i;"
        ))
        .expect("task table");
    if let Ok(layout) = std::env::var("ORCH_LEASE_TASK_LAYOUT") {
        client
            .batch_execute(&layout.replace("{prefix}", prefix))
            .expect("ORCH_LEASE_TASK_LAYOUT");
    }
    client
        .batch_execute(&format!(
            "SELECT orch_lease.register_task_table('{prefix}_task');"
        ))
        .expect("registration");
}

fn since_epoch() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

/// Wall-clock milliseconds since the epoch.
pub fn now_ms() -> u128 {
    since_epoch().as_millis()
}

/// Wall-clock nanoseconds: every process on this machine reads the same clock.
pub fn now_ns() -> u128 {
    since_epoch().as_nanos()
}

/// A small xorshift generator: enough to pick victims and tasks, no dependency.
pub struct Rng(u64);

impl Rng {
    pub fn seeded(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Starts `exe command --key value …`: one actor process of the race, the soak or the failover.
pub fn spawn(exe: &Path, command: &str, options: &[(&str, String)]) -> Child {
    let mut process = Command::new(exe);
    process.arg(command);
    for (key, value) in options {
        process.arg(format!("--{key}")).arg(value);
    }
    process
        .spawn()
        .unwrap_or_else(|error| panic!("spawn {command}: {error}"))
}

/// Runs a shell command handed over by the scripts (stop or restart a server, promote a standby, …).
pub fn shell(command: &str) {
    let status = Command::new("sh")
        .args(["-c", command])
        .status()
        .unwrap_or_else(|error| panic!("{command}: {error}"));
    assert!(status.success(), "{command} failed: {status}");
}
