//! Hostile input, table-driven: every function, fed NULLs, empty and very long strings, odd Unicode,
//! identifiers that try SQL injection, negative and huge tokens, unknown enum stages. Each case must
//! end in its documented SQLSTATE or outcome, and must leave every row of every orch_lease table, every
//! sequence, the task table and its triggers unchanged — except that an answered refusal (an acquire
//! refused, a CAS lost) may add exactly its own history row and count, with the outcome it answered. The cases
//! that PostgreSQL's parser rejects before orch_lease runs (an error with a cursor position) are counted
//! apart from those that reach orch_lease; both counts are asserted (docs/reliability.md states them).
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
const TAKEOVER: &str = "SELECT count(*) FROM orch_lease.transition_lease_takeover";
const REGISTER: &str = "SELECT orch_lease.register_task_table";
const GRAPH: &str = "SELECT orch_lease.register_stage_graph";
const GUARD: &str = "SELECT orch_lease.install_bypass_guard";
const HELD: &str = "SELECT orch_lease.transition_lease_held";
const SESSION: &str = "SELECT outcome FROM orch_lease.transition_lease_acquire_session";
const SWITCH: &str = "SELECT orch_lease.set_enabled";
const HAND: &str = "SELECT orch_lease.transition_lease_hand_over";

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
        // transition_lease_takeover: recover's checks, but no default instance
        c(format!("{TAKEOVER}(NULL, 'i')"), Error("22004")),
        c(format!("{TAKEOVER}('', 'i')"), Error("22023")),
        c(format!("{TAKEOVER}('{long}', 'i')"), Error("22001")),
        c(format!("{TAKEOVER}('b', NULL)"), Error("22004")),
        c(format!("{TAKEOVER}('b', 'i', 0)"), Error("22023")),
        c(
            format!("{TAKEOVER}('dead-boot', 'orchestrator')"),
            Error("55000"),
        ),
        c(
            format!("{TAKEOVER}('live-boot', 'orchestrator')"),
            Returns("0"),
        ),
        // transition_lease_hand_over (0.5.0): recover's checks of the instance; a role that exists. An
        // instance with no boot changes nothing (0 boots handed over).
        c(format!("{HAND}(NULL, 'postgres')"), Error("22004")),
        c(format!("{HAND}('', 'postgres')"), Error("22023")),
        c(format!("{HAND}(' \t\n ', 'postgres')"), Error("22023")),
        c(format!("{HAND}('{long}', 'postgres')"), Error("22001")),
        c(
            format!("{HAND}(repeat('''', 257), 'postgres')"),
            Error("22001"),
        ),
        c(
            format!("{HAND}(repeat('''', 256), 'postgres')"),
            Returns("0"),
        ),
        c(format!("{HAND}({controls}, 'postgres')"), Error("22001")),
        c(
            format!("{HAND}('no-such-instance', 'postgres')"),
            Returns("0"),
        ),
        c(format!("{HAND}('orchestrator', NULL)"), Error("22004")),
        c(format!("{HAND}('orchestrator', '')"), Error("22023")),
        c(
            format!("{HAND}('orchestrator', 'no_such_role')"),
            Error("42704"),
        ),
        c(format!("{HAND}('orchestrator', 'PUBLIC')"), Error("42704")),
        c(
            format!("{HAND}('orchestrator', 'postgres''; DROP TABLE tasks; --')"),
            Error("42704"),
        ),
        c(format!("{HAND}('orchestrator', {quotes})"), Error("42704")),
        c(
            format!("{HAND}('orchestrator', {controls})"),
            Error("42704"),
        ),
        c(
            format!("{HAND}('orchestrator', '{long_unicode}')"),
            Error("22001"),
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
            Returns("not_held"),
        ),
        c(
            format!("{CAS}('1', 'queued', 'merged', 9223372036854775807)"),
            Returns("not_held"),
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
            Returns("not_held"),
        ),
        c(
            format!("{COMMIT}('1', -9223372036854775808, 'queued', 'merged')"),
            Returns("not_held"),
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
        // 0.5.0: an id with no task row (every spelling of it) is no task: not_found, no lease, no token.
        c(
            format!("{A}('404', 'o', 1, 'live-boot')"),
            Returns("not_found"),
        ),
        c(
            format!("{A}('+0404', 'o', 1, 'dead-boot')"),
            Returns("not_found"),
        ),
        c(
            format!("{SESSION}('0404', {controls})"),
            Returns("not_found"),
        ),
        c(
            format!("{A}('-9223372036854775808', {quotes}, 1, 'live-boot', {quotes})"),
            Returns("not_found"),
        ),
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
        // transition_lease_held (0.4.0): a stale, NULL or foreign token is false, never an error.
        c(format!("{HELD}(NULL, 1)"), Error("22004")),
        c(format!("{HELD}('', 1)"), Error("22023")),
        c(format!("{HELD}('{long}', 1)"), Error("22001")),
        c(format!("{HELD}('two', 1)"), Error("22P02")),
        c(format!("{HELD}('+2', NULL)"), Returns("f")),
        c(format!("{HELD}('02', -9223372036854775808)"), Returns("f")),
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
        // Boot ids and instance names are capped at 256 bytes (0.5.0): at the cap, the live boot of
        // another instance is refused; one byte over, the name itself is.
        c(
            format!("{RECOVER}('live-boot', repeat('''', 256))"),
            Error("22023"),
        ),
        c(format!("{RECOVER}('live-boot', {quotes})"), Error("22001")),
        // settings: a misspelt name is refused once the library is loaded (its prefix is reserved)
        c("SET orch_lease.enabled = 'maybe'".into(), Error("22023")),
        c("SET orch_lease.enabeld = off".into(), Error("42602")),
        // the kill-switch: switching to the state it is in changes and records nothing
        c(format!("{SWITCH}(NULL, 'why')"), Error("22004")),
        c(format!("{SWITCH}(false, NULL)"), Error("22004")),
        c(format!("{SWITCH}(false, ' ')"), Error("22023")),
        c(format!("{SWITCH}(false, '{long}')"), Error("22001")),
        c(format!("{SWITCH}(true, {quotes})"), Returns("f")),
    ]
}

/// Every row of every table and the state of every sequence of orch_lease, the task table and its
/// triggers (the token sequence included), as one fingerprint; history rows past `event_id` (a case's
/// own) are left out.
fn fingerprint(db: &mut Client, event_id: i64) -> String {
    let tables: Vec<String> = db
        .query(
            "SELECT relname::text FROM pg_class WHERE relnamespace = 'orch_lease'::regnamespace
                AND relkind = 'r' ORDER BY relname",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(tables.len() >= 8, "orch_lease's tables: {tables:?}");
    let mut parts: Vec<String> = tables
        .iter()
        .map(|table| {
            // The running counts are checked apart (`counts`): a refusal counts its own outcome.
            let only_older = match table.as_str() {
                "lease_event" => format!("WHERE t.event_id <= {event_id}"),
                _ => String::new(),
            };
            format!("SELECT '{table} ' || t::text AS r FROM orch_lease.{table} t {only_older}")
        })
        .collect();
    // The history's own id sequence moves with a refusal's row, which is checked row by row; the
    // sequences that count events are counts (`counts`).
    parts.push(
        "SELECT 'sequence ' || s.sequencename || ' ' || coalesce(s.last_value::text, 'unused')
           FROM pg_sequences s WHERE s.schemaname = 'orch_lease'
            AND s.sequencename <> 'lease_event_event_id_seq'
            AND NOT EXISTS (SELECT FROM orch_lease.event_counter c
                             WHERE c.counter = format('orch_lease.%I', s.sequencename)::regclass)"
            .into(),
    );
    parts.push(
        "SELECT 'trigger ' || tgname FROM pg_trigger WHERE tgrelid = 'tasks'::regclass".into(),
    );
    parts.push("SELECT 'task ' || t::text FROM tasks t".into());
    db.query_one(
        &format!(
            "SELECT md5(string_agg(r, '|' ORDER BY r)) FROM ({}) rows",
            parts.join(" UNION ALL ")
        ),
        &[],
    )
    .unwrap()
    .get(0)
}

/// The last history row's id.
fn last_event(db: &mut Client) -> i64 {
    db.query_one(
        "SELECT coalesce(max(event_id), 0) FROM orch_lease.lease_event",
        &[],
    )
    .unwrap()
    .get(0)
}

/// The history rows after `event_id`: (event, outcome).
fn events_after(db: &mut Client, event_id: i64) -> Vec<(String, Option<String>)> {
    db.query(
        "SELECT event::text, outcome::text FROM orch_lease.lease_event WHERE event_id > $1 ORDER BY event_id",
        &[&event_id],
    )
    .unwrap()
    .iter()
    .map(|row| (row.get(0), row.get(1)))
    .collect()
}

/// What a case may add to the history: nothing, or for an answered refusal exactly its own row.
fn own_row_only(expect: &Expect, added: &[(String, Option<String>)]) -> bool {
    match (expect, added) {
        (_, []) => true,
        (Returns(outcome), [(event, Some(recorded))]) => {
            ["refused", "cas_lost"].contains(&event.as_str()) && recorded == outcome
        }
        _ => false,
    }
}

/// The running counts (a sequence per event and outcome) by event and outcome.
fn counts(db: &mut Client) -> std::collections::BTreeMap<(String, String), i64> {
    db.query(
        "SELECT event, outcome, coalesce(pg_sequence_last_value(counter), 0)
           FROM orch_lease.event_counter",
        &[],
    )
    .unwrap()
    .iter()
    .map(|row| ((row.get(0), row.get(1)), row.get(2)))
    .collect()
}

/// What a case may add to the counts: nothing, or for an answered refusal one of its own outcome.
fn own_count_only(
    expect: &Expect,
    before: &std::collections::BTreeMap<(String, String), i64>,
    after: &std::collections::BTreeMap<(String, String), i64>,
) -> bool {
    let grown: Vec<(&(String, String), i64)> = after
        .iter()
        .map(|(key, n)| (key, n - before.get(key).copied().unwrap_or(0)))
        .filter(|(_, delta)| *delta != 0)
        .collect();
    match (expect, grown.as_slice()) {
        (_, []) => true,
        (Returns(outcome), [((event, counted), 1)]) => {
            ["refused", "cas_lost"].contains(&event.as_str()) && counted == outcome
        }
        _ => false,
    }
}

/// Cases that reach orch_lease, and cases PostgreSQL's parser rejects before it runs.
const REACHING_ORCH_LEASE: usize = 153;
const REJECTED_BY_THE_PARSER: usize = 4;

#[test]
fn every_bad_input_gets_its_documented_answer_and_changes_nothing() {
    let dsn = common::fresh_database("hostile");
    let mut db = orch_lease_harness::connect(&dsn);
    db.batch_execute(
        "DROP TABLE tasks;
         CREATE TYPE task_stage AS ENUM ('queued', 'merged', 'rolled_back');
         CREATE TABLE tasks (id bigint PRIMARY KEY, stage task_stage NOT NULL, attempts int DEFAULT 0);
         INSERT INTO tasks (id, stage) VALUES (1, 'queued'), (2, 'queued');
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

    let mut failures = Vec::new();
    let (mut reached, mut parser) = (0, 0);
    for (sql, expect) in &cases {
        let last = last_event(&mut db);
        let before = fingerprint(&mut db, last);
        let counted_before = counts(&mut db);
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
            Err(error) => {
                // A cursor position: the parser or the analyzer refused the statement, and no function
                // of orch_lease ran.
                if error.as_db_error().and_then(|e| e.position()).is_some() {
                    parser += 1;
                    println!("rejected by the parser: {sql:.100}");
                } else {
                    reached += 1;
                }
                Err(error
                    .code()
                    .map(|code| code.code().to_string())
                    .unwrap_or_default())
            }
        };
        if got.is_ok() {
            reached += 1;
        }
        let fine = match (expect, &got) {
            (Error(code), Err(got)) => code == got,
            (Returns(value), Ok(got)) => value == got,
            _ => false,
        };
        // Nothing changed, but for the refusal's own history row.
        let added = events_after(&mut db, last);
        let changed = fingerprint(&mut db, last) != before
            || !own_row_only(expect, &added)
            || !own_count_only(expect, &counted_before, &counts(&mut db));
        if !fine || changed {
            let wanted = match expect {
                Error(code) => format!("error {code}"),
                Returns(value) => format!("returns {value}"),
            };
            failures.push(format!(
                "{sql:.120}\n    wanted {wanted}, got {got:?}, rows changed: {changed} (history added: {added:?})"
            ));
        }
    }
    println!(
        "hostile: {} cases, {reached} reach orch_lease, {parser} rejected by PostgreSQL's parser",
        cases.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_eq!(
        (reached, parser),
        (REACHING_ORCH_LEASE, REJECTED_BY_THE_PARSER),
        "cases reaching orch_lease and cases the parser rejects (docs/reliability.md states both)"
    );
}

/// #27: the task table a call names, made hostile — a table that is not registered, a name that is no
/// table, a view, a partition of a registered table, a registered table dropped, renamed, or dropped
/// and created again under its name. Each is a clear error (or, renamed, still the same table), never
/// a write on another table's row and never a second holder of one row.
#[test]
fn a_hostile_task_table_argument_is_refused_or_keeps_its_table() {
    let dsn = common::fresh_database("hostile_tables");
    let mut db = orch_lease_harness::connect(&dsn);
    db.batch_execute(
        "CREATE TABLE jobs (id bigint PRIMARY KEY, stage text NOT NULL);
         INSERT INTO tasks VALUES ('42', 'queued'); INSERT INTO jobs VALUES (42, 'queued');
         SELECT orch_lease.register_task_table('jobs');
         CREATE TABLE deploys (id text PRIMARY KEY, stage text NOT NULL);
         CREATE VIEW jobs_view AS SELECT * FROM jobs;
         CREATE TABLE runs (id bigint, stage text NOT NULL, PRIMARY KEY (id)) PARTITION BY RANGE (id);
         CREATE TABLE runs_low PARTITION OF runs FOR VALUES FROM (0) TO (1000);
         SELECT orch_lease.register_task_table('runs');",
    )
    .unwrap();
    let code = |db: &mut postgres::Client, sql: &str| -> String {
        match db.batch_execute(sql) {
            Ok(()) => "ok".into(),
            Err(error) => error
                .code()
                .map(|code| code.code().to_string())
                .unwrap_or_default(),
        }
    };
    let acquire = |table: &str| {
        format!(
            "SELECT orch_lease.transition_lease_acquire('42', 'o', 1, 'b', task_table => {table})"
        )
    };
    let leases = |db: &mut postgres::Client| -> i64 {
        db.query_one("SELECT count(*) FROM orch_lease.transition_lease", &[])
            .unwrap()
            .get(0)
    };
    // Three tables registered and none named: ambiguous, whichever call.
    for call in [
        "SELECT orch_lease.transition_lease_acquire('42', 'o', 1, 'b')",
        "SELECT orch_lease.update_task_stage_cas('42', 'queued', 'merged')",
        "SELECT orch_lease.transition_lease_held('42', 1)",
        "SELECT orch_lease.work_item_key('42')",
    ] {
        assert_eq!(code(&mut db, call), "42P08", "{call}");
    }
    // Not registered, a name that is no relation, a view, a partition of a registered table, an oid
    // that names nothing, a system catalog.
    for (table, expected) in [
        ("'deploys'", "55000"),
        ("'no_such_table'", "42P01"),
        ("'jobs_view'", "55000"),
        ("'runs_low'", "55000"),
        ("4000000000::oid::regclass", "55000"),
        ("'pg_class'", "55000"),
    ] {
        assert_eq!(code(&mut db, &acquire(table)), expected, "{table}");
    }
    assert_eq!(leases(&mut db), 0, "a refused call leased something");
    // A partition of a registered table, or the partitioned table of a registered partition, is the
    // same rows: registering it is refused.
    assert_eq!(
        code(&mut db, "SELECT orch_lease.register_task_table('runs_low')"),
        "55000"
    );
    // Renamed after registration: still the registered table (a regclass is an oid), under its new name.
    assert_eq!(code(&mut db, &acquire("'jobs'")), "ok");
    db.batch_execute("ALTER TABLE jobs RENAME TO jobs_renamed")
        .unwrap();
    let outcome: String = db
        .query_one(
            "SELECT outcome FROM orch_lease.transition_lease_acquire('42', 'p', 2, 'b2', task_table => 'jobs_renamed')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(outcome, "held", "a renamed table lost its leases");
    // Dropped, and created again under the same name: the new table is not the registered one, and
    // the old registration stays while its lease is held; the lease is ended by the old table's oid.
    let old: u32 = db
        .query_one("SELECT 'jobs_renamed'::regclass::oid", &[])
        .unwrap()
        .get(0);
    db.batch_execute(
        "DROP VIEW jobs_view; DROP TABLE jobs_renamed;
         CREATE TABLE jobs_renamed (id bigint PRIMARY KEY, stage text NOT NULL);
         INSERT INTO jobs_renamed VALUES (42, 'queued');",
    )
    .unwrap();
    assert_eq!(code(&mut db, &acquire("'jobs_renamed'")), "55000");
    assert_eq!(
        code(
            &mut db,
            &format!("SELECT orch_lease.update_task_stage_cas('42', 'queued', 'merged', task_table => {old}::oid::regclass)")
        ),
        "42P01",
        "a CAS on the dropped table's registration"
    );
    assert_eq!(
        code(
            &mut db,
            &format!("SELECT orch_lease.unregister_task_table({old}::oid::regclass)")
        ),
        "55000",
        "unregistering the dropped table while its lease is held"
    );
    assert_eq!(
        code(
            &mut db,
            &format!("SELECT orch_lease.transition_lease_force_release('42', task_table => {old}::oid::regclass)")
        ),
        "ok"
    );
    assert_eq!(
        code(
            &mut db,
            &format!("SELECT orch_lease.unregister_task_table({old}::oid::regclass)")
        ),
        "ok"
    );
    // The new table registered: its own item, and the other tables' rows untouched by its CAS.
    assert_eq!(
        code(
            &mut db,
            "SELECT orch_lease.register_task_table('jobs_renamed')"
        ),
        "ok"
    );
    let applied: String = db
        .query_one(
            "SELECT outcome FROM orch_lease.update_task_stage_cas('42', 'queued', 'merged', task_table => 'jobs_renamed')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(applied, "applied");
    let stages: String = db
        .query_one(
            "SELECT (SELECT stage FROM tasks WHERE id = '42') || ',' || (SELECT stage FROM jobs_renamed WHERE id = 42)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(stages, "queued,merged", "a CAS wrote another table's row");
}

/// The stage an acquire answers (0.5.0) is read with the caller's own privileges, and an id with no
/// row is `not_found` with nothing written: the swapped-argument mistake on a text-id table, a row the
/// caller's row-level security hides, a planted operator in the caller's schema, a caller with no
/// SELECT on the task table (an error, nothing granted).
#[test]
fn acquire_answers_the_stage_as_the_caller_reads_it() {
    let dsn = common::fresh_database_with(
        "hostile_stage",
        "CREATE TABLE pulls (id text PRIMARY KEY, stage text NOT NULL, team text NOT NULL);
         INSERT INTO pulls VALUES ('PR-3', 'open', 'red'), ('PR-4', 'review', 'blue');
         SELECT orch_lease.register_task_table('pulls');
         ALTER TABLE pulls ENABLE ROW LEVEL SECURITY;
         CREATE POLICY own_team ON pulls USING (team = 'red');",
    );
    common::login_role("hostile_stage_actor", &["orch_lease_actor"]);
    common::login_role("hostile_stage_blind", &["orch_lease_actor"]);
    let mut admin = orch_lease_harness::connect(&dsn);
    admin
        .batch_execute(
            "GRANT SELECT, UPDATE ON pulls TO hostile_stage_actor;
             CREATE SCHEMA planted AUTHORIZATION hostile_stage_actor;",
        )
        .unwrap();
    let mut actor = orch_lease_harness::connect(&common::dsn_as(&dsn, "hostile_stage_actor"));
    let tokens = |db: &mut Client| -> i64 {
        db.query_one("SELECT last_value FROM orch_lease.token_seq", &[])
            .unwrap()
            .get(0)
    };
    let answer = |db: &mut Client,
                  item: &str,
                  owner: &str|
     -> (String, Option<i64>, Option<String>) {
        let row = db
            .query_one(
                "SELECT outcome, token, stage FROM orch_lease.transition_lease_acquire_session($1, $2)",
                &[&item, &owner],
            )
            .unwrap();
        (row.get(0), row.get(1), row.get(2))
    };
    let before = tokens(&mut admin);

    // Swapped arguments: the owner's name where the work item goes.
    let swapped = answer(&mut actor, "orch", "PR-3");
    assert_eq!(
        swapped,
        ("not_found".into(), None, None),
        "acquire('orch', 'PR-3')"
    );
    // A row the caller's row-level security hides is no task of its: the same answer, whatever it
    // holds (its stage is not shown).
    assert_eq!(
        answer(&mut actor, "PR-4", "orch"),
        ("not_found".into(), None, None)
    );
    assert_eq!(tokens(&mut admin), before, "no token drawn for not_found");

    // An operator of the caller's own in front of pg_catalog: the read uses the id type's own.
    actor
        .batch_execute(
            "CREATE FUNCTION planted.never(text, text) RETURNS boolean LANGUAGE sql AS 'SELECT false';
             CREATE OPERATOR planted.= (LEFTARG = text, RIGHTARG = text, FUNCTION = planted.never);
             SET search_path = planted, pg_catalog, public;",
        )
        .unwrap();
    let (outcome, token, stage) = answer(&mut actor, "PR-3", "orch");
    assert_eq!(
        (outcome.as_str(), stage.as_deref()),
        ("acquired", Some("open"))
    );
    assert!(token.is_some());

    // A caller that may not read the task table gets an error, and no lease.
    let mut blind = orch_lease_harness::connect(&common::dsn_as(&dsn, "hostile_stage_blind"));
    let refused = blind
        .query_one(
            "SELECT outcome FROM orch_lease.transition_lease_acquire_session('PR-3', 'blind')",
            &[],
        )
        .unwrap_err();
    assert_eq!(refused.code().map(|c| c.code()), Some("42501"), "{refused}");
    let leases: i64 = admin
        .query_one("SELECT count(*) FROM orch_lease.transition_lease", &[])
        .unwrap()
        .get(0);
    assert_eq!(leases, 1, "only the actor's lease on PR-3");
}

/// Row-level security that lets every tenant read every row but update only its own (red team 2, G8):
/// acquire's existence check applied the SELECT policies only, so tenant B was granted leases on tenant
/// A's tasks, which it could never move (its CAS answers `not_found`) and A's actors got `held`. A row
/// the caller may not update is `not_found`, as for the CAS, checked with the caller's own rights: the
/// policies run as the caller, never as orch_lease's owner.
#[test]
fn a_row_the_caller_may_not_update_is_not_found() {
    let dsn = common::fresh_database_with(
        "hostile_update_own",
        "CREATE TABLE tenant_tasks (id bigint PRIMARY KEY, stage text NOT NULL, tenant name NOT NULL);
         INSERT INTO tenant_tasks VALUES (1, 'queued', 'hostile_tenant_a'), (2, 'queued', 'hostile_tenant_b');
         SELECT orch_lease.register_task_table('tenant_tasks');
         -- A policy function that notes that it ran, and whether with other rights than a tenant's, in
         -- sequences (a look rolled back keeps them).
         CREATE SEQUENCE policy_runs;
         CREATE SEQUENCE runs_as_another;
         GRANT USAGE ON SEQUENCE policy_runs, runs_as_another TO PUBLIC;
         CREATE FUNCTION own_row(tenant name) RETURNS boolean LANGUAGE sql VOLATILE AS
           'SELECT nextval(''policy_runs'');
            SELECT nextval(''runs_as_another'') WHERE current_user NOT LIKE ''hostile_tenant_%'';
            SELECT tenant = current_user';
         ALTER TABLE tenant_tasks ENABLE ROW LEVEL SECURITY;
         CREATE POLICY read_all ON tenant_tasks FOR SELECT USING (true);
         CREATE POLICY update_own ON tenant_tasks FOR UPDATE USING (own_row(tenant)) WITH CHECK (own_row(tenant));",
    );
    common::login_role("hostile_tenant_a", &["orch_lease_actor"]);
    common::login_role("hostile_tenant_b", &["orch_lease_actor"]);
    let mut admin = orch_lease_harness::connect(&dsn);
    admin
        .batch_execute("GRANT SELECT, UPDATE ON tenant_tasks TO hostile_tenant_a, hostile_tenant_b")
        .unwrap();
    let mut a = orch_lease_harness::connect(&common::dsn_as(&dsn, "hostile_tenant_a"));
    let mut b = orch_lease_harness::connect(&common::dsn_as(&dsn, "hostile_tenant_b"));
    let acquire = |db: &mut Client, item: &str| -> (String, Option<i64>) {
        let row = db
            .query_one(
                "SELECT outcome, token FROM orch_lease.transition_lease_acquire_session($1, 'w')",
                &[&item],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    // B on A's task: no lease, no token.
    assert_eq!(
        acquire(&mut b, "1"),
        ("not_found".into(), None),
        "B acquire(A's 1)"
    );
    // Each tenant on its own task: granted; A's is A's, not held by B.
    assert_eq!(acquire(&mut a, "1").0, "acquired", "A acquire(its own 1)");
    assert_eq!(acquire(&mut b, "2").0, "acquired", "B acquire(its own 2)");
    let leases: String = admin
        .query_one(
            "SELECT string_agg(work_item || ':' || holder_role, ' ' ORDER BY work_item)
               FROM orch_lease.transition_lease",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(leases, "1:hostile_tenant_a 2:hostile_tenant_b");
    // The UPDATE policy ran, and only ever with the callers' rights.
    let runs: (bool, bool) = admin
        .query_one(
            "SELECT (SELECT is_called FROM policy_runs), (SELECT is_called FROM runs_as_another)",
            &[],
        )
        .map(|row| (row.get(0), row.get(1)))
        .unwrap();
    assert_eq!(
        runs,
        (true, false),
        "(the UPDATE policy ran, with another role's rights)"
    );
}
