//! The role matrix: every role against every function, table, view and sequence of orch_lease, each
//! cell asserted by calling it (in a transaction rolled back afterwards), not read from the catalog.
//! A cell is "allowed" when the call does not fail with 42501 (insufficient privilege), "denied" when
//! it does. The calls are valid for every role, so a 42501 can only mean the role may not.
mod common;
use postgres::Client;

/// The roles, as column headings: superuser, the extension's owner (another superuser: only a
/// superuser creates orch_lease), an orch_lease_admin, an orch_lease_actor, a pg_monitor member, a
/// login with no grant, and the owner of the task table (no orch_lease role).
const ROLES: [(&str, &str); 7] = [
    ("SU", "postgres"),
    ("OW", "matrix_extension_owner"),
    ("AD", "matrix_admin"),
    ("AC", "matrix_actor"),
    ("MO", "matrix_monitor"),
    ("NO", "matrix_nobody"),
    ("TO", "matrix_table_owner"),
];

/// Each row: what is called, the call, and the roles allowed (all others must be denied).
fn matrix() -> Vec<(&'static str, &'static str, &'static str)> {
    const ACTORS: &str = "SU OW AD AC";
    const ADMINS: &str = "SU OW AD";
    const READERS: &str = "SU OW AD AC MO";
    const OWNERS: &str = "SU OW";
    vec![
        ("acquire", "SELECT orch_lease.transition_lease_acquire('1', 'o', 1, 'b')", ACTORS),
        ("acquire_session", "SELECT orch_lease.transition_lease_acquire_session('1', 'o')", ACTORS),
        ("acquire (an integer id: 42804)", "SELECT orch_lease.transition_lease_acquire(1, 'o', 1, 'b')", ACTORS),
        ("acquire_session (an integer id: 42804)", "SELECT orch_lease.transition_lease_acquire_session(1, 'o')", ACTORS),
        // 0.5.0: the stage a grant answers, and not_found for an id with no row, for the same roles.
        ("acquire's stage", "SELECT stage FROM orch_lease.transition_lease_acquire_session('1', 'o')", ACTORS),
        ("acquire not_found", "SELECT stage FROM orch_lease.transition_lease_acquire('404', 'o', 1, 'b')", ACTORS),
        ("release", "SELECT orch_lease.transition_lease_release('1', NULL)", ACTORS),
        ("held", "SELECT orch_lease.transition_lease_held('1', 1)", ACTORS),
        ("update_task_stage_cas", "SELECT orch_lease.update_task_stage_cas('1', 'queued', 'merged')", ACTORS),
        ("commit_stage_cas", "SELECT orch_lease.commit_stage_cas('1', 0, 'queued', 'merged')", ACTORS),
        ("recover (a new instance)", "SELECT orch_lease.transition_lease_recover('boot-new', 'new-instance')", ACTORS),
        ("recover (the admin's instance)", "SELECT orch_lease.transition_lease_recover('boot-2', 'admins-instance')", ADMINS),
        ("takeover (the admin's instance)", "SELECT orch_lease.transition_lease_takeover('boot-2', 'admins-instance')", ADMINS),
        ("liveness", "SELECT orch_lease.transition_lease_liveness('1')", ACTORS),
        ("work_item_key", "SELECT orch_lease.work_item_key('01')", ACTORS),
        ("metrics", "SELECT count(*) FROM orch_lease.transition_lease_metrics()", READERS),
        ("boot_liveness", "SELECT orch_lease.boot_liveness('b')", READERS),
        ("session_alive", "SELECT orch_lease.session_alive('b')", READERS),
        ("stage_write_allowed", "SELECT orch_lease.stage_write_allowed()", OWNERS),
        ("force_release", "SELECT orch_lease.transition_lease_force_release('1')", ADMINS),
        ("hand_over", "SELECT orch_lease.transition_lease_hand_over('admins-instance', current_user)", ADMINS),
        ("reap", "SELECT count(*) FROM orch_lease.transition_lease_reap(3600)", ADMINS),
        ("prune", "SELECT orch_lease.transition_lease_prune('1 day')", ADMINS),
        ("register_stage_graph", "SELECT orch_lease.register_stage_graph('{}')", ADMINS),
        // The registrations also want the task table's owner: an admin who does not own it may not.
        ("register_task_table", "SELECT orch_lease.register_task_table('tasks')", OWNERS),
        ("register_task_table rows_created_later", "SELECT orch_lease.register_task_table('tasks', rows_created_later => true)", OWNERS),
        ("install_bypass_guard", "SELECT orch_lease.install_bypass_guard('off')", OWNERS),
        ("register_task_table (own table)", "SELECT orch_lease.register_task_table('admin_tasks')", ADMINS),
        // Nobody but a superuser attaches the bypass guard by hand (not even to a table of its own).
        ("bypass_guard by hand", "CREATE TRIGGER g BEFORE UPDATE ON admin_tasks FOR EACH ROW EXECUTE FUNCTION orch_lease.bypass_guard('warn', 'stage', 'id')", OWNERS),
        ("select transition_lease", "SELECT count(*) FROM orch_lease.transition_lease", ADMINS),
        ("select lease_event", "SELECT count(*) FROM orch_lease.lease_event", ADMINS),
        ("select event_counter", "SELECT count(*) FROM orch_lease.event_counter", ADMINS),
        ("select bypass_log", "SELECT count(*) FROM orch_lease.bypass_log", ADMINS),
        ("select boot", "SELECT count(*) FROM orch_lease.boot", READERS),
        ("select task_table", "SELECT count(*) FROM orch_lease.task_table", ACTORS),
        ("select stage_transition", "SELECT count(*) FROM orch_lease.stage_transition", ACTORS),
        ("select terminal_stage", "SELECT count(*) FROM orch_lease.terminal_stage", ACTORS),
        ("select transition_lease_status", "SELECT count(*) FROM orch_lease.transition_lease_status", READERS),
        ("select lease_history", "SELECT count(*) FROM orch_lease.lease_history", READERS),
        ("write transition_lease", "DELETE FROM orch_lease.transition_lease", OWNERS),
        ("write boot", "UPDATE orch_lease.boot SET pid = 1", OWNERS),
        ("write lease_event", "DELETE FROM orch_lease.lease_event", OWNERS),
        ("draw a counter", "SELECT nextval('orch_lease.acquired_count')", OWNERS),
        ("write task_table", "UPDATE orch_lease.task_table SET id_column = 'stage'", OWNERS),
        ("write stage_transition", "DELETE FROM orch_lease.stage_transition", OWNERS),
        ("write terminal_stage", "INSERT INTO orch_lease.terminal_stage VALUES ('merged', 'tasks')", OWNERS),
        ("write bypass_log", "DELETE FROM orch_lease.bypass_log", OWNERS),
        ("nextval token_seq", "SELECT nextval('orch_lease.token_seq')", OWNERS),
        ("nextval lease_event_event_id_seq", "SELECT nextval('orch_lease.lease_event_event_id_seq')", OWNERS),
        ("set orch_lease.enabled", "SET LOCAL orch_lease.enabled = off", "SU OW"),
        ("set_enabled (the kill-switch)", "SELECT orch_lease.set_enabled(false, 'matrix')", ADMINS),
        ("kill_switch", "SELECT count(*) FROM orch_lease.kill_switch()", READERS),
        ("select kill_switch", "SELECT count(*) FROM orch_lease.kill_switch", ADMINS),
        ("write kill_switch", "DELETE FROM orch_lease.kill_switch", OWNERS),
        // 0.5.0 (#29 item 3): the adoption of data moved by logical replication (a floor above every
        // token: allowed means it set the sequences, not refused for its argument).
        ("adopt_moved_data", "SELECT orch_lease.adopt_moved_data(1000000)", ADMINS),
        ("select generation_mark", "SELECT count(*) FROM orch_lease.generation_mark", OWNERS),
        ("write generation_mark", "DELETE FROM orch_lease.generation_mark", OWNERS),
        ("nextval generation", "SELECT nextval('orch_lease.generation')", OWNERS),
        ("select stage_label", "SELECT count(*) FROM orch_lease.stage_label", OWNERS),
        ("write stage_label", "DELETE FROM orch_lease.stage_label", OWNERS),
    ]
}

/// The roles, the database with orch_lease created by its own (superuser) owner, a task table owned
/// by the table owner and registered, a table of the admin's own, and an instance the admin registered.
fn setup() -> String {
    roles("role_matrix_boot");
    let dsn = common::new_database("role_matrix", Some("matrix_extension_owner"));
    let mut owner = orch_lease_harness::connect(&common::dsn_as(&dsn, "matrix_extension_owner"));
    owner
        .batch_execute(
            "CREATE EXTENSION orch_lease;
             CREATE TABLE tasks (id bigint PRIMARY KEY, stage text NOT NULL);
             INSERT INTO tasks VALUES (1, 'queued');
             ALTER TABLE tasks OWNER TO matrix_table_owner;
             GRANT SELECT, UPDATE ON tasks TO PUBLIC;
             CREATE TABLE admin_tasks (id bigint PRIMARY KEY, stage text NOT NULL);
             ALTER TABLE admin_tasks OWNER TO matrix_admin;
             GRANT TRIGGER ON admin_tasks TO PUBLIC;
             SELECT orch_lease.register_task_table('tasks');
             SET ROLE matrix_admin;
             SELECT count(*) FROM orch_lease.transition_lease_recover('boot-1', 'admins-instance');
             RESET ROLE;",
        )
        .unwrap();
    dsn
}

/// The roles of `ROLES`, created when missing; `boot` names a throwaway database of the caller's own.
fn roles(boot: &str) {
    common::fresh_database(boot); // makes sure orch_lease's roles exist
    for (short, role) in ROLES {
        match short {
            "SU" => {}
            "OW" => {
                let mut admin = common::connect();
                admin
                    .batch_execute(&format!(
                        "DO $$ BEGIN
                             IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
                                 CREATE ROLE {role} LOGIN SUPERUSER;
                             END IF;
                         END $$"
                    ))
                    .unwrap();
            }
            "AD" => common::login_role(role, &["orch_lease_admin"]),
            "AC" => common::login_role(role, &["orch_lease_actor"]),
            "MO" => common::login_role(role, &["pg_monitor"]),
            _ => common::login_role(role, &[]),
        }
    }
}

/// Does `role` get 42501 from `call`? A result, or the error a row names in its description (the
/// function ran and refused the input), is "allowed"; any other error fails the row.
fn denied(db: &mut Client, role: &str, what: &str, call: &str) -> Result<bool, String> {
    db.batch_execute(&format!("BEGIN; SET LOCAL ROLE {role}"))
        .unwrap();
    let result = db.batch_execute(call);
    db.batch_execute("ROLLBACK").unwrap();
    match result {
        Ok(()) => Ok(false),
        Err(error) => match error.code().map(|code| code.code()) {
            Some("42501") => Ok(true),
            Some(other) if what.contains(&format!(": {other})")) => Ok(false),
            Some(other) => Err(format!("{other}: {error}")),
            None => Err(error.to_string()),
        },
    }
}

#[test]
fn every_role_against_every_object() {
    let dsn = setup();
    let mut db = orch_lease_harness::connect(&dsn);
    let mut failures = Vec::new();
    let mut cells = 0;
    println!("{:<36} {}", "", ROLES.map(|(short, _)| short).join(" "));
    for (what, call, allowed) in matrix() {
        let mut line = format!("{what:<36}");
        for (short, role) in ROLES {
            let expected_denied = !allowed.split(' ').any(|a| a == short);
            let cell = match denied(&mut db, role, what, call) {
                Ok(is_denied) => {
                    if is_denied != expected_denied {
                        failures.push(format!(
                            "{what} as {short} ({role}): {} but expected {}",
                            if is_denied { "denied" } else { "allowed" },
                            if expected_denied { "denied" } else { "allowed" }
                        ));
                    }
                    if is_denied {
                        "--"
                    } else {
                        "ok"
                    }
                }
                Err(error) => {
                    failures.push(format!(
                        "{what} as {short} ({role}): unexpected error {error}"
                    ));
                    "!!"
                }
            };
            cells += 1;
            line.push_str(&format!(" {cell}"));
        }
        println!("{line}");
    }
    assert!(cells >= 250, "the matrix covers {cells} cells");
    assert!(
        failures.is_empty(),
        "{} of {cells} cells wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// #27: an actor is granted some task tables and not others through the tables' own privileges. With
/// `tasks`, `runs` and `jobs` registered, an actor that may read and update the stage of `tasks` (and,
/// by column grants, of `runs`) but has no grant on `jobs` leases, checks and writes work items of
/// those two only; every call naming `jobs` is 42501 — orch_lease's before anything about a lease on it
/// is read, the CAS's PostgreSQL's own (the admin's lease on ('42', jobs) is neither reported held nor shown). A column grant on
/// the stage column is enough.
#[test]
fn an_actor_works_only_the_tables_it_may_write() {
    roles("role_matrix_tables_boot");
    let dsn = common::new_database("role_matrix_tables", Some("matrix_extension_owner"));
    let mut owner = orch_lease_harness::connect(&common::dsn_as(&dsn, "matrix_extension_owner"));
    owner
        .batch_execute(
            "CREATE EXTENSION orch_lease;
             CREATE TABLE tasks (id bigint PRIMARY KEY, stage text NOT NULL);
             CREATE TABLE jobs (id bigint PRIMARY KEY, stage text NOT NULL);
             CREATE TABLE runs (id bigint PRIMARY KEY, stage text NOT NULL, note text);
             INSERT INTO tasks VALUES (42, 'queued'); INSERT INTO jobs VALUES (42, 'queued');
             INSERT INTO runs VALUES (42, 'queued');
             SELECT orch_lease.register_task_table(t) FROM unnest(ARRAY['tasks', 'jobs', 'runs']::regclass[]) t;
             GRANT SELECT, UPDATE ON tasks TO matrix_actor;
             GRANT SELECT, UPDATE ON jobs TO matrix_admin;
             GRANT SELECT (id, stage), UPDATE (stage) ON runs TO matrix_actor;
             SET ROLE matrix_admin;
             SELECT orch_lease.transition_lease_acquire('42', 'admin', 1, 'boot-admin', task_table => 'jobs');
             RESET ROLE;",
        )
        .unwrap();
    let mut actor = orch_lease_harness::connect(&common::dsn_as(&dsn, "matrix_actor"));
    let code = |db: &mut Client, sql: &str| -> String {
        match db.batch_execute(sql) {
            Ok(()) => "ok".into(),
            Err(error) => error
                .code()
                .map(|code| code.code().to_string())
                .unwrap_or_default(),
        }
    };
    for table in ["tasks", "runs"] {
        for call in [
            format!("SELECT orch_lease.transition_lease_acquire('42', 'a', 1, 'boot-a', task_table => '{table}')"),
            format!("SELECT orch_lease.transition_lease_held('42', 1, task_table => '{table}')"),
            format!("SELECT orch_lease.transition_lease_liveness('42', task_table => '{table}')"),
            format!("SELECT orch_lease.work_item_key('42', task_table => '{table}')"),
            format!("SELECT orch_lease.update_task_stage_cas('42', 'queued', 'merged', task_table => '{table}')"),
        ] {
            assert_eq!(code(&mut actor, &call), "ok", "{call}");
        }
    }
    for call in [
        "SELECT orch_lease.transition_lease_acquire('42', 'a', 1, 'boot-a', task_table => 'jobs')",
        "SELECT orch_lease.transition_lease_acquire_session('42', 'a', task_table => 'jobs')",
        "SELECT orch_lease.transition_lease_held('42', 1, task_table => 'jobs')",
        "SELECT orch_lease.transition_lease_release('42', 1, task_table => 'jobs')",
        "SELECT orch_lease.transition_lease_liveness('42', task_table => 'jobs')",
        "SELECT orch_lease.work_item_key('42', task_table => 'jobs')",
        "SELECT orch_lease.update_task_stage_cas('42', 'queued', 'merged', task_table => 'jobs')",
        "SELECT orch_lease.unregister_task_table('jobs')",
        "SELECT orch_lease.transition_lease_force_release('42', task_table => 'jobs')",
    ] {
        assert_eq!(code(&mut actor, call), "42501", "{call}");
    }
    // A NULL token is refused as bad input (#31) before any table is looked at.
    let untokened =
        "SELECT orch_lease.commit_stage_cas('42', NULL, 'queued', 'merged', task_table => 'jobs')";
    assert_eq!(code(&mut actor, untokened), "22004", "{untokened}");
    let seen: i64 = actor
        .query_one(
            "SELECT count(*) FROM orch_lease.transition_lease_status WHERE task_table = 'jobs'::regclass",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        seen, 0,
        "an actor sees another role's lease on a table it may not write"
    );
    let stages: String = owner
        .query_one("SELECT string_agg(stage, ',' ORDER BY t) FROM (SELECT 'jobs' t, stage FROM jobs UNION ALL SELECT 'runs', stage FROM runs UNION ALL SELECT 'tasks', stage FROM tasks) s", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        stages, "queued,merged,merged",
        "the CAS wrote where it may not, or not where it may"
    );
}
