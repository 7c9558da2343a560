//! Hostile input, table-driven: every function, fed NULLs, empty and very long strings, odd Unicode,
//! identifiers that try SQL injection, negative and huge tokens, unknown enum stages. Each case must
//! end in its documented SQLSTATE or outcome, and must leave every row of every table unchanged.
mod common;
use postgres::Client;

/// What a case must end in: an error with this SQLSTATE, or this first column (as text).
enum Expect {
    Error(&'static str),
    Returns(&'static str),
}
use Expect::{Error, Returns};

const A: &str = "SELECT outcome FROM orch_lease.transition_lease_acquire";
const CAS: &str = "SELECT outcome FROM orch_lease.update_task_stage_cas";
const COMMIT: &str = "SELECT outcome FROM orch_lease.commit_stage_cas";
const REL: &str = "SELECT orch_lease.transition_lease_release";
const FORCE: &str = "SELECT orch_lease.transition_lease_force_release";
const RECOVER: &str = "SELECT count(*) FROM orch_lease.transition_lease_recover";
const REGISTER: &str = "SELECT orch_lease.register_task_table";
const GRAPH: &str = "SELECT orch_lease.register_stage_graph";
const GUARD: &str = "SELECT orch_lease.install_bypass_guard";
const SESSION: &str = "SELECT outcome FROM orch_lease.transition_lease_acquire_session";

fn cases() -> Vec<(String, Expect)> {
    let long = "x".repeat(1025);
    let long_unicode = "é".repeat(600); // 1200 bytes in 600 characters
                                        // At the length limit: 1,024 quotes, and 1,024 control characters, as SQL expressions.
    let quotes = "repeat('''', 1024)";
    let too_many_quotes = "repeat('''', 1025)";
    let controls = "repeat(chr(1), 1024)";
    let c = |sql: String, expect: Expect| (sql, expect);
    vec![
        // transition_lease_acquire
        c(format!("{A}(NULL, 'o', 1, 'live-boot')"), Error("22004")),
        c(format!("{A}('', 'o', 1, 'live-boot')"), Error("22023")),
        c(
            format!("{A}(' \t\n ', 'o', 1, 'live-boot')"),
            Error("22023"),
        ),
        c(
            format!("{A}('{long}', 'o', 1, 'live-boot')"),
            Error("22001"),
        ),
        c(
            format!("{A}('{long_unicode}', 'o', 1, 'live-boot')"),
            Error("22001"),
        ),
        c(format!("{A}('3', NULL, 1, 'live-boot')"), Error("22004")),
        c(format!("{A}('3', '', 1, 'live-boot')"), Error("22023")),
        c(
            format!("{A}('3', '{long}', 1, 'live-boot')"),
            Error("22001"),
        ),
        c(format!("{A}('3', 'o', NULL, 'live-boot')"), Error("22004")),
        c(format!("{A}('3', 'o', 0, 'live-boot')"), Error("22023")),
        c(format!("{A}('3', 'o', -1, 'live-boot')"), Error("22023")),
        c(
            format!("{A}('3', 'o', 2147483648, 'live-boot')"),
            Error("42883"),
        ),
        c(format!("{A}('3', 'o', 1, NULL)"), Error("22004")),
        c(format!("{A}('3', 'o', 1, '')"), Error("22023")),
        c(format!("{A}('3', 'o', 1, '{long}')"), Error("22001")),
        c(
            format!("{A}('3', 'o', 1, 'live-boot', '{long}')"),
            Error("22001"),
        ),
        c(
            format!("{A}('2', 'o''); DROP TABLE tasks; --', 1, 'live-boot')"),
            Returns("held"),
        ),
        c(
            format!("{A}('2', 'o\u{202e}drowssap', 1, 'b\u{200b}')"),
            Returns("held"),
        ),
        c(
            format!("{A}('2', '🚀', 1, 'dead-boot')"),
            Returns("superseded"),
        ),
        // transition_lease_release
        c(format!("{REL}(NULL, 1)"), Error("22004")),
        c(format!("{REL}('', 1)"), Error("22023")),
        c(format!("{REL}('{long}', 1)"), Error("22001")),
        c(format!("{REL}('2', NULL)"), Returns("f")),
        c(format!("{REL}('2', -1)"), Returns("f")),
        c(format!("{REL}('2', 0)"), Returns("f")),
        c(format!("{REL}('2', 9223372036854775807)"), Returns("f")),
        c(format!("{REL}('2', -9223372036854775808)"), Returns("f")),
        c(format!("{REL}('2', 9223372036854775808)"), Error("42883")),
        c(
            format!("{REL}('2''; DELETE FROM orch_lease.transition_lease; --', 1)"),
            Error("22P02"),
        ),
        // transition_lease_force_release
        c(format!("{FORCE}(NULL)"), Error("22004")),
        c(format!("{FORCE}('')"), Error("22023")),
        c(format!("{FORCE}('2', NULL, NULL)"), Error("22004")),
        c(format!("{FORCE}('2', NULL, '')"), Error("22023")),
        c(format!("{FORCE}('2', NULL, '{long}')"), Error("22001")),
        c(format!("{FORCE}('2', -5)"), Returns("f")),
        c(format!("{FORCE}('404')"), Returns("f")),
        // transition_lease_recover
        c(format!("{RECOVER}(NULL)"), Error("22004")),
        c(format!("{RECOVER}('')"), Error("22023")),
        c(format!("{RECOVER}('{long}')"), Error("22001")),
        c(format!("{RECOVER}('b', NULL)"), Error("22004")),
        c(format!("{RECOVER}('b', '')"), Error("22023")),
        c(format!("{RECOVER}('b', 'i', 0)"), Error("22023")),
        c(format!("{RECOVER}('b', 'i', -7)"), Error("22023")),
        c(
            format!("{RECOVER}('dead-boot', 'orchestrator')"),
            Error("55000"),
        ),
        c(format!("{RECOVER}('live-boot', 'billing')"), Error("22023")),
        c(
            format!("{RECOVER}('live-boot', 'orchestrator')"),
            Returns("0"),
        ),
        // register_task_table
        c(format!("{REGISTER}(NULL)"), Error("22004")),
        c(format!("{REGISTER}('no_such_table')"), Error("42P01")),
        c(
            format!("{REGISTER}('tasks; DROP TABLE tasks')"),
            Error("42602"),
        ),
        c(
            format!("{REGISTER}('tasks', 'id; DROP TABLE tasks --')"),
            Error("42703"),
        ),
        c(
            format!("{REGISTER}('tasks', 'id', '\"stage\"')"),
            Error("42703"),
        ),
        c(format!("{REGISTER}('tasks', 'id', '')"), Error("42703")),
        c(format!("{REGISTER}('tasks', NULL)"), Error("22004")),
        c(
            format!("{REGISTER}('tasks', 'id', 'attempts')"),
            Error("42804"),
        ),
        c(format!("{REGISTER}('tasks_view')"), Error("42809")),
        c(format!("{REGISTER}('tasks_seq')"), Error("42809")),
        // update_task_stage_cas
        c(format!("{CAS}(NULL, 'queued', 'merged')"), Error("22004")),
        c(format!("{CAS}('', 'queued', 'merged')"), Error("22023")),
        c(format!("{CAS}('abc', 'queued', 'merged')"), Error("22P02")),
        c(
            format!("{CAS}('99999999999999999999', 'queued', 'merged')"),
            Error("22003"),
        ),
        c(format!("{CAS}('1', NULL, 'merged')"), Error("22004")),
        c(format!("{CAS}('1', 'queued', NULL)"), Error("22004")),
        c(format!("{CAS}('1', 'queued', 'mergd')"), Error("22P02")),
        c(format!("{CAS}('1', 'bogus', 'merged')"), Error("22P02")),
        c(format!("{CAS}('1', 'QUEUED', 'merged')"), Error("22P02")),
        c(format!("{CAS}('1', 'queued ', 'merged')"), Error("22P02")),
        c(
            format!("{CAS}('1', 'queued', 'merged''; UPDATE tasks SET stage = ''done''; --')"),
            Error("22P02"),
        ),
        c(format!("{CAS}('1', 'queued', '')"), Error("22P02")),
        c(
            format!("{CAS}('1', 'queued', 'merged', -1)"),
            Returns("lease_lost"),
        ),
        c(
            format!("{CAS}('1', 'queued', 'merged', 9223372036854775807)"),
            Returns("lease_lost"),
        ),
        c(
            format!("{CAS}('404', 'queued', 'merged')"),
            Returns("not_found"),
        ),
        c(
            format!("{CAS}('1', 'merged', 'queued')"),
            Returns("stage_mismatch"),
        ),
        // commit_stage_cas
        c(
            format!("{COMMIT}(NULL, 1, 'queued', 'merged')"),
            Error("22004"),
        ),
        c(
            format!("{COMMIT}('1', 0, 'queued', 'merged')"),
            Returns("lease_lost"),
        ),
        c(
            format!("{COMMIT}('1', -9223372036854775808, 'queued', 'merged')"),
            Returns("lease_lost"),
        ),
        c(
            format!("{COMMIT}('1', 1, 'queued', 'mërged')"),
            Error("22P02"),
        ),
        c(
            format!("{COMMIT}('one', 1, 'queued', 'merged')"),
            Error("22P02"),
        ),
        // register_stage_graph, install_bypass_guard, transition_lease_acquire_session (0.2.0)
        c(format!("{GRAPH}(NULL)"), Error("22004")),
        c(format!("{GRAPH}(ARRAY[NULL]::text[])"), Error("22004")),
        c(format!("{GRAPH}(ARRAY['queued'])"), Error("22023")),
        c(format!("{GRAPH}(ARRAY['queued -> '])"), Error("22023")),
        c(format!("{GRAPH}(ARRAY['queued -> nope'])"), Error("22P02")),
        c(
            format!("{GRAPH}(ARRAY['queued -> merged''); DROP TABLE tasks; --'])"),
            Error("22P02"),
        ),
        c(
            format!("{GRAPH}(ARRAY['merged -> queued'], ARRAY['merged'])"),
            Error("22023"),
        ),
        c(
            format!("{GRAPH}(ARRAY['queued -> merged'], NULL)"),
            Error("22004"),
        ),
        c(format!("{GUARD}(NULL)"), Error("22004")),
        c(format!("{GUARD}('')"), Error("22023")),
        c(
            format!("{GUARD}('reject; DROP TABLE tasks')"),
            Error("22023"),
        ),
        c(format!("{SESSION}(NULL, 'o')"), Error("22004")),
        c(format!("{SESSION}('', 'o')"), Error("22023")),
        c(format!("{SESSION}('3', '{long}')"), Error("22001")),
        c(format!("{SESSION}('2', 'o')"), Returns("held")),
        // 0.4.0: one task, one key — every spelling of the held task 2 is that lease.
        c(format!("{A}('02', 'o', 1, 'live-boot')"), Returns("held")),
        c(format!("{A}('+2', 'o', 1, 'live-boot')"), Returns("held")),
        c(format!("{A}(' 2', 'o', 1, 'live-boot')"), Returns("held")),
        c(format!("{SESSION}('0002', 'o')"), Returns("held")),
        c(format!("{A}('two', 'o', 1, 'live-boot')"), Error("22P02")),
        c(format!("{A}('2.0', 'o', 1, 'live-boot')"), Error("22P02")),
        c(
            format!("{A}('99999999999999999999', 'o', 1, 'live-boot')"),
            Error("22003"),
        ),
        c(format!("{REL}('two', 1)"), Error("22P02")),
        c(format!("{FORCE}('two')"), Error("22P02")),
        c(
            "SELECT orch_lease.transition_lease_liveness('two')".into(),
            Error("22P02"),
        ),
        c(
            "SELECT orch_lease.work_item_key('+0002')".into(),
            Returns("2"),
        ),
        c(
            "SELECT orch_lease.work_item_key(NULL)".into(),
            Error("22004"),
        ),
        // 1,024 bytes of quotes and of control characters in every text argument: accepted, harmless.
        c(
            format!("{A}('2', {quotes}, 1, 'live-boot')"),
            Returns("held"),
        ),
        c(
            format!("{A}('2', {controls}, 1, {controls})"),
            Returns("held"),
        ),
        c(
            format!("{A}('2', 'o', 1, 'live-boot', {quotes})"),
            Returns("held"),
        ),
        c(
            format!("{A}('2', 'o', 1, 'live-boot', {controls})"),
            Returns("held"),
        ),
        c(
            format!("{SESSION}('2', {controls}, {quotes})"),
            Returns("held"),
        ),
        c(
            format!("{A}('2', {too_many_quotes}, 1, 'live-boot')"),
            Error("22001"),
        ),
        c(format!("{CAS}('1', {quotes}, 'merged')"), Error("22P02")),
        c(format!("{CAS}('1', 'queued', {controls})"), Error("22P02")),
        c(
            format!("{CAS}('1', 'queued', {too_many_quotes})"),
            Error("22001"),
        ),
        c(format!("{FORCE}('404', NULL, {controls})"), Returns("f")),
        c(
            format!("{FORCE}('404', NULL, {too_many_quotes})"),
            Error("22001"),
        ),
        c(format!("{RECOVER}('live-boot', {quotes})"), Error("22023")),
        // settings
        c("SET orch_lease.enabled = 'maybe'".into(), Error("22023")),
    ]
}

/// Every row of every table the cases could touch, as one fingerprint. The history's record of a
/// refusal or a lost CAS is what such an answer leaves behind, so it is counted apart (`history_len`).
fn fingerprint(db: &mut Client) -> String {
    db.query_one(
        "SELECT md5(string_agg(r, '|' ORDER BY r)) FROM (
             SELECT 'lease ' || l::text AS r FROM orch_lease.transition_lease l
             UNION ALL SELECT 'boot ' || b::text FROM orch_lease.boot b
             UNION ALL SELECT 'event ' || e::text FROM orch_lease.lease_event e
                        WHERE e.event NOT IN ('refused', 'cas_lost')
             UNION ALL SELECT 'registry ' || t::text FROM orch_lease.task_table t
             UNION ALL SELECT 'graph ' || g::text FROM orch_lease.stage_transition g
             UNION ALL SELECT 'terminal ' || g::text FROM orch_lease.terminal_stage g
             UNION ALL SELECT 'bypass ' || b::text FROM orch_lease.bypass_log b
             UNION ALL SELECT 'trigger ' || tgname FROM pg_trigger WHERE tgrelid = 'tasks'::regclass
             UNION ALL SELECT 'task ' || t::text FROM tasks t) rows",
        &[],
    )
    .unwrap()
    .get(0)
}

/// How many events the lease history holds.
fn history_len(db: &mut Client) -> i64 {
    db.query_one("SELECT count(*) FROM orch_lease.lease_event", &[])
        .unwrap()
        .get(0)
}

#[test]
fn every_bad_input_gets_its_documented_answer_and_changes_nothing() {
    let dsn = common::fresh_database("hostile");
    let mut db = orch_lease_harness::connect(&dsn);
    db.batch_execute(
        "DROP TABLE tasks;
         CREATE TYPE task_stage AS ENUM ('queued', 'merged', 'rolled_back');
         CREATE TABLE tasks (id bigint PRIMARY KEY, stage task_stage NOT NULL, attempts int DEFAULT 0);
         INSERT INTO tasks (id, stage) VALUES (1, 'queued');
         CREATE VIEW tasks_view AS SELECT * FROM tasks;
         CREATE SEQUENCE tasks_seq;
         SELECT orch_lease.register_task_table('tasks');
         SELECT count(*) FROM orch_lease.transition_lease_recover('dead-boot', 'orchestrator');
         SELECT count(*) FROM orch_lease.transition_lease_recover('live-boot', 'orchestrator');
         SELECT orch_lease.transition_lease_acquire('2', 'monitor', 1, 'live-boot');",
    )
    .unwrap();
    let cases = cases();
    assert!(
        cases.len() >= 50,
        "at least 50 hostile inputs, got {}",
        cases.len()
    );

    let before = fingerprint(&mut db);
    let mut failures = Vec::new();
    for (sql, expect) in &cases {
        let history_before = history_len(&mut db);
        let got = match db.simple_query(sql) {
            Ok(messages) => {
                let first = messages.iter().find_map(|message| match message {
                    postgres::SimpleQueryMessage::Row(row) => {
                        Some(row.get(0).unwrap_or("NULL").to_string())
                    }
                    _ => None,
                });
                Ok(first.unwrap_or_default())
            }
            Err(error) => Err(error
                .code()
                .map(|code| code.code().to_string())
                .unwrap_or_default()),
        };
        let fine = match (expect, &got) {
            (Error(code), Err(got)) => code == got,
            (Returns(value), Ok(got)) => value == got,
            _ => false,
        };
        // An error writes nothing at all, not even history; an answer records at most its refusal.
        let changed = fingerprint(&mut db) != before
            || (matches!(expect, Error(_)) && history_len(&mut db) != history_before);
        if !fine || changed {
            let wanted = match expect {
                Error(code) => format!("error {code}"),
                Returns(value) => format!("returns {value}"),
            };
            failures.push(format!(
                "{sql:.120}\n    wanted {wanted}, got {got:?}, rows changed: {changed}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
