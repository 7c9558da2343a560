//! Keys, types and settings: a task is one lease however its id is spelled, for every accepted id type
//! and across a registration or a changed id type; what a caller spells wrong is a clean error.

use super::*;

// 0.3.0's hole 3. Work items were raw text: '42' and '042' were two leases, so two owners, on one
// bigint task.
#[test]
fn one_task_is_one_lease_however_its_id_is_spelled() {
    let mut v = Verdict::default();
    let dsn = fresh_database_with(
        "sec_keys_bigint",
        "CREATE TABLE tasks (id bigint PRIMARY KEY, stage text NOT NULL);
         INSERT INTO tasks VALUES (42, 'queued');
         SELECT orch_lease.register_task_table('tasks');",
    );
    let mut db = connect_timed(&dsn);
    let (first, token) = grant(&mut db, "42", "owner-a", "boot-a").unwrap();
    assert_eq!(first, "acquired");
    for spelling in ["042", "+42", " 42"] {
        let second = grant(&mut db, spelling, "owner-b", "boot-b").map(|(outcome, _)| outcome);
        v.answers(
            &format!("acquire('{spelling}') by another owner"),
            second,
            "held",
        );
    }
    v.sqlstate(
        "acquire('abc') on a bigint task table",
        grant(&mut db, "abc", "owner-b", "boot-b"),
        "22P02",
    );
    let key = db
        .query_one("SELECT orch_lease.work_item_key('042')", &[])
        .map(|row| row.get(0));
    v.answers("work_item_key('042')", key, "42");
    let commit = outcome(
        &mut db,
        "commit_stage_cas('042', $1, 'queued', 'merged')",
        &[&token],
    );
    v.answers("commit_stage_cas('042', token of '42')", commit, "applied");

    let dsn = fresh_database_with(
        "sec_keys_uuid",
        "CREATE TABLE tasks (id uuid PRIMARY KEY, stage text NOT NULL);
         INSERT INTO tasks VALUES ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'queued');
         SELECT orch_lease.register_task_table('tasks');",
    );
    let mut db = connect_timed(&dsn);
    let (first, _) = grant(
        &mut db,
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "owner-a",
        "boot-a",
    )
    .unwrap();
    assert_eq!(first, "acquired");
    for spelling in [
        "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
        "{A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11}",
        "a0eebc999c0b4ef8bb6d6bb9bd380a11",
    ] {
        let second = grant(&mut db, spelling, "owner-b", "boot-b").map(|(outcome, _)| outcome);
        v.answers(
            &format!("acquire('{spelling}') by another owner"),
            second,
            "held",
        );
    }
    v.finish();
}

/// One database per id type: `tasks(id <id_type>, stage text)` with the row `row`, registered.
fn tasks_with_id(database: &str, id_type: &str, row: &str) -> String {
    fresh_database_with(
        database,
        &format!(
            "CREATE TABLE tasks (id {id_type} PRIMARY KEY, stage text NOT NULL);
             INSERT INTO tasks VALUES ('{row}', 'queued');
             SELECT orch_lease.register_task_table('tasks');"
        ),
    )
}

// #29.1 (HIGH). Keys read a domain over varchar(n) by its base type without the length, the CAS through
// the domain: 'PR-130   ' and 'PR-130' were two leases on one row, both `acquired`, and the first
// holder's commit answered lease_lost while its lease stayed held.
#[test]
fn every_accepted_id_type_keys_one_row_once() {
    let mut v = Verdict::default();
    let families: [(&str, &str, &str, &[&str]); 6] = [
        ("varchar", "varchar(6)", "PR-130", &["PR-130   ", "PR-130 "]),
        (
            "domain",
            "public.pr_id",
            "PR-130",
            &["PR-130   ", "PR-130 "],
        ),
        ("domain2", "public.pr_id2", "PR-130", &["PR-130   "]),
        ("bigint", "public.big_id", "42", &["042", "+42", " 42"]),
        ("int", "integer", "42", &["0042", "+42"]),
        (
            "uuid",
            "public.uuid_id",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            &[
                "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
                "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
                "a0eebc999c0b4ef8bb6d6bb9bd380a11",
            ],
        ),
    ];
    for (name, id_type, row, spellings) in families {
        let dsn = fresh_database_with(
            &format!("sec29_ids_{name}"),
            &format!(
                "CREATE DOMAIN public.pr_id AS varchar(6) CHECK (VALUE LIKE 'PR-%');
                 CREATE DOMAIN public.pr_id2 AS public.pr_id;
                 CREATE DOMAIN public.big_id AS bigint;
                 CREATE DOMAIN public.uuid_id AS uuid;
                 CREATE TABLE tasks (id {id_type} PRIMARY KEY, stage text NOT NULL);
                 INSERT INTO tasks VALUES ('{row}', 'queued');
                 SELECT orch_lease.register_task_table('tasks');"
            ),
        );
        let mut db = connect_timed(&dsn);
        for spelling in spellings {
            let (first, token) = acquire(&mut db, spelling, "owner-a", "boot-a");
            v.eq(
                &format!("{id_type}: acquire('{spelling}')"),
                first.as_str(),
                "acquired",
            );
            let second = grant(&mut db, row, "owner-b", "boot-b").map(|(outcome, _)| outcome);
            v.answers(
                &format!("{id_type}: acquire('{row}') while '{spelling}' is held"),
                second,
                "held",
            );
            let key = db
                .query_one("SELECT orch_lease.work_item_key($1)", &[spelling])
                .map(|row| row.get::<_, String>(0));
            v.answers(&format!("{id_type}: work_item_key('{spelling}')"), key, row);
            let commit = outcome(
                &mut db,
                "commit_stage_cas($1, $2, 'queued', 'queued')",
                &[spelling, &token],
            );
            v.answers(
                &format!("{id_type}: commit of '{spelling}' by its holder"),
                commit,
                "applied",
            );
            let left = db
                .query_one("SELECT count(*) FROM orch_lease.transition_lease", &[])
                .unwrap()
                .get::<_, i64>(0);
            v.eq(&format!("{id_type}: leases left after the commit"), left, 0);
        }
    }
    // Longer than the column holds is no id of the table: the type's own error, no lease.
    let dsn = tasks_with_id("sec29_ids_long", "varchar(6)", "PR-130");
    let mut db = connect_timed(&dsn);
    v.sqlstate(
        "varchar(6): acquire('PR-1300')",
        grant(&mut db, "PR-1300", "owner-a", "boot-a"),
        "22001",
    );
    // Types whose text has several spellings of one value are refused: char(n) (padding), a domain over
    // it, citext (case) and a case-insensitive collation.
    let dsn = fresh_database_with("sec29_ids_refused", "");
    let mut db = connect_timed(&dsn);
    let mut refused = vec!["char(6)", "public.pr_char"];
    db.batch_execute("CREATE DOMAIN public.pr_char AS char(6)")
        .unwrap();
    if db
        .batch_execute("CREATE EXTENSION IF NOT EXISTS citext")
        .is_ok()
    {
        db.batch_execute("CREATE DOMAIN public.ci_id AS citext")
            .unwrap();
        refused.extend(["citext", "public.ci_id"]);
    }
    if db
        .batch_execute(
            "CREATE COLLATION public.ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
             CREATE DOMAIN public.ci_text AS text COLLATE public.ci",
        )
        .is_ok()
    {
        refused.extend(["text COLLATE public.ci", "public.ci_text"]);
    }
    for id_type in refused {
        db.batch_execute(&format!(
            "DROP TABLE IF EXISTS tasks; CREATE TABLE tasks (id {id_type} PRIMARY KEY, stage text)"
        ))
        .unwrap();
        v.sqlstate(
            &format!("register_task_table with an id of {id_type}"),
            db.execute("SELECT orch_lease.register_task_table('tasks')", &[]),
            "42804",
        );
    }
    v.finish();
}

// #29.2 (a). A transaction that acquired '042' (raw key, nothing registered) while register_task_table
// ran kept its raw lease, which the registration did not see (not committed yet), and others keyed '42':
// two holders. force_release('042') then ended the other holder's '42'.
#[test]
fn a_registration_waits_for_the_calls_in_flight() {
    let mut v = Verdict::default();
    let dsn = fresh_database_with(
        "sec29_register_inflight",
        "CREATE TABLE tasks (id bigint PRIMARY KEY, stage text NOT NULL);
         INSERT INTO tasks VALUES (42, 'queued');",
    );
    let (mut a, mut b, mut admin) = (
        connect_timed(&dsn),
        connect_timed(&dsn),
        connect_timed(&dsn),
    );
    admin.batch_execute("SET lock_timeout = '300ms'").unwrap();
    a.batch_execute("BEGIN").unwrap();
    let (raw, _) = acquire(&mut a, "042", "owner-a", "boot-a");
    v.eq(
        "acquire('042') before any registration",
        raw.as_str(),
        "acquired",
    );
    v.sqlstate(
        "register_task_table while that acquire's transaction is open",
        admin.execute("SELECT orch_lease.register_task_table('tasks')", &[]),
        "55P03",
    );
    a.batch_execute("COMMIT").unwrap();
    v.sqlstate(
        "register_task_table with a lease on '042' held",
        admin.execute("SELECT orch_lease.register_task_table('tasks')", &[]),
        "55000",
    );
    let forced = admin
        .query_one(
            "SELECT orch_lease.transition_lease_force_release('042')",
            &[],
        )
        .map(|row| row.get::<_, bool>(0));
    v.eq("force_release('042')", forced.ok(), Some(true));
    v.ok(
        "register_task_table once the raw lease is gone",
        admin.execute("SELECT orch_lease.register_task_table('tasks')", &[]),
    );
    let (first, _) = acquire(&mut a, "042", "owner-a", "boot-a");
    v.eq(
        "acquire('042') after the registration",
        first.as_str(),
        "acquired",
    );
    let second = grant(&mut b, "42", "owner-b", "boot-b").map(|(outcome, _)| outcome);
    v.answers("acquire('42') by another", second, "held");

    // A REPEATABLE READ transaction whose snapshot predates a registration keys by that registration.
    let dsn = fresh_database_with(
        "sec29_register_rr",
        "CREATE TABLE tasks (id bigint PRIMARY KEY, stage text NOT NULL);
         INSERT INTO tasks VALUES (42, 'queued');",
    );
    let (mut a, mut admin) = (connect_timed(&dsn), connect_timed(&dsn));
    let before = a
        .query_one("SELECT orch_lease.work_item_key('042')", &[])
        .map(|row| row.get::<_, String>(0));
    v.answers("work_item_key('042'), nothing registered", before, "042");
    a.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM tasks")
        .unwrap();
    v.ok(
        "register_task_table while a snapshot that has not called orch_lease is open",
        admin.execute("SELECT orch_lease.register_task_table('tasks')", &[]),
    );
    let (rr, _) = acquire(&mut a, "042", "owner-a", "boot-a");
    v.eq(
        "acquire('042') in the older snapshot",
        rr.as_str(),
        "acquired",
    );
    a.batch_execute("COMMIT").unwrap();
    let keys = admin
        .query_one(
            "SELECT string_agg(work_item, ' ') FROM orch_lease.transition_lease",
            &[],
        )
        .map(|row| row.get::<_, String>(0));
    v.answers("the lease's key", keys, "42");
    v.finish();
}

// #29.2 (b). ALTER TABLE … ALTER COLUMN id TYPE bigint re-keyed nothing: a lease on '042' (a text id)
// and a new one on '42' were two holders of one row.
#[test]
fn a_changed_id_type_needs_a_new_registration() {
    let mut v = Verdict::default();
    let dsn = fresh_database_with(
        "sec29_alter_type",
        "CREATE TABLE tasks (id text PRIMARY KEY, stage text NOT NULL);
         INSERT INTO tasks VALUES ('042', 'queued');
         SELECT orch_lease.register_task_table('tasks');",
    );
    let (mut a, mut b, mut admin) = (
        connect_timed(&dsn),
        connect_timed(&dsn),
        connect_timed(&dsn),
    );
    let (first, _) = acquire(&mut a, "042", "owner-a", "boot-a");
    v.eq("acquire('042') of a text id", first.as_str(), "acquired");
    admin
        .batch_execute("ALTER TABLE tasks ALTER COLUMN id TYPE bigint USING id::bigint")
        .unwrap();
    v.sqlstate(
        "acquire('42') after the id became a bigint",
        grant(&mut b, "42", "owner-b", "boot-b"),
        "55000",
    );
    v.sqlstate(
        "register_task_table with the lease on '042' held",
        admin.execute("SELECT orch_lease.register_task_table('tasks')", &[]),
        "55000",
    );
    let forced = admin
        .query_one(
            "SELECT orch_lease.transition_lease_force_release('042')",
            &[],
        )
        .map(|row| row.get::<_, bool>(0));
    v.eq(
        "force_release('042'), the type changed",
        forced.ok(),
        Some(true),
    );
    v.ok(
        "register_task_table again",
        admin.execute("SELECT orch_lease.register_task_table('tasks')", &[]),
    );
    let (second, _) = acquire(&mut b, "42", "owner-b", "boot-b");
    v.eq(
        "acquire('42') after registering again",
        second.as_str(),
        "acquired",
    );
    let third = grant(&mut a, "042", "owner-a", "boot-a").map(|(outcome, _)| outcome);
    v.answers("acquire('042') by another", third, "held");
    v.finish();
}

// #29.16. In a SQL_ASCII database a text argument that is not UTF-8 failed with XX000 and pgrx's
// "Utf8Error { valid_up_to: 1, … }" instead of a clean 22021.
#[test]
fn a_text_argument_that_is_not_utf8_is_22021() {
    let mut v = Verdict::default();
    let mut admin = connect();
    admin
        .batch_execute("DROP DATABASE IF EXISTS sec29_sql_ascii WITH (FORCE)")
        .unwrap();
    admin
        .batch_execute(
            "CREATE DATABASE sec29_sql_ascii TEMPLATE template0 ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C'",
        )
        .unwrap();
    let dsn = format!("{} dbname=sec29_sql_ascii", dsn());
    let mut db = connect_timed(&dsn);
    db.batch_execute(&format!("CREATE EXTENSION orch_lease; {TEXT_TASKS}"))
        .unwrap();
    for call in [
        "SELECT orch_lease.transition_lease_acquire(E'\\xffA', 'o', 1, 'b')",
        "SELECT orch_lease.update_task_stage_cas('task-1', E'queued\\xff', 'merged')",
        "SELECT orch_lease.work_item_key(E'\\xc3')",
    ] {
        let result = db.batch_execute(call);
        if let Err(error) = &result {
            let db_error = error.as_db_error();
            v.check(
                db_error.is_some_and(|e| e.message().starts_with("orch_lease: ")),
                format!("{call}: the message is not orch_lease's: {error}"),
            );
        }
        v.sqlstate(call, result, "22021");
    }
    v.ok("the session stays usable", db.batch_execute("SELECT 1"));
    v.finish();
}

// 0.3.0's hole 12. orch_lease.* settings were not reserved: a typo of the kill-switch was silently
// accepted.
#[test]
fn a_misspelt_orch_lease_setting_is_an_error() {
    let dsn = fresh_database_with("sec_guc_typo", TEXT_TASKS);
    let mut db = connect_timed(&dsn);
    db.query_one("SELECT orch_lease.transition_lease_liveness('task-1')", &[])
        .unwrap(); // orch_lease is loaded in this session
    let mut v = Verdict::default();
    for typo in [
        "SET orch_lease.enable = off",
        "SET orch_lease.scope = 'deploy'",
    ] {
        // invalid_name: "orch_lease" is a reserved prefix
        v.sqlstate(typo, db.batch_execute(typo), "42602");
    }
    v.ok(
        "SET orch_lease.enabled = off",
        db.batch_execute("SET orch_lease.enabled = off; RESET orch_lease.enabled"),
    );
    v.finish();
}
