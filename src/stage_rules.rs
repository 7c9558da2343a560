//! Rules on stage writes beyond the CAS: the transitions that make sense (a stage graph), and a guard on
//! the task table that notices, or refuses, a stage write that bypasses the CAS.
use crate::{config, errors, guard, stage_cas};
use pgrx::prelude::*;
use pgrx::spi::{quote_identifier, quote_literal};
use pgrx::PgSqlErrorCode;
use std::cell::Cell;

extension_sql!(
    r#"
CREATE TABLE orch_lease.stage_transition (
    from_stage text NOT NULL,
    to_stage   text NOT NULL,
    PRIMARY KEY (from_stage, to_stage)
);
COMMENT ON TABLE orch_lease.stage_transition IS
    'The allowed stage transitions. Empty: every transition is allowed.';
CREATE TABLE orch_lease.terminal_stage (stage text PRIMARY KEY);
COMMENT ON TABLE orch_lease.terminal_stage IS 'Stages no transition leaves.';
CREATE TABLE orch_lease.bypass_log (
    at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    task_table regclass NOT NULL,
    task_id    text,
    old_stage  text,
    new_stage  text,
    by_role    name NOT NULL DEFAULT current_user
);
COMMENT ON TABLE orch_lease.bypass_log IS
    'Stage writes that bypassed the CAS while the bypass guard was in warn mode.';
SELECT pg_catalog.pg_extension_config_dump('orch_lease.stage_transition', '');
SELECT pg_catalog.pg_extension_config_dump('orch_lease.terminal_stage', '');
SELECT pg_catalog.pg_extension_config_dump('orch_lease.bypass_log', '');

-- The bypass guard: a BEFORE UPDATE trigger on the task table. Arguments: mode, stage column, id column.
CREATE FUNCTION orch_lease.bypass_guard() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    old_stage text := to_jsonb(OLD) ->> TG_ARGV[1];
    new_stage text := to_jsonb(NEW) ->> TG_ARGV[1];
    task_id   text := to_jsonb(NEW) ->> TG_ARGV[2];
BEGIN
    IF old_stage IS NOT DISTINCT FROM new_stage OR orch_lease.stage_write_allowed() THEN
        RETURN NEW;
    END IF;
    IF TG_ARGV[0] = 'reject' THEN
        RAISE EXCEPTION 'orch_lease: the stage of % % was written outside the stage CAS (% -> %)',
                        TG_TABLE_NAME, task_id, old_stage, new_stage
              USING ERRCODE = '55000',
                    HINT = 'Write the stage with orch_lease.update_task_stage_cas or orch_lease.commit_stage_cas.';
    END IF;
    INSERT INTO orch_lease.bypass_log (task_table, task_id, old_stage, new_stage)
    VALUES (TG_RELID, task_id, old_stage, new_stage);
    RAISE WARNING 'orch_lease: the stage of % % was written outside the stage CAS (% -> %)',
                  TG_TABLE_NAME, task_id, old_stage, new_stage;
    RETURN NEW;
END
$$;
"#,
    name = "stage_rules",
    requires = ["task_table_registry", stage_write_allowed]
);

thread_local! {
    /// Set while the CAS itself writes the stage: the only stage write the bypass guard lets through.
    static CAS_WRITING: Cell<bool> = const { Cell::new(false) };
}

/// Runs the CAS's own stage write. A guard resets the flag even when the write raises.
pub fn as_cas_write<R>(write: impl FnOnce() -> R) -> R {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            CAS_WRITING.with(|flag| flag.set(false));
        }
    }
    CAS_WRITING.with(|flag| flag.set(true));
    let _reset = Reset;
    write()
}

/// True while the stage CAS is writing, or when the kill-switch is off: what the bypass guard lets pass.
/// It can be read from SQL, never set.
#[pg_extern(volatile, parallel_unsafe)]
fn stage_write_allowed() -> bool {
    !config::enabled() || CAS_WRITING.with(Cell::get)
}

/// Installs (or, with `off`, removes) the bypass guard on the registered task table. `warn` logs each
/// stage write that does not come through the CAS to `orch_lease.bypass_log` and raises a WARNING;
/// `reject` refuses it with SQLSTATE 55000. Writes through the CAS always pass; so does everything while
/// the kill-switch is off.
#[pg_extern(volatile, parallel_unsafe, requires = ["stage_rules"])]
fn install_bypass_guard(mode: default!(Option<&str>, "'warn'")) {
    let mode = errors::required("mode", mode);
    if !["off", "warn", "reject"].contains(&mode) {
        errors::raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("orch_lease: mode must be off, warn or reject, not \"{mode}\""),
        );
    }
    let (table, id_column, stage_column) = stage_cas::registered_names();
    Spi::run(&format!(
        "DROP TRIGGER IF EXISTS orch_lease_bypass_guard ON {table}"
    ))
    .unwrap();
    if mode != "off" {
        Spi::run(&format!(
            "CREATE TRIGGER orch_lease_bypass_guard BEFORE UPDATE OF {} ON {table}
             FOR EACH ROW EXECUTE FUNCTION orch_lease.bypass_guard({}, {}, {})",
            quote_identifier(&stage_column),
            quote_literal(mode),
            quote_literal(&stage_column),
            quote_literal(&id_column),
        ))
        .unwrap();
    }
}

/// Registers the allowed stage transitions, each written `'from -> to'`, and the terminal stages (which
/// no transition may leave). Replaces any earlier graph; an empty list removes it. With a graph, a CAS
/// whose (expected, new) pair is not in it answers `invalid_transition` and writes nothing.
#[pg_extern(volatile, parallel_unsafe, requires = ["stage_rules"])]
fn register_stage_graph(
    transitions: Option<Vec<Option<String>>>,
    terminal_stages: default!(Option<Vec<Option<String>>>, "'{}'"),
) {
    let transitions = errors::present("transitions", transitions);
    let terminal: Vec<String> = errors::present("terminal_stages", terminal_stages)
        .into_iter()
        .map(|stage| errors::present("terminal_stages element", stage))
        .collect();
    let pairs: Vec<(String, String)> = transitions
        .into_iter()
        .map(|transition| {
            let transition = errors::present("transitions element", transition);
            match transition.split_once("->") {
                Some((from, to)) if !from.trim().is_empty() && !to.trim().is_empty() => {
                    (from.trim().to_string(), to.trim().to_string())
                }
                _ => errors::raise(
                    PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                    format!(
                        "orch_lease: transitions: \"{transition}\" is not of the form 'from -> to'"
                    ),
                ),
            }
        })
        .collect();
    // Every stage named must be a value of the stage column's type (an enum label it has).
    for (from, to) in &pairs {
        stage_cas::check_stage("transitions", from);
        stage_cas::check_stage("transitions", to);
        if terminal.contains(from) {
            errors::raise(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("orch_lease: terminal stage \"{from}\" has a transition out of it (to \"{to}\")"),
            );
        }
    }
    for stage in &terminal {
        stage_cas::check_stage("terminal_stages", stage);
    }
    guard::as_owner(|| replace_stage_graph(&pairs, terminal));
}

fn replace_stage_graph(pairs: &[(String, String)], terminal: Vec<String>) {
    let froms: Vec<&str> = pairs.iter().map(|(from, _)| from.as_str()).collect();
    let tos: Vec<&str> = pairs.iter().map(|(_, to)| to.as_str()).collect();
    Spi::run("DELETE FROM orch_lease.stage_transition; DELETE FROM orch_lease.terminal_stage")
        .unwrap();
    Spi::run_with_args(
        "INSERT INTO orch_lease.stage_transition SELECT DISTINCT * FROM unnest($1::text[], $2::text[])",
        &[froms.into(), tos.into()],
    )
    .unwrap();
    Spi::run_with_args(
        "INSERT INTO orch_lease.terminal_stage SELECT DISTINCT unnest($1::text[])",
        &[terminal.into()],
    )
    .unwrap();
    stage_cas::forget_everywhere("orch_lease.stage_transition");
}
