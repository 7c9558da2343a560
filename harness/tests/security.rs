//! Security and correctness holes of 0.3.0, one regression test each, over real connections and real
//! roles. Each test asserts the 0.4.0 contract; it collects every violation it sees before failing, so
//! that a red run says all that is wrong, not only the first thing.
mod common;
use common::*;
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, Error, IsolationLevel, Row};
use std::fmt::Debug;
use std::time::{Duration, Instant};

/// The contract violations one test found.
#[derive(Default)]
struct Verdict(Vec<String>);

impl Verdict {
    fn check(&mut self, ok: bool, what: impl std::fmt::Display) {
        if !ok {
            self.0.push(what.to_string());
        }
    }

    fn eq<T: PartialEq + Debug>(&mut self, what: &str, actual: T, expected: T) {
        if actual != expected {
            self.0
                .push(format!("{what}: expected {expected:?}, got {actual:?}"));
        }
    }

    /// A call that must succeed: its value, or None with the error recorded.
    fn ok<T>(&mut self, what: &str, result: Result<T, Error>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                let error = self.describe(&error);
                self.0
                    .push(format!("{what}: expected success, got {error}"));
                None
            }
        }
    }

    /// A call whose first column must be `expected` (as text).
    fn answers(&mut self, what: &str, result: Result<String, Error>, expected: &str) {
        if let Some(actual) = self.ok(what, result) {
            self.eq(what, actual.as_str(), expected);
        }
    }

    /// A call that must fail with SQLSTATE `code`.
    fn sqlstate<T: Debug>(&mut self, what: &str, result: Result<T, Error>, code: &str) {
        match result {
            Ok(value) => self.0.push(format!(
                "{what}: expected SQLSTATE {code}, got success: {value:?}"
            )),
            Err(error) => {
                let described = self.describe(&error);
                if error.code().map(|state| state.code()) != Some(code) {
                    self.0
                        .push(format!("{what}: expected SQLSTATE {code}, got {described}"));
                }
            }
        }
    }

    /// Text that reaches users (an error, a tool's stderr) must not expose Rust internals.
    fn no_internals(&mut self, text: &str) {
        if text.contains("backtrace") || text.contains(".rs:") {
            let start: String = text.trim().chars().take(160).collect();
            self.0.push(format!(
                "a message exposes Rust internals ({} bytes): {start:?}…",
                text.len()
            ));
        }
    }

    /// An error as `SQLSTATE: message (detail)`; its every text field is checked by `no_internals`.
    fn describe(&mut self, error: &Error) -> String {
        let Some(db) = error.as_db_error() else {
            return error.to_string();
        };
        for text in [Some(db.message()), db.detail(), db.hint(), db.where_()]
            .into_iter()
            .flatten()
        {
            self.no_internals(text);
        }
        let mut described = format!("{}: {}", db.code().code(), db.message());
        if let Some(detail) = db.detail() {
            let detail: String = detail.trim().chars().take(160).collect();
            described.push_str(&format!(" (detail: {detail})"));
        }
        described
    }

    fn finish(self) {
        assert!(
            self.0.is_empty(),
            "{} contract violation(s):\n  - {}",
            self.0.len(),
            self.0.join("\n  - ")
        );
    }
}

/// The token of the lease on `item`, read by the superuser; None when there is no lease.
fn lease_token(superuser: &mut Client, item: &str) -> Option<i64> {
    superuser
        .query_opt(
            "SELECT token FROM orch_lease.transition_lease WHERE work_item = $1",
            &[&item],
        )
        .unwrap()
        .map(|row| row.get(0))
}

/// A fresh database with the `tasks` table, and a session of each of two actor roles (login roles, members
/// of orch_lease_actor): (its DSN, `first`'s session, `second`'s).
fn two_actors(database: &str, first: &str, second: &str) -> (String, Client, Client) {
    let dsn = fresh_database_with(database, TEXT_TASKS);
    login_role(first, &["orch_lease_actor"]);
    login_role(second, &["orch_lease_actor"]);
    let a = connect_timed(&dsn_as(&dsn, first));
    let b = connect_timed(&dsn_as(&dsn, second));
    (dsn, a, b)
}

fn first_texts(rows: &[Row]) -> Vec<String> {
    rows.iter().map(|row| row.get(0)).collect()
}

// 1. The bypass guard ran the task table's own code (an enum's cast to json, reached by to_jsonb) as the
//    extension's owner, a superuser: a table owner could make itself superuser with one bare UPDATE.
#[test]
fn the_bypass_guard_lends_the_extension_owner_s_rights_to_nobody() {
    let role = "orch_sec_guard_owner";
    let dsn = fresh_database_with("sec_bypass_guard", "");
    login_role(role, &["orch_lease_actor"]);
    let mut superuser = connect_timed(&dsn);
    superuser
        .batch_execute(&format!("CREATE SCHEMA app AUTHORIZATION {role}"))
        .unwrap();
    let mut owner = connect_timed(&dsn_as(&dsn, role));
    owner
        .batch_execute(&format!(
            "CREATE TYPE app.task_stage AS ENUM ('queued', 'merged');
             CREATE TABLE app.tasks (id text PRIMARY KEY, stage app.task_stage NOT NULL);
             INSERT INTO app.tasks VALUES ('task-1', 'queued');
             CREATE FUNCTION app.stage_json(app.task_stage) RETURNS json LANGUAGE plpgsql AS $f$
             BEGIN
                 BEGIN
                     EXECUTE format('ALTER ROLE %I SUPERUSER', '{role}');
                 EXCEPTION WHEN OTHERS THEN NULL;
                 END;
                 RETURN to_json($1::text);
             END $f$;
             CREATE CAST (app.task_stage AS json) WITH FUNCTION app.stage_json(app.task_stage);"
        ))
        .unwrap();
    superuser
        .batch_execute(
            "SELECT orch_lease.register_task_table('app.tasks');
             SELECT orch_lease.install_bypass_guard('warn');",
        )
        .unwrap();

    let mut v = Verdict::default();
    v.ok(
        "the owner's bare stage UPDATE (the guard in warn mode lets it through)",
        owner.execute(
            "UPDATE app.tasks SET stage = 'merged' WHERE id = 'task-1'",
            &[],
        ),
    );
    let escalated: bool = superuser
        .query_one("SELECT rolsuper FROM pg_roles WHERE rolname = $1", &[&role])
        .unwrap()
        .get(0);
    v.check(
        !escalated,
        format!("{role} made itself SUPERUSER: the guard ran its cast with the extension owner's rights"),
    );
    let by_role = superuser
        .query("SELECT by_role::text FROM orch_lease.bypass_log", &[])
        .unwrap();
    v.eq(
        "bypass_log.by_role of the bare UPDATE",
        first_texts(&by_role),
        vec![role.to_string()],
    );
    superuser
        .batch_execute(&format!("ALTER ROLE {role} NOSUPERUSER"))
        .unwrap();
    v.finish();
}

// 2. A takeover announcement built from 1000 control characters (6000 bytes once JSON-escaped) was over
//    NOTIFY's 8000-byte limit: reap, force_release, a reclaiming acquire and recover all raised.
#[test]
fn takeovers_of_leases_with_huge_control_character_names_are_announced_cut() {
    // Its items have no task row: a table whose rows come after their leases (0.5.0's opt-out).
    let dsn = fresh_database_with(
        "sec_notify_long",
        &format!("{TEXT_TASKS} SELECT orch_lease.register_task_table('tasks', rows_created_later => true);"),
    );
    let mut listener = orch_lease_harness::connect(&dsn);
    listener.batch_execute("LISTEN orch_lease").unwrap();
    let mut actor = connect_timed(&dsn);
    let mut superuser = connect_timed(&dsn);
    actor
        .query(
            "SELECT * FROM orch_lease.transition_lease_recover('boot-1', 'orchestrator')",
            &[],
        )
        .unwrap();
    let noise = "\u{1}".repeat(1000); // allowed: at most 1024 bytes
    let item = |tag: &str| format!("{noise}{tag}");
    let mut v = Verdict::default();
    let mut takeovers = 0;

    // Forced.
    let forced = item("force");
    if let Some((_, token)) = v.ok(
        "acquire (force)",
        grant(&mut actor, &forced, &noise, "boot-1"),
    ) {
        takeovers += 1;
        let released = actor
            .query_one(
                "SELECT orch_lease.transition_lease_force_release($1, $2, $3)",
                &[&forced, &token, &noise],
            )
            .map(|row| row.get::<_, bool>(0));
        if let Some(released) = v.ok("force_release", released) {
            v.check(released, "force_release answered false");
        }
    }

    // Reaped at the age ceiling.
    let reaped = item("reap");
    if v.ok(
        "acquire (reap)",
        grant(&mut actor, &reaped, &noise, "boot-1"),
    )
    .is_some()
    {
        takeovers += 1;
        superuser
            .execute(
                "UPDATE orch_lease.transition_lease SET acquired_at = now() - interval '2 hours'
                  WHERE work_item = $1",
                &[&reaped],
            )
            .unwrap();
        let rows = actor.query(
            "SELECT work_item FROM orch_lease.transition_lease_reap(3600)",
            &[],
        );
        if let Some(rows) = v.ok("transition_lease_reap(3600)", rows) {
            v.eq(
                "reaped work items",
                first_texts(&rows),
                vec![reaped.clone()],
            );
        }
    }

    // Reclaimed from a session-bound lease whose session is gone.
    let abandoned = item("session");
    let mut session = connect_timed(&dsn);
    let pid: i32 = session
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let session_grant = session
        .query_one(
            "SELECT outcome FROM orch_lease.transition_lease_acquire_session($1, $2)",
            &[&abandoned, &noise],
        )
        .map(|row| row.get(0));
    v.answers("acquire_session", session_grant, "acquired");
    drop(session);
    await_backend_exit(&mut superuser, pid);
    takeovers += 1;
    let reclaim = grant(&mut actor, &abandoned, "monitor", "boot-m").map(|(outcome, _)| outcome);
    v.answers("reclaiming acquire", reclaim, "reclaimed");

    // Recovered: the holder's boot is superseded by a new one.
    let recovered = item("recover");
    if v.ok(
        "acquire (recover)",
        grant(&mut actor, &recovered, &noise, "boot-1"),
    )
    .is_some()
    {
        takeovers += 1;
        let rows = actor.query(
            "SELECT work_item FROM orch_lease.transition_lease_recover('boot-2', 'orchestrator')",
            &[],
        );
        if let Some(rows) = v.ok("recover by a new boot", rows) {
            v.eq(
                "recovered work items",
                first_texts(&rows),
                vec![recovered.clone()],
            );
        }
    }

    // Each takeover here is its own statement: one payload (format version 2) with one event.
    let mut payloads = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut notifications = listener.notifications();
    while payloads.len() < takeovers {
        let left = deadline.saturating_duration_since(Instant::now());
        match notifications.timeout_iter(left).next() {
            Ok(Some(note)) => payloads.push(note.payload().to_string()),
            Ok(None) => break,
            Err(error) => panic!("listener: {error}"),
        }
    }
    v.eq("announcements received", payloads.len(), takeovers);
    for payload in &payloads {
        v.check(
            payload.len() < 8000,
            format!("a payload of {} bytes", payload.len()),
        );
        let truncated = actor
            .query_one(
                "SELECT CASE WHEN json_array_length($1::text::json -> 'events') = 1
                             THEN $1::text::json -> 'events' -> 0 ->> 'truncated' END",
                &[payload],
            )
            .map(|row| row.get::<_, Option<String>>(0));
        if let Some(truncated) = v.ok("the payload parses as JSON", truncated) {
            v.eq(
                "the payload's \"truncated\"",
                truncated.as_deref(),
                Some("true"),
            );
        }
    }
    v.finish();
}

// 3. Work items were raw text: '42' and '042' were two leases, so two owners, on one bigint task.
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

// 4. A CAS that could not lock the task row (lock_timeout) answered stage_mismatch, and commit_stage_cas
//    deleted the lease: the actor gave up a transition nobody else had made.
#[test]
fn a_cas_that_times_out_on_the_row_lock_says_retry_and_keeps_the_lease() {
    let dsn = fresh_database_with("sec_lock_timeout", TEXT_TASKS);
    let (mut locker, mut actor, mut superuser) = (
        connect_timed(&dsn),
        connect_timed(&dsn),
        connect_timed(&dsn),
    );
    actor.batch_execute("SET lock_timeout = '200ms'").unwrap();
    let (first, token) = grant(&mut actor, "task-1", "monitor", "boot-1").unwrap();
    assert_eq!(first, "acquired");
    let mut v = Verdict::default();

    let mut lock = locker.transaction().unwrap();
    lock.query("SELECT 1 FROM tasks WHERE id = 'task-1' FOR UPDATE", &[])
        .unwrap();
    let update = outcome(
        &mut actor,
        "update_task_stage_cas('task-1', 'queued', 'merged', $1)",
        &[&token],
    );
    v.answers(
        "update_task_stage_cas with the token, row locked",
        update,
        "retry",
    );
    let commit = outcome(
        &mut actor,
        "commit_stage_cas('task-1', $1, 'queued', 'merged')",
        &[&token],
    );
    v.answers("commit_stage_cas, row locked", commit, "retry");
    v.eq(
        "stage after the timed-out CAS",
        stage(&mut superuser, "task-1"),
        "queued".to_string(),
    );
    v.eq(
        "the lease after a retry (same token)",
        lease_token(&mut superuser, "task-1"),
        token,
    );
    // With the kill-switch off the CAS is a bare UPDATE, and a locked row is still contention, not an
    // error (the model's conformance run found it raising 55P03).
    actor.batch_execute("SET orch_lease.enabled = off").unwrap();
    let switched_off = outcome(
        &mut actor,
        "commit_stage_cas('task-1', $1, 'queued', 'merged')",
        &[&token],
    );
    v.answers(
        "commit_stage_cas, switch off, row locked",
        switched_off,
        "retry",
    );
    actor.batch_execute("RESET orch_lease.enabled").unwrap();
    v.eq(
        "the lease after a retry with the switch off",
        lease_token(&mut superuser, "task-1"),
        token,
    );
    lock.rollback().unwrap();

    let commit = outcome(
        &mut actor,
        "commit_stage_cas('task-1', $1, 'queued', 'merged')",
        &[&token],
    );
    v.answers(
        "commit_stage_cas retried once the row is free",
        commit,
        "applied",
    );
    v.finish();
}

// 5. Any actor holding another actor's token (from the status view or the lease table, which every actor
//    could read) could release that actor's lease or commit under it.
#[test]
fn another_actor_s_token_is_neither_readable_nor_usable() {
    let (role_a, role_b) = ("orch_sec_token_a", "orch_sec_token_b");
    let (dsn, mut a, mut b) = two_actors("sec_foreign_token", role_a, role_b);
    let mut superuser = connect_timed(&dsn);
    superuser
        .batch_execute(&format!(
            "GRANT SELECT, UPDATE ON tasks TO {role_a}, {role_b}"
        ))
        .unwrap();
    let (first, token) = grant(&mut a, "task-1", "actor-a", "boot-a").unwrap();
    assert_eq!(first, "acquired");
    let mut v = Verdict::default();

    let status = b.query(
        "SELECT token FROM orch_lease.transition_lease_status WHERE work_item = 'task-1'",
        &[],
    );
    if let Some(rows) = v.ok("B reads the status view", status) {
        let tokens: Vec<Option<i64>> = rows.iter().map(|row| row.get(0)).collect();
        v.check(
            tokens.iter().all(Option::is_none),
            format!("B reads A's token in transition_lease_status: {tokens:?}"),
        );
    }
    v.sqlstate(
        "B reads orch_lease.transition_lease",
        b.query("SELECT * FROM orch_lease.transition_lease", &[])
            .map(|rows| format!("{} row(s)", rows.len())),
        "42501",
    );

    let release = b
        .query_one(
            "SELECT orch_lease.transition_lease_release('task-1', $1)",
            &[&token],
        )
        .map(|row| row.get::<_, bool>(0));
    v.sqlstate("B releases A's lease with A's token", release, "42501");
    v.eq(
        "A's lease after B's release",
        lease_token(&mut superuser, "task-1"),
        token,
    );

    let commit = outcome(
        &mut b,
        "commit_stage_cas('task-1', $1, 'queued', 'merged')",
        &[&token],
    );
    v.sqlstate("B commits with A's token", commit, "42501");
    let update = outcome(
        &mut b,
        "update_task_stage_cas('task-1', 'queued', 'merged', $1)",
        &[&token],
    );
    v.sqlstate("B's update_task_stage_cas with A's token", update, "42501");
    v.eq(
        "stage after B's attempts",
        stage(&mut superuser, "task-1"),
        "queued".to_string(),
    );
    v.eq(
        "A's lease after B's attempts",
        lease_token(&mut superuser, "task-1"),
        token,
    );

    let commit = outcome(
        &mut a,
        "commit_stage_cas('task-1', $1, 'queued', 'merged')",
        &[&token],
    );
    v.answers("A commits with its own token", commit, "applied");
    v.finish();
}

/// The directory of the client programs matching the server's major version.
fn pg_bin(db: &mut Client) -> std::path::PathBuf {
    if let Ok(dir) = std::env::var("ORCH_LEASE_PG_BIN") {
        return dir.into();
    }
    let version: String = db.query_one("SHOW server_version_num", &[]).unwrap().get(0);
    let major = version.parse::<u32>().unwrap() / 10000;
    format!("/usr/lib/postgresql/{major}/bin").into()
}

/// Runs a client program; its stderr must show no error and no Rust internals.
fn run_tool(v: &mut Verdict, what: &str, program: std::path::PathBuf, args: &[&str]) {
    let output = std::process::Command::new(&program)
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", program.display()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    v.no_internals(&stderr);
    v.check(
        output.status.success() && !stderr.contains("ERROR"),
        format!("{what}: {} — {}", output.status, stderr.trim()),
    );
}

// 6. The history's identity sequence was not dumped: after pg_dump and a restore, the first event of the
//    first acquire hit lease_event_pkey (23505).
#[test]
fn a_dumped_and_restored_database_grants_new_larger_tokens() {
    let dsn = fresh_database_with("sec_dump", TEXT_TASKS);
    let mut db = connect_timed(&dsn);
    db.query(
        "SELECT * FROM orch_lease.transition_lease_recover('boot-1', 'orchestrator')",
        &[],
    )
    .unwrap();
    let mut tokens = Vec::new();
    for item in ["task-1", "task-2", "task-3"] {
        let (first, token) = grant(&mut db, item, "monitor", "boot-1").unwrap();
        assert_eq!(first, "acquired");
        tokens.push(token.unwrap());
    }
    assert_eq!(
        outcome(
            &mut db,
            "commit_stage_cas('task-1', $1, 'queued', 'merged')",
            &[&tokens[0]]
        )
        .unwrap(),
        "applied"
    );
    db.execute(
        "SELECT orch_lease.transition_lease_force_release('task-2', $1, 'on-call')",
        &[&tokens[1]],
    )
    .unwrap();
    db.batch_execute(
        "SELECT orch_lease.register_stage_graph(ARRAY['queued -> merged', 'merged -> done'], ARRAY['done']);
         SELECT count(*) FROM orch_lease.transition_lease_recover('boot-2', 'orchestrator');",
    )
    .unwrap();
    let (first, token) = grant(&mut db, "task-4", "monitor", "boot-2").unwrap();
    assert_eq!(first, "acquired");
    tokens.push(token.unwrap());
    let before = *tokens.iter().max().unwrap();

    let bin = pg_bin(&mut db);
    let mut v = Verdict::default();
    for format in ["plain", "custom"] {
        let target_dsn = new_database(&format!("sec_dump_{format}"), None);
        let file = std::env::temp_dir().join(format!(
            "orch_lease-sec-dump-{}.{format}",
            std::process::id()
        ));
        let file_arg = file.to_str().unwrap();
        let dump_format = if format == "plain" { "-Fp" } else { "-Fc" };
        run_tool(
            &mut v,
            &format!("pg_dump {dump_format}"),
            bin.join("pg_dump"),
            &["--no-password", dump_format, "-f", file_arg, "-d", &dsn],
        );
        if format == "plain" {
            run_tool(
                &mut v,
                "psql restore",
                bin.join("psql"),
                &[
                    "-X",
                    "-q",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-d",
                    &target_dsn,
                    "-f",
                    file_arg,
                ],
            );
        } else {
            run_tool(
                &mut v,
                "pg_restore",
                bin.join("pg_restore"),
                &["--exit-on-error", "-d", &target_dsn, file_arg],
            );
        }
        let _ = std::fs::remove_file(&file);

        let mut restored = connect_timed(&target_dsn);
        if let Some((outcome, token)) = v.ok(
            &format!("{format} restore: acquire a new item"),
            grant(&mut restored, "task-5", "monitor", "boot-2"),
        ) {
            v.eq(
                &format!("{format} restore: acquire a new item"),
                outcome.as_str(),
                "acquired",
            );
            v.check(
                token.is_some_and(|token| token > before),
                format!("{format} restore: new token {token:?} is not above {before}"),
            );
        }
        let held = grant(&mut restored, "task-4", "webhook", "boot-w").map(|(outcome, _)| outcome);
        v.answers(
            &format!("{format} restore: the lease held before the dump"),
            held,
            "held",
        );
        let graph = outcome(
            &mut restored,
            "update_task_stage_cas('task-6', 'queued', 'done')",
            &[],
        );
        v.answers(
            &format!("{format} restore: the stage graph"),
            graph,
            "invalid_transition",
        );
        every_function_works(&mut v, &mut restored, format, tokens[3]);
    }
    v.finish();
}

/// After a restore: the rest of the contract, each function called once, and the history numbering on.
fn every_function_works(v: &mut Verdict, db: &mut Client, format: &str, held_token: i64) {
    let events_before: i64 = db
        .query_one("SELECT max(event_id) FROM orch_lease.lease_event", &[])
        .unwrap()
        .get(0);
    let calls: [(&str, &str); 11] = [
        ("commit under the lease held before the dump", "SELECT outcome FROM orch_lease.commit_stage_cas('task-4', $1, 'queued', 'merged')"),
        ("acquire", "SELECT outcome FROM orch_lease.transition_lease_acquire('task-7', 'monitor', 1, 'boot-2') WHERE $1::bigint IS NOT NULL"),
        ("release", "SELECT orch_lease.transition_lease_release('task-7', (SELECT token FROM orch_lease.transition_lease WHERE work_item = 'task-7'))::text WHERE $1::bigint IS NOT NULL"),
        ("force_release", "SELECT orch_lease.transition_lease_force_release('task-5')::text WHERE $1::bigint IS NOT NULL"),
        ("recover", "SELECT count(*)::text FROM orch_lease.transition_lease_recover('boot-3', 'orchestrator') WHERE $1::bigint IS NOT NULL"),
        ("liveness", "SELECT orch_lease.transition_lease_liveness('task-1') WHERE $1::bigint IS NOT NULL"),
        ("reap", "SELECT count(*)::text FROM orch_lease.transition_lease_reap(3600) WHERE $1::bigint IS NOT NULL"),
        ("prune", "SELECT orch_lease.transition_lease_prune('1 day')::text WHERE $1::bigint IS NOT NULL"),
        ("metrics", "SELECT (count(*) > 10)::text FROM orch_lease.transition_lease_metrics() WHERE $1::bigint IS NOT NULL"),
        ("status view", "SELECT count(*)::text FROM orch_lease.transition_lease_status WHERE $1::bigint IS NOT NULL"),
        ("work_item_key", "SELECT orch_lease.work_item_key(' task-1') WHERE $1::bigint IS NOT NULL"),
    ];
    let expected = [
        "applied", "acquired", "true", "true", "0", "none", "0", "0", "true", "0", " task-1",
    ];
    for ((what, sql), expected) in calls.iter().zip(expected) {
        let answer = db
            .query_one(*sql, &[&held_token])
            .map(|row| row.get::<_, String>(0));
        v.answers(&format!("{format} restore: {what}"), answer, expected);
    }
    let events_after: i64 = db
        .query_one("SELECT max(event_id) FROM orch_lease.lease_event", &[])
        .unwrap()
        .get(0);
    v.check(
        events_after > events_before,
        format!("{format} restore: the history numbers on ({events_before} -> {events_after})"),
    );
}

// 7. recover was admin-only, so an actor could not register its own boot; and nothing stopped one actor
//    from superseding another's instance.
#[test]
fn an_actor_recovers_its_own_instance_and_no_other() {
    let (first, second, admin) = (
        "orch_sec_recover_a",
        "orch_sec_recover_b",
        "orch_sec_recover_admin",
    );
    let dsn = fresh_database_with("sec_actor_recover", TEXT_TASKS);
    login_role(first, &["orch_lease_actor"]);
    login_role(second, &["orch_lease_actor"]);
    login_role(admin, &["orch_lease_admin"]);
    let recover = |role: &str, boot: &str| {
        connect_timed(&dsn_as(&dsn, role))
            .query(
                "SELECT * FROM orch_lease.transition_lease_recover($1, 'worker-a')",
                &[&boot],
            )
            .map(|rows| rows.len())
    };
    let mut v = Verdict::default();
    v.ok(
        "an actor recovers instance worker-a",
        recover(first, "boot-1"),
    );
    v.sqlstate(
        "another actor recovers worker-a",
        recover(second, "boot-2"),
        "42501",
    );
    v.ok("an admin recovers worker-a", recover(admin, "boot-3"));
    // The admin recovered it on its owner's behalf: the instance stays the first actor's.
    v.ok(
        "the first actor recovers worker-a after the admin did",
        recover(first, "boot-4"),
    );
    v.sqlstate(
        "the second actor still may not",
        recover(second, "boot-5"),
        "42501",
    );
    v.finish();
}

// 8. With the kill-switch off, commit_stage_cas wrote the stage but kept the lease: when the switch came
//    back on, the item stayed held by a transition that had finished.
#[test]
fn a_commit_with_the_kill_switch_off_also_ends_the_lease() {
    let dsn = fresh_database_with("sec_kill_switch", TEXT_TASKS);
    let mut db = connect_timed(&dsn);
    let (first, token) = grant(&mut db, "task-1", "monitor", "boot-1").unwrap();
    assert_eq!(first, "acquired");
    let mut v = Verdict::default();
    db.batch_execute("SET orch_lease.enabled = off").unwrap();
    let commit = outcome(
        &mut db,
        "commit_stage_cas('task-1', $1, 'queued', 'merged')",
        &[&token],
    );
    v.answers(
        "commit_stage_cas with the switch off",
        commit,
        "unconditional",
    );
    db.batch_execute("RESET orch_lease.enabled").unwrap();
    v.eq(
        "stage written",
        stage(&mut db, "task-1"),
        "merged".to_string(),
    );
    v.eq(
        "the lease once the switch is on again",
        lease_token(&mut db, "task-1"),
        None,
    );
    let again = grant(&mut db, "task-1", "webhook", "boot-2").map(|(outcome, _)| outcome);
    v.answers("a new acquire of the item", again, "acquired");
    v.finish();
}

// 9. Terminal stages were only enforced against listed transitions: with none listed, a task left 'done'.
#[test]
fn a_terminal_stage_is_left_by_no_cas() {
    let dsn = fresh_database_with(
        "sec_terminal",
        &format!("{TEXT_TASKS} UPDATE tasks SET stage = 'done' WHERE id = 'task-1';"),
    );
    let mut db = connect_timed(&dsn);
    db.batch_execute("SELECT orch_lease.register_stage_graph('{}', '{done}')")
        .unwrap();
    let mut v = Verdict::default();
    let cas = outcome(
        &mut db,
        "update_task_stage_cas('task-1', 'done', 'queued')",
        &[],
    );
    v.answers(
        "update_task_stage_cas out of terminal 'done'",
        cas,
        "invalid_transition",
    );
    v.eq("stage", stage(&mut db, "task-1"), "done".to_string());
    v.finish();
}

// 10. register_task_table accepted a table its caller does not own, and an id column that is not a key.
#[test]
fn register_task_table_wants_the_owner_and_a_unique_id() {
    let admin = "orch_sec_register_admin";
    let dsn = fresh_database_with(
        "sec_register",
        &format!(
            "{TEXT_TASKS}
             CREATE TABLE other_tasks (id text PRIMARY KEY, stage text NOT NULL);
             CREATE TABLE tenant_tasks (tenant integer, id text, stage text NOT NULL,
                                        PRIMARY KEY (tenant, id));
             CREATE TABLE loose_tasks (id text NOT NULL, stage text NOT NULL);"
        ),
    );
    login_role(admin, &["orch_lease_admin"]);
    let mut superuser = connect_timed(&dsn);
    superuser
        .batch_execute(&format!(
            "GRANT SELECT, UPDATE ON tasks, other_tasks TO {admin}"
        ))
        .unwrap();
    let mut v = Verdict::default();
    let by_admin = connect_timed(&dsn_as(&dsn, admin))
        .batch_execute("SELECT orch_lease.register_task_table('other_tasks')");
    v.sqlstate(
        "an admin registers a table it does not own",
        by_admin,
        "42501",
    );
    for table in ["tenant_tasks", "loose_tasks"] {
        let registered =
            superuser.batch_execute(&format!("SELECT orch_lease.register_task_table('{table}')"));
        v.sqlstate(
            &format!("register {table}, whose id column is not unique by itself"),
            registered,
            "42P10", // invalid_column_reference
        );
    }
    v.finish();
}

// 11. recover and reap ran at REPEATABLE READ / SERIALIZABLE, where they cannot see the leases committed
//     after their snapshot.
#[test]
fn recover_and_reap_refuse_a_transaction_snapshot() {
    let dsn = fresh_database_with("sec_isolation_refused", TEXT_TASKS);
    let mut db = connect_timed(&dsn);
    let mut v = Verdict::default();
    let calls = [
        (
            "recover",
            "SELECT count(*) FROM orch_lease.transition_lease_recover('boot-1', 'orchestrator')",
        ),
        (
            "reap",
            "SELECT count(*) FROM orch_lease.transition_lease_reap(3600)",
        ),
    ];
    for level in ["REPEATABLE READ", "SERIALIZABLE"] {
        for (what, call) in calls {
            db.batch_execute(&format!("BEGIN ISOLATION LEVEL {level}"))
                .unwrap();
            v.sqlstate(
                &format!("{what} at {level}"),
                db.query_one(call, &[]).map(|row| row.get::<_, i64>(0)),
                "25000",
            );
            db.batch_execute("ROLLBACK").unwrap();
        }
    }
    for (what, call) in calls {
        v.ok(
            &format!("{what} at READ COMMITTED"),
            db.query_one(call, &[]).map(|row| row.get::<_, i64>(0)),
        );
    }
    v.finish();
}

// 12. orch_lease.* settings were not reserved: a typo of the kill-switch was silently accepted.
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

// 13a. A serialization failure inside acquire was reported as 'busy' (someone else is acquiring), when
//      nobody was: the caller must retry in a new transaction.
#[test]
fn a_serialization_failure_inside_acquire_is_retry_not_busy() {
    let dsn = fresh_database_with("sec_ssi_acquire", TEXT_TASKS);
    let (mut one, mut two) = (connect_timed(&dsn), connect_timed(&dsn));
    let mut first = one
        .build_transaction()
        .isolation_level(IsolationLevel::Serializable)
        .start()
        .unwrap();
    let mut second = two
        .build_transaction()
        .isolation_level(IsolationLevel::Serializable)
        .start()
        .unwrap();
    // Each reads the item the other will acquire: a read-write cycle once both have written.
    let probe = "SELECT count(*) FROM orch_lease.transition_lease WHERE work_item = $1";
    first.query_one(probe, &[&"task-2"]).unwrap();
    second.query_one(probe, &[&"task-1"]).unwrap();
    let (granted, _) = grant(&mut first, "task-1", "first", "boot-1").unwrap();
    assert_eq!(granted, "acquired");
    first.commit().unwrap();

    let mut v = Verdict::default();
    let closing = grant(&mut second, "task-2", "second", "boot-2").map(|(outcome, _)| outcome);
    v.answers(
        "acquire closing a read-write cycle (nobody else acquires task-2)",
        closing,
        "retry",
    );
    v.ok(
        "the caller's transaction stays usable",
        second.query_one("SELECT 1", &[]),
    );
    let _ = second.rollback();
    let again = grant(&mut two, "task-2", "second", "boot-2").map(|(outcome, _)| outcome);
    v.answers("acquire retried in a new transaction", again, "acquired");
    v.finish();
}

// 13b. A CAS at REPEATABLE READ on a row updated after the snapshot (another column, the stage still the
//      expected one) answered stage_mismatch, and commit_stage_cas dropped the lease.
#[test]
fn a_cas_on_a_row_updated_after_the_snapshot_is_retry() {
    let dsn = fresh_database_with(
        "sec_rr_cas",
        &format!("{TEXT_TASKS} ALTER TABLE tasks ADD COLUMN note text;"),
    );
    let (mut one, mut two) = (connect_timed(&dsn), connect_timed(&dsn));
    let (granted, token) = grant(&mut one, "task-2", "monitor", "boot-1").unwrap();
    assert_eq!(granted, "acquired");
    let mut v = Verdict::default();
    for (item, call) in [
        (
            "task-1",
            "update_task_stage_cas('task-1', 'queued', 'merged')",
        ),
        (
            "task-2",
            "commit_stage_cas('task-2', $1, 'queued', 'merged')",
        ),
    ] {
        let mut snapshot = one
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .start()
            .unwrap();
        snapshot
            .query_one("SELECT stage FROM tasks WHERE id = $1", &[&item])
            .unwrap();
        two.execute("UPDATE tasks SET note = 'touched' WHERE id = $1", &[&item])
            .unwrap();
        let params: &[&(dyn postgres::types::ToSql + Sync)] =
            if item == "task-2" { &[&token] } else { &[] };
        v.answers(call, outcome(&mut snapshot, call, params), "retry");
        v.ok(
            &format!("{call}: the transaction stays usable"),
            snapshot.query_one("SELECT 1", &[]),
        );
        let _ = snapshot.rollback();
        v.eq(
            &format!("{call}: stage"),
            stage(&mut two, item),
            "queued".to_string(),
        );
    }
    v.eq(
        "the lease after commit_stage_cas said retry",
        lease_token(&mut two, "task-2"),
        token,
    );
    v.finish();
}

// The red team's findings against the first 0.4.0 build (docs/security.md): each was reproduced there,
// and each test below failed on that build.

// F1. Another role's live token sat in the history an actor reads (its own 'held' refusal names the
//     holder's token).
#[test]
fn the_history_shows_an_actor_no_token() {
    let (alice, bob) = ("orch_sec_f1_alice", "orch_sec_f1_bob");
    let (dsn, mut a, _) = two_actors("sec_f1", alice, bob);
    // A held refusal is recorded only with orch_lease.history = all (the default counts it only).
    connect_timed(&dsn)
        .batch_execute(
            "LOAD 'orch_lease'; DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET orch_lease.history = %L', current_database(), 'all'); END $$",
        )
        .unwrap();
    let mut b = connect_timed(&dsn_as(&dsn, bob));
    let mut v = Verdict::default();
    v.answers(
        "alice acquires",
        grant(&mut a, "task-1", "alice", "boot-alice").map(|(outcome, _)| outcome),
        "acquired",
    );
    v.answers(
        "bob is refused",
        grant(&mut b, "task-1", "bob", "boot-bob").map(|(outcome, _)| outcome),
        "held",
    );
    let tokens = b.query(
        "SELECT count(*) FILTER (WHERE old_token IS NOT NULL OR new_token IS NOT NULL),
                count(*) FILTER (WHERE event = 'refused')
           FROM orch_lease.lease_history",
        &[],
    );
    if let Some(rows) = v.ok("bob reads the history", tokens) {
        v.eq("bob's refusal in the history", rows[0].get::<_, i64>(1), 1);
        v.eq(
            "tokens bob sees in the history",
            rows[0].get::<_, i64>(0),
            0,
        );
    }
    v.finish();
}

// F3. The task-table owner's code (a domain CHECK on the stage column) ran as whoever registered the
//     stage graph — a superuser too.
#[test]
fn registering_a_stage_graph_runs_no_code_of_the_table_owner() {
    let owner = "orch_sec_f3_owner";
    let dsn = fresh_database_with(
        "sec_f3",
        "CREATE TABLE hits (who name); GRANT INSERT ON hits TO PUBLIC;",
    );
    login_role(owner, &["orch_lease_admin"]);
    let mut v = Verdict::default();
    let mut superuser = connect_timed(&dsn);
    superuser
        .batch_execute(&format!(
            "GRANT CREATE ON SCHEMA public TO {owner};
             SET ROLE {owner};
             CREATE FUNCTION public.noted(text) RETURNS boolean LANGUAGE sql
                 AS $$ INSERT INTO public.hits VALUES (current_user) RETURNING true $$;
             CREATE DOMAIN public.stage_t AS text CHECK (public.noted(VALUE));
             CREATE DOMAIN public.id_t AS bigint CHECK (public.noted(VALUE::text));
             CREATE TABLE public.tasks (id public.id_t PRIMARY KEY, stage public.stage_t);
             SELECT orch_lease.register_task_table('public.tasks');
             RESET ROLE;"
        ))
        .unwrap();
    v.ok(
        "a superuser registers a stage graph",
        superuser.execute(
            "SELECT orch_lease.register_stage_graph('{\"queued -> merged\"}')",
            &[],
        ),
    );
    v.ok(
        "a superuser force-releases an item",
        superuser.execute("SELECT orch_lease.transition_lease_force_release('7')", &[]),
    );
    v.ok(
        "a superuser asks the liveness of an item",
        superuser.execute("SELECT orch_lease.transition_lease_liveness('7')", &[]),
    );
    let hits = superuser
        .query_one("SELECT count(*) FROM hits", &[])
        .unwrap()
        .get::<_, i64>(0);
    v.eq("calls of the table owner's code", hits, 0);
    v.finish();
}

// F4 and F11. An actor acquired with another role's boot id (share-locking it: that role's recover then
// hung), and registered another role's boot id as its own (ending that role's leases by recover).
#[test]
fn a_boot_id_is_its_registrant_s_alone() {
    let (alice, bob) = ("orch_sec_f11_alice", "orch_sec_f11_bob");
    let (_, mut a, mut b) = two_actors("sec_f11", alice, bob);
    let mut v = Verdict::default();
    v.ok(
        "alice registers her boot",
        a.query(
            "SELECT * FROM orch_lease.transition_lease_recover('boot-alice', 'alice')",
            &[],
        ),
    );
    v.answers(
        "alice acquires",
        grant(&mut a, "task-1", "alice", "boot-alice").map(|(outcome, _)| outcome),
        "acquired",
    );
    v.answers(
        "alice acquires with an unregistered boot",
        grant(&mut a, "task-2", "alice", "boot-unregistered").map(|(outcome, _)| outcome),
        "acquired",
    );
    v.sqlstate(
        "bob acquires with alice's boot",
        grant(&mut b, "task-3", "bob", "boot-alice").map(|(outcome, _)| outcome),
        "42501",
    );
    v.sqlstate(
        "bob registers the boot id alice's leases name",
        b.query(
            "SELECT * FROM orch_lease.transition_lease_recover('boot-unregistered', 'bob')",
            &[],
        ),
        "42501",
    );
    let session: String = a
        .query_one("SELECT owner_boot_id FROM orch_lease.transition_lease_acquire_session('task-4', 'alice') g
                      JOIN orch_lease.transition_lease_status s ON s.work_item = 'task-4'", &[])
        .map(|row| row.get(0))
        .unwrap_or_default();
    v.sqlstate(
        "bob registers alice's session as a boot",
        b.query(
            "SELECT * FROM orch_lease.transition_lease_recover($1, 'bob')",
            &[&session],
        ),
        "22023",
    );
    let held = a
        .query_one(
            "SELECT count(*) FROM orch_lease.transition_lease_status",
            &[],
        )
        .map(|row| row.get::<_, i64>(0));
    if let Some(held) = v.ok("alice counts her leases", held) {
        v.eq("alice's leases, all still held", held, 3);
    }
    v.finish();
}

// F7. A schema named orch_lease created beforehand by another role became the extension's schema, and
//     its owner could swap objects under every orch_lease statement run as the extension's owner.
#[test]
fn the_extension_refuses_a_schema_someone_else_made() {
    let squatter = "orch_sec_f7_squatter";
    fresh_database_with("sec_f7_roles", "");
    login_role(squatter, &[]);
    let dsn = new_database("sec_f7", Some(squatter));
    let mut v = Verdict::default();
    let mut squat = connect_timed(&dsn_as(&dsn, squatter));
    squat.batch_execute("CREATE SCHEMA orch_lease").unwrap();
    let mut superuser = connect_timed(&dsn);
    v.sqlstate(
        "CREATE EXTENSION into the squatter's schema",
        superuser.batch_execute("CREATE EXTENSION orch_lease"),
        "42501",
    );
    v.finish();
}

// F9. After the task table's schema was renamed and a table of the old name made, a session that had
//     described the task table before wrote the new table.
#[test]
fn a_renamed_schema_does_not_redirect_the_cas() {
    let dsn = fresh_database_with(
        "sec_f9",
        "CREATE SCHEMA app;
         CREATE TABLE app.tasks (id bigint PRIMARY KEY, stage text NOT NULL);
         INSERT INTO app.tasks VALUES (1, 'queued'), (2, 'queued');
         SELECT orch_lease.register_task_table('app.tasks');",
    );
    let mut v = Verdict::default();
    let mut actor = connect_timed(&dsn);
    let mut dba = connect_timed(&dsn);
    let cas = |db: &mut Client, id: &str| {
        db.query_one(
            "SELECT outcome FROM orch_lease.update_task_stage_cas($1, 'queued', 'merged')",
            &[&id],
        )
        .map(|row| row.get::<_, String>(0))
    };
    v.answers(
        "a CAS describes the task table",
        cas(&mut actor, "1"),
        "applied",
    );
    dba.batch_execute(
        "ALTER SCHEMA app RENAME TO app_old;
         CREATE SCHEMA app;
         CREATE TABLE app.tasks (id bigint PRIMARY KEY, stage text NOT NULL);
         INSERT INTO app.tasks VALUES (2, 'queued');",
    )
    .unwrap();
    v.answers(
        "the same session's next CAS",
        cas(&mut actor, "2"),
        "applied",
    );
    let stages = dba
        .query_one(
            "SELECT (SELECT stage FROM app_old.tasks WHERE id = 2) || ' ' || (SELECT stage FROM app.tasks WHERE id = 2)",
            &[],
        )
        .map(|row| row.get::<_, String>(0));
    v.answers(
        "the registered table moved, the impostor did not",
        stages,
        "merged queued",
    );
    v.finish();
}

// F10. Restoring a dump (or any INSERT into the history) announced every takeover again.
#[test]
fn a_history_row_written_by_hand_is_not_announced() {
    let dsn = fresh_database_with("sec_f10", TEXT_TASKS);
    let mut v = Verdict::default();
    let mut listener = connect_timed(&dsn);
    listener.batch_execute("LISTEN orch_lease").unwrap();
    let mut superuser = connect_timed(&dsn);
    superuser
        .batch_execute(
            "INSERT INTO orch_lease.lease_event (event, outcome, work_item, reason)
             VALUES ('forced', 'forced', 'task-1', 'restored from a dump')",
        )
        .unwrap();
    v.answers(
        "a real force release",
        superuser
            .query_one(
                "SELECT orch_lease.transition_lease_force_release('task-2')::text",
                &[],
            )
            .map(|row| row.get::<_, String>(0)),
        "false",
    );
    let acquired = grant(&mut superuser, "task-3", "o", "boot-1").map(|(outcome, _)| outcome);
    v.answers("an acquire", acquired, "acquired");
    v.answers(
        "its force release",
        superuser
            .query_one(
                "SELECT orch_lease.transition_lease_force_release('task-3')::text",
                &[],
            )
            .map(|row| row.get::<_, String>(0)),
        "true",
    );
    let mut received = Vec::new();
    let mut notifications = listener.notifications();
    let mut waiting = notifications.timeout_iter(std::time::Duration::from_millis(500));
    while let Ok(Some(note)) = waiting.next() {
        received.push(note.payload().to_string());
    }
    v.eq("announcements", received.len(), 1);
    v.check(
        received
            .iter()
            .all(|payload| payload.contains("\"work_item\":\"task-3\"")),
        format!("only the real takeover is announced: {received:?}"),
    );
    v.finish();
}

// Found by reading 0.3.0 (issue #12's second list), each shown red on 0.3.0.

// A new stage graph absorbed inside a REPEATABLE READ transaction was described from that transaction's
// snapshot and stayed cached past its COMMIT: the session went on allowing what the graph forbids.
#[test]
fn a_stage_graph_registered_meanwhile_is_seen_after_a_repeatable_read_transaction() {
    let dsn = fresh_database_with(
        "sec_rr_cache",
        "CREATE TABLE tasks (id bigint PRIMARY KEY, stage text NOT NULL);
         INSERT INTO tasks SELECT i, 'queued' FROM generate_series(1, 3) i;
         SELECT orch_lease.register_task_table('tasks');",
    );
    let mut v = Verdict::default();
    let mut actor = connect_timed(&dsn);
    let mut admin = connect_timed(&dsn);
    let cas = |db: &mut Client, id: &str| {
        db.query_one(
            "SELECT outcome FROM orch_lease.update_task_stage_cas($1, 'queued', 'merged')",
            &[&id],
        )
        .map(|row| row.get::<_, String>(0))
    };
    actor
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM tasks")
        .unwrap();
    admin
        .batch_execute("SELECT orch_lease.register_stage_graph('{\"queued -> rolled_back\"}')")
        .unwrap();
    // Since 0.5.0 a transaction checks by the rules committed when it first calls orch_lease, not by
    // those its snapshot shows (issue #29).
    v.answers(
        "a CAS in the old snapshot, its first call",
        cas(&mut actor, "1"),
        "invalid_transition",
    );
    actor.batch_execute("COMMIT").unwrap();
    v.answers(
        "the next CAS, after that transaction",
        cas(&mut actor, "2"),
        "invalid_transition",
    );
    v.finish();
}

// The CAS found the task row with `=` resolved through the caller's search_path, so an operator the
// caller planted ran inside the CAS (with the bypass guard's door open).
#[test]
fn the_cas_uses_the_id_type_s_own_equality() {
    let dsn = fresh_database_with(
        "sec_operator",
        "CREATE TABLE tasks (id bigint PRIMARY KEY, stage text NOT NULL);
         INSERT INTO tasks VALUES (1, 'queued'), (2, 'queued');
         SELECT orch_lease.register_task_table('tasks');
         CREATE SCHEMA evil;
         CREATE TABLE evil.hits (who name);
         CREATE FUNCTION evil.eq(bigint, bigint) RETURNS boolean LANGUAGE plpgsql AS
             $$ BEGIN INSERT INTO evil.hits VALUES (current_user); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
         CREATE OPERATOR evil.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.eq);",
    );
    let mut v = Verdict::default();
    let mut db = connect_timed(&dsn);
    db.batch_execute("SET search_path = evil, pg_catalog, public")
        .unwrap();
    v.answers(
        "a CAS with the operator planted ahead of pg_catalog",
        db.query_one(
            "SELECT outcome FROM orch_lease.update_task_stage_cas('1', 'queued', 'merged')",
            &[],
        )
        .map(|row| row.get::<_, String>(0)),
        "applied",
    );
    let hits = db
        .query_one("SELECT count(*) FROM evil.hits", &[])
        .unwrap()
        .get::<_, i64>(0);
    v.eq("calls of the planted operator", hits, 0);
    v.finish();
}

// A CAS made by a trigger on the task table, inside another CAS, reset the "CAS is writing" mark when
// it ended: the outer CAS's own write was then refused by the bypass guard as a bypass.
#[test]
fn a_cas_inside_a_cas_leaves_the_outer_one_its_mark() {
    let dsn = fresh_database_with(
        "sec_nested",
        "CREATE TABLE tasks (id bigint PRIMARY KEY, stage text NOT NULL);
         INSERT INTO tasks VALUES (1, 'queued'), (2, 'queued');
         SELECT orch_lease.register_task_table('tasks');
         SELECT orch_lease.install_bypass_guard('reject');
         -- Fires before the guard (triggers fire in name order): moving 1 moves 2 too, through the CAS.
         CREATE FUNCTION follow() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.id = 1 THEN
                 PERFORM orch_lease.update_task_stage_cas('2', 'queued', 'merged');
             END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER a_follow BEFORE UPDATE OF stage ON tasks FOR EACH ROW EXECUTE FUNCTION follow();",
    );
    let mut v = Verdict::default();
    let mut db = connect_timed(&dsn);
    v.answers(
        "the outer CAS",
        db.query_one(
            "SELECT outcome FROM orch_lease.update_task_stage_cas('1', 'queued', 'merged')",
            &[],
        )
        .map(|row| row.get::<_, String>(0)),
        "applied",
    );
    let stages = db
        .query_one("SELECT string_agg(stage, ' ' ORDER BY id) FROM tasks", &[])
        .map(|row| row.get::<_, String>(0));
    v.answers("both tasks", stages, "merged merged");
    v.finish();
}

// Prune removed old superseded boots (0.4.0), which revived their zombies (#29.9): it keeps them now;
// their names are bounded instead.
#[test]
fn prune_keeps_superseded_boots() {
    let dsn = fresh_database_with("sec_boots", TEXT_TASKS);
    let mut v = Verdict::default();
    let mut db = connect_timed(&dsn);
    db.batch_execute(
        "SELECT count(*) FROM orch_lease.transition_lease_recover('boot-1', 'worker');
         SELECT count(*) FROM orch_lease.transition_lease_recover('boot-2', 'worker');
         SELECT count(*) FROM orch_lease.transition_lease_recover('boot-3', 'worker');
         SELECT orch_lease.transition_lease_acquire('task-1', 'w', 1, 'boot-3');",
    )
    .unwrap();
    v.ok(
        "prune",
        db.execute("SELECT orch_lease.transition_lease_prune('0 seconds')", &[]),
    );
    let boots = db
        .query_one(
            "SELECT string_agg(boot_id, ' ' ORDER BY boot_id) FROM orch_lease.boot",
            &[],
        )
        .map(|row| row.get::<_, String>(0));
    // A boot forgotten would be unknown, and its zombie's acquires granted again (#29.9).
    v.answers("the boots left: all", boots, "boot-1 boot-2 boot-3");
    v.finish();
}

// ---------------------------------------------------------------------------------------------------
// Issue #29, part B (one owner means one owner, part two): one regression test per finding, each
// shown red on 0.4.0.

/// The elapsed time of `call`, with its result.
fn timed<T>(call: impl FnOnce() -> T) -> (T, Duration) {
    let started = Instant::now();
    let result = call();
    (result, started.elapsed())
}

// #29.4 A login with CONNECT only held recover's per-instance advisory lock (class 'boot', key
//       hashtext(instance)): every recover and takeover of that instance waited for it without bound.
#[test]
fn a_connect_only_login_holds_up_no_recover() {
    let (nogrant, actor) = ("orch_sec_b4_nogrant", "orch_sec_b4_actor");
    let dsn = fresh_database_with("sec_b4", TEXT_TASKS);
    login_role(nogrant, &[]);
    login_role(actor, &["orch_lease_actor"]);
    let mut squatter = connect_timed(&dsn_as(&dsn, nogrant));
    squatter
        .batch_execute("SELECT pg_advisory_lock(1651470196, hashtext('worker-1'))")
        .unwrap();
    let mut a = connect_timed(&dsn_as(&dsn, actor));
    let mut v = Verdict::default();
    for (function, boot) in [("recover", "boot-1"), ("takeover", "boot-2")] {
        let (answer, took) = timed(|| {
            a.query(
                &format!("SELECT * FROM orch_lease.transition_lease_{function}($1, 'worker-1')"),
                &[&boot],
            )
        });
        v.ok(&format!("{function} while the login holds the key"), answer);
        v.check(
            took < Duration::from_secs(2),
            format!("{function} took {took:?} while the login held the key"),
        );
    }
    v.finish();
}

// #29.4 and #29.8 A transaction left open on the instance's live boot (an acquire idle in transaction)
//       made every takeover, the on-call tool, wait for it without bound: it must answer within a bound.
#[test]
fn a_takeover_gives_up_on_a_transaction_left_open_within_a_bound() {
    let (actor, admin) = ("orch_sec_b8_actor", "orch_sec_b8_admin");
    let dsn = fresh_database_with("sec_b8", TEXT_TASKS);
    login_role(actor, &["orch_lease_actor"]);
    login_role(admin, &["orch_lease_admin"]);
    let mut a = connect_timed(&dsn_as(&dsn, actor));
    recover(&mut a, "boot-1", "worker-1");
    a.batch_execute("BEGIN").unwrap();
    acquire(&mut a, "task-1", "worker", "boot-1"); // share-locks boot-1 until the transaction ends
    let mut on_call = connect_timed(&dsn_as(&dsn, admin));
    let mut v = Verdict::default();
    let (answer, took) = timed(|| takeover_rows(&mut on_call, "boot-2"));
    v.sqlstate("takeover under an open acquire", answer, "55P03");
    v.check(
        took < Duration::from_secs(7),
        format!("the takeover gave up after {took:?}, not within its bound of 5 s"),
    );
    // The caller's own shorter lock_timeout is kept.
    on_call.batch_execute("SET lock_timeout = '200ms'").unwrap();
    let (answer, took) = timed(|| takeover_rows(&mut on_call, "boot-3"));
    v.sqlstate("takeover with lock_timeout 200ms", answer, "55P03");
    v.check(
        took < Duration::from_secs(2),
        format!("with lock_timeout 200ms the takeover gave up after {took:?}"),
    );
    a.batch_execute("COMMIT").unwrap();
    v.eq(
        "takeover once the transaction ended",
        takeover_rows(&mut on_call, "boot-4")
            .map(|rows| rows.len())
            .ok(),
        Some(1),
    );
    v.finish();
}

fn takeover_rows(db: &mut Client, boot: &str) -> Result<Vec<Row>, Error> {
    db.query(
        "SELECT * FROM orch_lease.transition_lease_takeover($1, 'worker-1')",
        &[&boot],
    )
}

// #29.8 A CAS left idle in transaction share-locks its lease: force_release waited for it without
//       bound. It answers (false: the lease is in use) within a bound.
#[test]
fn force_release_answers_while_a_cas_transaction_sits_on_the_lease() {
    let (actor, admin) = ("orch_sec_b8f_actor", "orch_sec_b8f_admin");
    let dsn = fresh_database_with(
        "sec_b8f",
        &format!("{TEXT_TASKS} GRANT SELECT, UPDATE ON tasks TO PUBLIC;"),
    );
    login_role(actor, &["orch_lease_actor"]);
    login_role(admin, &["orch_lease_admin"]);
    let mut a = connect_timed(&dsn_as(&dsn, actor));
    let token = acquire(&mut a, "task-1", "worker", "boot-1").1.unwrap();
    a.batch_execute("BEGIN").unwrap();
    cas(
        &mut a,
        "update_task_stage_cas('task-1', 'queued', 'merged', $1)",
        &[&token],
    );
    let mut on_call = connect_timed(&dsn_as(&dsn, admin));
    let mut v = Verdict::default();
    let (answer, took) = timed(|| {
        on_call
            .query_one(
                "SELECT orch_lease.transition_lease_force_release('task-1', NULL, 'stuck')",
                &[],
            )
            .map(|row| row.get::<_, bool>(0).to_string())
    });
    v.answers("force_release under an open CAS", answer, "false");
    v.check(
        took < Duration::from_secs(7),
        format!("force_release answered after {took:?}, not within its bound of 5 s"),
    );
    a.batch_execute("ROLLBACK").unwrap();
    v.answers(
        "force_release once the CAS transaction ended",
        on_call
            .query_one(
                "SELECT orch_lease.transition_lease_force_release('task-1', NULL, 'stuck')",
                &[],
            )
            .map(|row| row.get::<_, bool>(0).to_string()),
        "true",
    );
    v.finish();
}

// #29.9 Once a superseded boot was pruned, it was unknown: its old process's acquires were granted again
//       and the next recover did not end them.
#[test]
fn a_pruned_superseded_boot_stays_refused() {
    let dsn = fresh_database_with("sec_b9", TEXT_TASKS);
    let mut db = connect_timed(&dsn);
    recover(&mut db, "boot-1", "worker");
    recover(&mut db, "boot-2", "worker");
    db.batch_execute("SELECT orch_lease.transition_lease_prune('0 seconds')")
        .unwrap();
    let mut v = Verdict::default();
    v.answers(
        "the zombie of boot-1 acquires after prune",
        grant(&mut db, "task-1", "worker", "boot-1").map(|(outcome, _)| outcome),
        "superseded",
    );
    v.eq("the zombie's lease", lease_token(&mut db, "task-1"), None);
    v.finish();
}

// #29.14 A made-up `session:` boot id of a session long gone made every acquire an announced reclaim
//        (a flood of takeover alerts from one actor); boots, never pruned while live, took 1 KB names.
#[test]
fn an_actor_names_no_other_session_and_no_huge_boot() {
    let actor = "orch_sec_b14_actor";
    let dsn = fresh_database_with("sec_b14", TEXT_TASKS);
    login_role(actor, &["orch_lease_actor"]);
    let mut a = connect_timed(&dsn_as(&dsn, actor));
    let mut v = Verdict::default();
    v.sqlstate(
        "acquire with a made-up session boot id",
        grant(&mut a, "task-1", "worker", "session:1:1"),
        "22023",
    );
    let own: String = a
        .query_one(
            "SELECT 'session:' || pg_backend_pid() || ':' || ((extract(epoch FROM backend_start)
                    - extract(epoch FROM timestamptz '2000-01-01 00:00:00+00')) * 1000000)::bigint
               FROM pg_stat_activity WHERE pid = pg_backend_pid()",
            &[],
        )
        .unwrap()
        .get(0);
    v.answers(
        "acquire with this session's own boot id",
        grant(&mut a, "task-2", "worker", &own).map(|(outcome, _)| outcome),
        "acquired",
    );
    let long = "b".repeat(300);
    v.sqlstate(
        "recover with a 300-byte boot id",
        a.query(
            "SELECT * FROM orch_lease.transition_lease_recover($1, 'worker')",
            &[&long],
        ),
        "22001",
    );
    v.sqlstate(
        "recover with a 300-byte instance",
        a.query(
            "SELECT * FROM orch_lease.transition_lease_recover('boot-1', $1)",
            &[&long],
        ),
        "22001",
    );
    v.finish();
}

// #29.7 A `held` answer named the holder's boot id to any role: an actor registered it as its own
//       instance's boot, and the holder's every later acquire under it was refused (42501).
#[test]
fn a_held_answer_names_another_role_s_boot_to_nobody() {
    let (alice, bob) = ("orch_sec_b7_alice", "orch_sec_b7_bob");
    let (_, mut a, mut b) = two_actors("sec_b7", alice, bob);
    acquire(&mut a, "task-1", "alice", "boot-alice");
    let mut v = Verdict::default();
    let told = |db: &mut Client| {
        db.query_one(
            "SELECT outcome, coalesce(holder_boot_id, '-')
               FROM orch_lease.transition_lease_acquire('task-1', 'x', 1, 'boot-x')",
            &[],
        )
        .map(|row| format!("{} {}", row.get::<_, String>(0), row.get::<_, String>(1)))
    };
    v.answers("bob is told", told(&mut b), "held -");
    v.answers("alice is told", told(&mut a), "held boot-alice");
    v.finish();
}

// #29.7 An actor registered other roles' future instance names; the victim's recover was refused
//       (42501) forever, an admin's takeover kept the squatter as the instance's owner, and only a
//       superuser's DELETE repaired it. An admin hands the instance (all its boots) to the right role.
#[test]
fn an_admin_hands_a_squatted_instance_to_its_role() {
    let (alice, bob, admin) = (
        "orch_sec_b7s_alice",
        "orch_sec_b7s_bob",
        "orch_sec_b7s_admin",
    );
    let (dsn, mut a, mut b) = two_actors("sec_b7s", alice, bob);
    login_role(admin, &["orch_lease_admin"]);
    let mut on_call = connect_timed(&dsn_as(&dsn, admin));
    recover(&mut b, "boot-squat", "orch-7");
    let register_as = |db: &mut Client, boot: &str| {
        db.query(
            "SELECT * FROM orch_lease.transition_lease_recover($1, 'orch-7')",
            &[&boot],
        )
        .map(|rows| rows.len())
    };
    let hand_over = |db: &mut Client, role: &str| {
        db.query_one(
            "SELECT orch_lease.transition_lease_hand_over('orch-7', $1)",
            &[&role],
        )
        .map(|row| row.get::<_, i32>(0).to_string())
    };
    let mut v = Verdict::default();
    v.sqlstate(
        "alice recovers the squatted name",
        register_as(&mut a, "boot-a1"),
        "42501",
    );
    v.sqlstate("bob hands it over", hand_over(&mut b, alice), "42501");
    v.sqlstate(
        "to a role that does not exist",
        hand_over(&mut on_call, "orch_no_such_role"),
        "42704",
    );
    v.answers(
        "the admin hands it to alice",
        hand_over(&mut on_call, alice),
        "1",
    );
    v.ok("alice recovers it now", register_as(&mut a, "boot-a2"));
    v.sqlstate("bob no longer may", register_as(&mut b, "boot-b3"), "42501");
    v.sqlstate(
        "bob acquires under his squatting boot",
        grant(&mut b, "task-1", "bob", "boot-squat"),
        "42501",
    );
    v.finish();
}

// ---------------------------------------------------------------------------------------------------
// Issue #29, part A ("One owner means one owner, part two"): keys, key-rule changes and what the CAS
// answers. Each test below failed on 0.4.0 (the commit that adds it says how).

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

// #29.2 (c). A stage graph registered while a transaction that had used the old rules was open: that
// transaction went on checking by the old rules and moved a task out of the new terminal stage.
#[test]
fn a_stage_graph_waits_for_the_transactions_that_used_the_old_one() {
    let mut v = Verdict::default();
    let dsn = fresh_database_with("sec29_graph_inflight", TEXT_TASKS);
    let (mut a, mut admin) = (connect_timed(&dsn), connect_timed(&dsn));
    admin.batch_execute("SET lock_timeout = '300ms'").unwrap();
    let cas = |db: &mut Client, from: &str, to: &str| {
        outcome(db, "update_task_stage_cas('task-1', $1, $2)", &[&from, &to])
    };
    a.batch_execute("BEGIN").unwrap();
    v.answers("queued -> done", cas(&mut a, "queued", "done"), "applied");
    let registered = admin.execute(
        "SELECT orch_lease.register_stage_graph('{}', '{done}')",
        &[],
    );
    let left = cas(&mut a, "done", "queued");
    v.check(
        !(registered.is_ok() && left.as_deref().ok() == Some("applied")),
        "the terminal stage 'done' was registered and left by one open transaction",
    );
    v.sqlstate(
        "register_stage_graph while a transaction that used the old rules is open",
        registered,
        "55P03",
    );
    a.batch_execute("COMMIT").unwrap();
    v.ok(
        "register_stage_graph once it ended",
        admin.execute(
            "SELECT orch_lease.register_stage_graph('{}', '{done}')",
            &[],
        ),
    );
    v.answers("queued -> done", cas(&mut a, "queued", "done"), "applied");
    v.answers(
        "done -> queued",
        cas(&mut a, "done", "queued"),
        "invalid_transition",
    );
    v.finish();
}

// #29.12. With row-level security letting an actor read a task but not update it, the CAS answered
// stage_mismatch showing the expected stage as the current one, and commit ended the lease on it.
#[test]
fn a_row_the_caller_may_read_but_not_update_is_not_found() {
    let mut v = Verdict::default();
    let actor = "orch_sec29_rls";
    let dsn = fresh_database_with("sec29_rls", TEXT_TASKS);
    login_role(actor, &["orch_lease_actor"]);
    let mut owner = connect_timed(&dsn);
    owner
        .batch_execute(&format!(
            "GRANT SELECT, UPDATE ON tasks TO {actor};
             ALTER TABLE tasks ENABLE ROW LEVEL SECURITY;
             CREATE POLICY reads ON tasks FOR SELECT USING (true);
             CREATE POLICY writes ON tasks FOR UPDATE USING (id <> 'task-1');"
        ))
        .unwrap();
    let mut db = connect_timed(&dsn_as(&dsn, actor));
    let shown = db
        .query_one(
            "SELECT concat_ws('|', outcome, current_stage)
               FROM orch_lease.update_task_stage_cas('task-1', 'queued', 'merged')",
            &[],
        )
        .map(|row| row.get::<_, String>(0));
    v.answers(
        "update_task_stage_cas on a row it may not update",
        shown,
        "not_found",
    );
    v.answers(
        "update_task_stage_cas on a row it may update",
        outcome(
            &mut db,
            "update_task_stage_cas('task-2', 'queued', 'merged')",
            &[],
        ),
        "applied",
    );
    v.eq(
        "stage of task-1",
        stage(&mut owner, "task-1"),
        "queued".to_string(),
    );
    v.finish();
}

// #29.5. At REPEATABLE READ / SERIALIZABLE, a CAS whose stage became the expected one after the
// snapshot answered stage_mismatch with the stale stage, and commit_stage_cas ended the lease.
#[test]
fn a_stage_that_became_the_expected_one_after_the_snapshot_is_retry() {
    let mut v = Verdict::default();
    let dsn = fresh_database_with("sec29_rr_mismatch", TEXT_TASKS);
    let (mut actor, mut other) = (connect_timed(&dsn), connect_timed(&dsn));
    for level in [IsolationLevel::RepeatableRead, IsolationLevel::Serializable] {
        other
            .batch_execute("UPDATE tasks SET stage = 'merged' WHERE id = 'task-1'")
            .unwrap();
        let (granted, token) = acquire(&mut actor, "task-1", "monitor", "boot-1");
        v.eq("acquire", granted.as_str(), "acquired");
        let mut snapshot = actor
            .build_transaction()
            .isolation_level(level)
            .start()
            .unwrap();
        snapshot
            .query_one("SELECT stage FROM tasks WHERE id = 'task-1'", &[])
            .unwrap();
        other
            .batch_execute("UPDATE tasks SET stage = 'queued' WHERE id = 'task-1'")
            .unwrap();
        let answer = snapshot
            .query_one(
                "SELECT concat_ws('|', outcome, current_stage)
                   FROM orch_lease.commit_stage_cas('task-1', $1, 'queued', 'done')",
                &[&token],
            )
            .map(|row| row.get::<_, String>(0));
        v.answers(&format!("{level:?}: commit_stage_cas"), answer, "retry");
        v.ok(
            &format!("{level:?}: the transaction stays usable"),
            snapshot.query_one("SELECT 1", &[]),
        );
        let _ = snapshot.rollback();
        v.eq(
            &format!("{level:?}: the lease after retry"),
            lease_token(&mut other, "task-1"),
            token,
        );
        v.answers(
            &format!("{level:?}: commit_stage_cas in a new transaction"),
            outcome(
                &mut actor,
                "commit_stage_cas('task-1', $1, 'queued', 'done')",
                &[&token],
            ),
            "applied",
        );
    }
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

// #29.10. On a partitioned task table the bypass guard fired on the partition and compared its oid with
// the registered (parent) table's: every CAS was refused (`reject`) or logged as a bypass (`warn`).
#[test]
fn the_bypass_guard_knows_the_cas_on_a_partitioned_table() {
    let mut v = Verdict::default();
    let dsn = fresh_database_with(
        "sec29_partitioned",
        "CREATE TABLE tasks (id bigint PRIMARY KEY, stage text NOT NULL) PARTITION BY RANGE (id);
         CREATE TABLE tasks_low PARTITION OF tasks FOR VALUES FROM (0) TO (100);
         CREATE TABLE tasks_high PARTITION OF tasks FOR VALUES FROM (100) TO (200);
         INSERT INTO tasks VALUES (1, 'queued'), (150, 'queued');
         SELECT orch_lease.register_task_table('tasks');",
    );
    let mut db = connect_timed(&dsn);
    for mode in ["reject", "warn"] {
        db.execute("SELECT orch_lease.install_bypass_guard($1)", &[&mode])
            .unwrap();
        db.batch_execute("UPDATE tasks SET stage = 'queued'; TRUNCATE orch_lease.bypass_log")
            .ok();
        for id in ["1", "150"] {
            let (granted, token) = acquire(&mut db, id, "owner", "boot");
            v.eq(
                &format!("{mode}: acquire {id}"),
                granted.as_str(),
                "acquired",
            );
            v.answers(
                &format!("{mode}: commit_stage_cas on {id}"),
                outcome(
                    &mut db,
                    "commit_stage_cas($1, $2, 'queued', 'merged')",
                    &[&id, &token],
                ),
                "applied",
            );
        }
        let logged = db
            .query_one("SELECT count(*) FROM orch_lease.bypass_log", &[])
            .unwrap()
            .get::<_, i64>(0);
        v.eq(&format!("{mode}: CAS writes logged as bypasses"), logged, 0);
    }
    db.execute("SELECT orch_lease.install_bypass_guard('reject')", &[])
        .unwrap();
    v.sqlstate(
        "a bare UPDATE of a partition's row, guard in reject mode",
        db.execute("UPDATE tasks SET stage = 'done' WHERE id = 150", &[]),
        "55000",
    );
    v.finish();
}

// #29.11. Terminal stages failed open: with a case-insensitive stage collation 'DONE' was no terminal
// stage to the graph check yet matched 'done'; after ALTER TYPE … RENAME VALUE 'done' TO 'finished' the
// graph still named 'done', and 'finished' -> 'queued' applied.
#[test]
fn a_terminal_stage_holds_under_a_collation_or_a_renamed_label() {
    let mut v = Verdict::default();
    let dsn = fresh_database_with(
        "sec29_terminal_enum",
        "CREATE TYPE public.st AS ENUM ('queued', 'done');
         CREATE TABLE tasks (id text PRIMARY KEY, stage public.st NOT NULL);
         INSERT INTO tasks VALUES ('task-1', 'done');
         SELECT orch_lease.register_task_table('tasks');
         SELECT orch_lease.register_stage_graph('{}', '{done}');",
    );
    let (mut actor, mut owner) = (connect_timed(&dsn), connect_timed(&dsn));
    v.answers(
        "done -> queued",
        outcome(
            &mut actor,
            "update_task_stage_cas('task-1', 'done', 'queued')",
            &[],
        ),
        "invalid_transition",
    );
    owner
        .batch_execute("ALTER TYPE public.st RENAME VALUE 'done' TO 'finished'")
        .unwrap();
    let left = outcome(
        &mut actor,
        "update_task_stage_cas('task-1', 'finished', 'queued')",
        &[],
    );
    v.sqlstate(
        "finished (the renamed terminal stage) -> queued",
        left,
        "55000",
    );
    v.eq(
        "stage of task-1",
        owner
            .query_one("SELECT stage::text FROM tasks", &[])
            .unwrap()
            .get::<_, String>(0),
        "finished".to_string(),
    );

    let dsn = fresh_database_with("sec29_terminal_ci", "");
    let mut db = connect_timed(&dsn);
    if db
        .batch_execute(
            "CREATE COLLATION public.ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
             CREATE TABLE tasks (id text PRIMARY KEY, stage text COLLATE public.ci NOT NULL);",
        )
        .is_ok()
    {
        v.sqlstate(
            "register_task_table with a case-insensitive stage column",
            db.execute("SELECT orch_lease.register_task_table('tasks')", &[]),
            "42804",
        );
    }
    v.finish();
}
