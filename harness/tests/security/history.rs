//! Announcements, the history and dump/restore: takeovers are announced once and cut to NOTIFY's limit,
//! the history shows no live token, prune keeps what refuses zombies, a restored database goes on.

use super::*;

// -------------------------------------------------------------------------------------------------
// Announcements and the history.

// 0.3.0's hole 2. A takeover announcement built from 1000 control characters (6000 bytes once
// JSON-escaped) was over NOTIFY's 8000-byte limit: reap, force_release, a reclaiming acquire and
// recover all raised.
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

// #12. Prune removed old superseded boots (0.4.0), which revived their zombies (#29.9): it keeps them now;
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

// -------------------------------------------------------------------------------------------------
// Dump and restore.

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

// 0.3.0's hole 6. The history's identity sequence was not dumped: after pg_dump and a restore, the
// first event of the first acquire hit lease_event_pkey (23505).
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
