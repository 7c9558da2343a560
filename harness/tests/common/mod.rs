//! Shared by the real-connection tests: the server comes from `ORCH_LEASE_DSN` (set by `make test`).
#![allow(dead_code)] // each test file uses its own part of this module
use postgres::Client;

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
    let mut admin = connect();
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    let dsn = format!("{} dbname={name}", dsn());
    let mut db = orch_lease_harness::connect(&dsn);
    db.batch_execute(
        "CREATE EXTENSION orch_lease;
         CREATE TABLE tasks (id text PRIMARY KEY, stage text NOT NULL);
         INSERT INTO tasks SELECT 'task-' || i, 'queued' FROM generate_series(1, 10) i;
         SELECT orch_lease.register_task_table('tasks');",
    )
    .unwrap();
    dsn
}

/// `transition_lease_acquire` → (outcome, token).
pub fn acquire(db: &mut Client, item: &str, owner: &str, boot: &str) -> (String, Option<i64>) {
    let row = db
        .query_one(
            "SELECT outcome, token FROM orch_lease.transition_lease_acquire($1, $2, 1, $3)",
            &[&item, &owner, &boot],
        )
        .unwrap();
    (row.get(0), row.get(1))
}

/// A CAS call's outcome, e.g. `cas(db, "commit_stage_cas($1, $2, 'queued', 'merged')", &[..])`.
pub fn cas(db: &mut Client, call: &str, params: &[&(dyn postgres::types::ToSql + Sync)]) -> String {
    db.query_one(&format!("SELECT outcome FROM orch_lease.{call}"), params)
        .unwrap()
        .get(0)
}

pub fn stage(db: &mut Client, id: &str) -> String {
    db.query_one("SELECT stage FROM tasks WHERE id = $1", &[&id])
        .unwrap()
        .get(0)
}

/// Runs `work` on its own thread and says, after a pause, whether it is still blocked.
pub fn blocked<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> (std::thread::JoinHandle<T>, bool) {
    let handle = std::thread::spawn(work);
    std::thread::sleep(std::time::Duration::from_millis(400));
    let waiting = !handle.is_finished();
    (handle, waiting)
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
    let mut admin = connect();
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    let dsn = format!("{} dbname={name}", dsn());
    let mut db = orch_lease_harness::connect(&dsn);
    db.batch_execute("CREATE EXTENSION orch_lease").unwrap();
    db.batch_execute(setup)
        .unwrap_or_else(|error| panic!("setup of {name}: {error}"));
    dsn
}

/// The `tasks(id text, stage text)` table of `fresh_database`, registered: a `fresh_database_with` setup.
pub const TEXT_TASKS: &str = "CREATE TABLE tasks (id text PRIMARY KEY, stage text NOT NULL);
     INSERT INTO tasks SELECT 'task-' || i, 'queued' FROM generate_series(1, 10) i;
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
