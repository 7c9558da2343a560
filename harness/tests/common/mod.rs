//! Shared by the real-connection tests: the server comes from `ORCH_LEASE_DSN` (set by `make test`).
#![allow(dead_code)] // each test file uses its own part of this module
use postgres::types::ToSql;
use postgres::{Client, Error, GenericClient};
use std::time::{Duration, Instant};

pub fn dsn() -> String {
    std::env::var("ORCH_LEASE_DSN")
        .expect("ORCH_LEASE_DSN must name a server with orch_lease installed (make test sets it)")
}

pub fn connect() -> Client {
    orch_lease_harness::connect(&dsn())
}

/// A fresh database with orch_lease and a `tasks(id text, stage text)` table registered, so that tests
/// running in parallel do not share the (per-database) task-table registration. Returns its DSN.
pub fn fresh_database(name: &str) -> String {
    fresh_database_with(name, TEXT_TASKS)
}

/// `transition_lease_acquire(item, owner, 1, boot)` → (outcome, token).
pub fn grant(
    db: &mut impl GenericClient,
    item: &str,
    owner: &str,
    boot: &str,
) -> Result<(String, Option<i64>), Error> {
    db.query_one(
        "SELECT outcome, token FROM orch_lease.transition_lease_acquire($1, $2, 1, $3)",
        &[&item, &owner, &boot],
    )
    .map(|row| (row.get(0), row.get(1)))
}

/// `grant`, which must answer.
pub fn acquire(
    db: &mut impl GenericClient,
    item: &str,
    owner: &str,
    boot: &str,
) -> (String, Option<i64>) {
    grant(db, item, owner, boot).unwrap()
}

/// The outcome of `orch_lease.{call}` (a CAS), e.g. `outcome(db, "commit_stage_cas($1, $2, 'queued',
/// 'merged')", &[..])`.
pub fn outcome(
    db: &mut impl GenericClient,
    call: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<String, Error> {
    db.query_one(&format!("SELECT outcome FROM orch_lease.{call}"), params)
        .map(|row| row.get(0))
}

/// `outcome`, which must answer.
pub fn cas(db: &mut impl GenericClient, call: &str, params: &[&(dyn ToSql + Sync)]) -> String {
    outcome(db, call, params).unwrap()
}

/// `transition_lease_recover(boot, instance)` → the work items of the leases it released.
pub fn recover(db: &mut impl GenericClient, boot: &str, instance: &str) -> Vec<String> {
    register(db, "transition_lease_recover", boot, instance)
}

/// `transition_lease_takeover(boot, instance)` → the work items of the leases it released.
pub fn takeover(db: &mut impl GenericClient, boot: &str, instance: &str) -> Vec<String> {
    register(db, "transition_lease_takeover", boot, instance)
}

fn register(
    db: &mut impl GenericClient,
    function: &str,
    boot: &str,
    instance: &str,
) -> Vec<String> {
    db.query(
        &format!("SELECT work_item FROM orch_lease.{function}($1, $2)"),
        &[&boot, &instance],
    )
    .unwrap()
    .iter()
    .map(|row| row.get(0))
    .collect()
}

pub fn stage(db: &mut impl GenericClient, id: &str) -> String {
    db.query_one("SELECT stage FROM tasks WHERE id = $1", &[&id])
        .unwrap()
        .get(0)
}

/// Waits (10 s at most) until the backend `pid` has exited.
pub fn await_backend_exit(db: &mut Client, pid: i32) {
    let gone = Instant::now();
    while db
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
            &[&pid],
        )
        .unwrap()
        .get::<_, i64>(0)
        > 0
    {
        assert!(
            gone.elapsed() < Duration::from_secs(10),
            "the backend did not exit"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `work` on its own thread and says, after a pause, whether it is still blocked.
pub fn blocked<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> (std::thread::JoinHandle<T>, bool) {
    let handle = std::thread::spawn(work);
    std::thread::sleep(Duration::from_millis(400));
    let waiting = !handle.is_finished();
    (handle, waiting)
}

/// `text` (an announcement's payload) contains every one of `needles`.
pub fn assert_contains_all(text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(text.contains(needle), "{needle} in {text}");
    }
}

/// Serialises the creation of databases and roles within one test binary: on a new cluster, concurrent
/// `CREATE EXTENSION`s race to create orch_lease's (cluster-wide) roles.
static SETUP: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn setup_lock() -> std::sync::MutexGuard<'static, ()> {
    SETUP
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A fresh database with orch_lease created and `setup` (SQL, run as the superuser) run in it; unlike
/// `fresh_database`, it has no task table unless `setup` makes one. Returns its DSN.
pub fn fresh_database_with(name: &str, setup: &str) -> String {
    let _serial = setup_lock();
    let dsn = new_database(name, None);
    let mut db = orch_lease_harness::connect(&dsn);
    // ORCH_LEASE_EXTENSION_VERSION: a released version instead of the default one
    // (scripts/security-0.3.0-test.sh runs the security tests against 0.3.0's own build).
    let version = std::env::var("ORCH_LEASE_EXTENSION_VERSION")
        .map_or(String::new(), |version| format!(" VERSION '{version}'"));
    db.batch_execute(&format!("CREATE EXTENSION orch_lease{version}"))
        .unwrap();
    db.batch_execute(setup)
        .unwrap_or_else(|error| panic!("setup of {name}: {error}"));
    dsn
}

/// An empty database `name` (dropped first if it exists), owned by `owner` or the superuser. Its DSN.
pub fn new_database(name: &str, owner: Option<&str>) -> String {
    let owner = owner.map_or(String::new(), |owner| format!(" OWNER {owner}"));
    let mut admin = connect();
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}{owner}"))
        .unwrap();
    format!("{} dbname={name}", dsn())
}

/// The `tasks(id text, stage text)` table of `fresh_database`, registered: a `fresh_database_with` setup.
/// Actors may read it, as an acquire does to say the stage (0.5.0); writing it is each test's to grant.
pub const TEXT_TASKS: &str = "CREATE TABLE tasks (id text PRIMARY KEY, stage text NOT NULL);
     INSERT INTO tasks SELECT 'task-' || i, 'queued' FROM generate_series(1, 10) i;
     GRANT SELECT ON tasks TO orch_lease_actor;
     SELECT orch_lease.register_task_table('tasks');";

/// A login role (trust authentication), created when missing — roles are cluster-wide and outlive the
/// test databases — reset to NOSUPERUSER, and made a member of each of `member_of`. orch_lease's own
/// roles exist once some database has the extension: call it after `fresh_database_with`.
pub fn login_role(name: &str, member_of: &[&str]) {
    let _serial = setup_lock();
    let mut admin = connect();
    admin
        .batch_execute(&format!(
            "DO $$ BEGIN
                 IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = '{name}') THEN
                     CREATE ROLE {name} LOGIN;
                 END IF;
             END $$;
             ALTER ROLE {name} LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB NOBYPASSRLS"
        ))
        .unwrap();
    for group in member_of {
        admin
            .batch_execute(&format!("GRANT {group} TO {name}"))
            .unwrap();
    }
}

/// `dsn`, connecting as `role` instead.
pub fn dsn_as(dsn: &str, role: &str) -> String {
    format!("{dsn} user={role}")
}

/// A connection whose statements give up after 10 s, so that a test never hangs.
pub fn connect_timed(dsn: &str) -> Client {
    let mut client = orch_lease_harness::connect(dsn);
    client
        .batch_execute("SET statement_timeout = '10s'")
        .unwrap();
    client
}
