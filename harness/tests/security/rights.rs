//! Who may do what: orch_lease's own rights (the owner switch, the bypass guard) reach no code of the
//! caller or the table owner; a token, a boot id and an instance are their role's alone; the extension's
//! schema and the task table are the ones registered; registering wants the table's owner.

use super::*;

// -------------------------------------------------------------------------------------------------
// The owner switch and the bypass guard: the extension owner's rights run no code of anyone else.

// 0.3.0's hole 1. The bypass guard ran the task table's own code (an enum's cast to json, reached by
// to_jsonb) as the extension's owner, a superuser: a table owner could make itself superuser with one
// bare UPDATE.
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

// #12. The CAS found the task row with `=` resolved through the caller's search_path, so an operator the
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

// #12. A CAS made by a trigger on the task table, inside another CAS, reset the "CAS is writing" mark when
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

// -------------------------------------------------------------------------------------------------
// Tokens, boot ids and instances: each is its role's alone.

// 0.3.0's hole 5. Any actor holding another actor's token (from the status view or the lease table,
// which every actor could read) could release that actor's lease or commit under it.
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

// 0.3.0's hole 7. recover was admin-only, so an actor could not register its own boot; and nothing
// stopped one actor from superseding another's instance.
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

// -------------------------------------------------------------------------------------------------
// Schemas, registration and row-level security: the tables are the ones their owners registered.

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

// 0.3.0's hole 10. register_task_table accepted a table its caller does not own, and an id column that
// is not a key.
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
