//! Rules on stage writes beyond the CAS: the transitions that make sense (a stage graph with terminal
//! stages), and a guard on the task table that notices, or refuses, a stage write that bypasses the CAS.
//! A plain client of the CAS: it asks `stage_cas` which write is the CAS's own.
use crate::stage_cas::{self, CasWrite};
use crate::task_table::{self, TableArg};
use crate::{config, errors, owner, plans, rows};
use pgrx::prelude::*;
use pgrx::spi::{quote_identifier, quote_literal, SpiClient};
use pgrx::{AllocatedByPostgres, PgSqlErrorCode};
use std::ffi::{CStr, CString};

extension_sql!(
    r#"
CREATE TABLE orch_lease.stage_transition (
    from_stage text NOT NULL,
    to_stage   text NOT NULL,
    task_table regclass NOT NULL,
    PRIMARY KEY (task_table, from_stage, to_stage)
);
COMMENT ON TABLE orch_lease.stage_transition IS
    'The allowed stage transitions of each task table. None for a table: every transition is allowed.';
CREATE TABLE orch_lease.terminal_stage (
    stage      text NOT NULL,
    task_table regclass NOT NULL,
    PRIMARY KEY (task_table, stage)
);
COMMENT ON TABLE orch_lease.terminal_stage IS 'Stages no transition of a task table leaves.';
CREATE TABLE orch_lease.bypass_log (
    at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    task_table regclass NOT NULL,
    task_id    text,
    old_stage  text,
    new_stage  text,
    by_role    name NOT NULL DEFAULT current_user
);
COMMENT ON TABLE orch_lease.bypass_log IS
    'Stage writes that bypassed the CAS while the bypass guard was in warn mode, with the role that wrote them.';
SELECT pg_catalog.pg_extension_config_dump('orch_lease.stage_transition', '');
SELECT pg_catalog.pg_extension_config_dump('orch_lease.terminal_stage', '');
CREATE TABLE orch_lease.stage_label (
    stage      text NOT NULL,
    rank       integer NOT NULL,
    task_table regclass NOT NULL,
    PRIMARY KEY (task_table, stage)
);
COMMENT ON TABLE orch_lease.stage_label IS
    'For an enum stage type: the place in the enum of each stage a task table''s graph names, when it was registered (a renamed or swapped label fails closed).';
SELECT pg_catalog.pg_extension_config_dump('orch_lease.stage_label', '');
SELECT pg_catalog.pg_extension_config_dump('orch_lease.bypass_log', '');
"#,
    name = "stage_rules",
    requires = ["task_table_registry"]
);

/// The bypass guard: a BEFORE UPDATE OF stage row trigger on the task table, arguments (mode, stage
/// column, id column). It runs as the role that writes the row (SECURITY INVOKER), reads the two
/// columns with their types' output functions, and only its log entry is written as the extension's
/// owner, from plain text. Writes through the CAS pass; so does everything while the kill-switch is off.
#[pg_trigger(sql = r#"
CREATE FUNCTION orch_lease.bypass_guard() RETURNS trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'bypass_guard_wrapper';
COMMENT ON FUNCTION orch_lease.bypass_guard() IS
    'The bypass guard trigger (installed by install_bypass_guard): notices or refuses stage writes outside the CAS.';
"#)]
fn bypass_guard<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, std::convert::Infallible> {
    let passes = trigger.new();
    let args = trigger.extra_args().unwrap_or_default();
    let [mode, stage_column, id_column] = args.as_slice() else {
        errors::raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "orch_lease: bypass_guard takes (mode, stage column, id column): install it with orch_lease.install_bypass_guard".into(),
        );
    };
    let data = trigger.trigger_data();
    let column_text = |tuple: *mut pg_sys::HeapTupleData, column: &str| -> Option<String> {
        let name = CString::new(column).ok()?;
        // SAFETY: the trigger's relation and tuples are PostgreSQL's, valid for the trigger call; the
        // column name outlives the calls; SPI_getvalue's palloc'd text is copied at once.
        unsafe {
            let tupdesc = (*data.tg_relation).rd_att;
            let attnum = pg_sys::SPI_fnumber(tupdesc, name.as_ptr());
            if attnum <= 0 {
                errors::raise(
                    PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
                    format!("orch_lease: bypass_guard: column \"{column}\" does not exist"),
                );
            }
            let text = pg_sys::SPI_getvalue(tuple, tupdesc, attnum);
            (!text.is_null()).then(|| CStr::from_ptr(text).to_string_lossy().into_owned())
        }
    };
    let old_stage = column_text(data.tg_trigtuple, stage_column);
    let new_stage = column_text(data.tg_newtuple, stage_column);
    if old_stage == new_stage || !config::enabled() {
        return Ok(passes);
    }
    let task_id = column_text(data.tg_newtuple, id_column);
    // SAFETY: the trigger's relation, open for the trigger call.
    let fired_on = unsafe { (*data.tg_relation).rd_id };
    if let (Some(key), Some(stage)) = (&task_id, &new_stage) {
        let cas_write = |relid| {
            stage_cas::is_cas_write(&CasWrite {
                relid,
                key: key.clone(),
                stage: stage.clone(),
            })
        };
        if written_tables(fired_on).into_iter().any(cas_write) {
            return Ok(passes);
        }
    }
    let relid = registered_ancestor(fired_on);
    let table = trigger.table_name().unwrap_or_default();
    let shown = |value: &Option<String>| value.clone().unwrap_or_else(|| "<NULL>".into());
    let what = format!(
        "orch_lease: the stage of {table} {} was written outside the stage CAS ({} -> {})",
        shown(&task_id),
        shown(&old_stage),
        shown(&new_stage)
    );
    if mode == "reject" {
        errors::raise_hinted(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            what,
            "Write the stage with orch_lease.update_task_stage_cas or orch_lease.commit_stage_cas.",
            None,
        );
    }
    let by_role = owner::caller_name();
    owner::as_owner(|| {
        Spi::connect(|client| {
            plans::run(
                client,
                "INSERT INTO orch_lease.bypass_log (task_table, task_id, old_stage, new_stage, by_role)
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    relid.into(),
                    task_id.as_deref().into(),
                    old_stage.as_deref().into(),
                    new_stage.as_deref().into(),
                    by_role.as_str().into(),
                ],
            );
        })
    });
    pgrx::warning!("{what}");
    Ok(passes)
}

/// The tables a row's write is a write of: the one the guard fired on and, for a partition, every
/// partitioned table above it. The registered table (the one the CAS marks) is any of them: the
/// partitioned table, or a partition registered by itself (red team of #29.10: mapping every partition
/// to the topmost table refused the CAS on a registered partition).
fn written_tables(relid: pg_sys::Oid) -> Vec<pg_sys::Oid> {
    if !is_partition(relid) {
        return vec![relid];
    }
    Spi::connect(|client| {
        plans::run(
            client,
            "SELECT relid::pg_catalog.oid AS relid FROM pg_catalog.pg_partition_ancestors($1)",
            &[relid.into()],
        )
        .map(|row| rows::column::<pg_sys::Oid>(&row, "relid"))
        .collect()
    })
}

/// Is the relation a partition?
fn is_partition(relid: pg_sys::Oid) -> bool {
    // SAFETY: a catalog cache look-up by oid, no pointer; a relation gone answers false.
    unsafe { pg_sys::get_rel_relispartition(relid) }
}

/// The table a bypass is logged under: a partition's topmost partitioned table, the one registered
/// when the task table is partitioned; the guard, cloned onto every partition, fires on the partition.
fn registered_ancestor(relid: pg_sys::Oid) -> pg_sys::Oid {
    if !is_partition(relid) {
        return relid;
    }
    Spi::get_one_with_args::<pg_sys::Oid>(
        "SELECT pg_catalog.pg_partition_root($1)::pg_catalog.oid",
        &[relid.into()],
    )
    .ok()
    .flatten()
    .unwrap_or(relid)
}

/// Installs (or, with `off`, removes) the bypass guard on a registered task table (omitted: the only
/// one registered), which the caller must own. `warn` logs each stage write that does not come through the CAS to
/// `orch_lease.bypass_log` and raises a WARNING; `reject` refuses it with SQLSTATE 55000. Writes
/// through the CAS always pass; so does everything while the kill-switch is off.
#[pg_extern(
    volatile,
    parallel_unsafe,
    requires = ["stage_rules", bypass_guard],
    sql = r#"
CREATE FUNCTION orch_lease.install_bypass_guard(
    mode text DEFAULT 'warn',
    task_table regclass DEFAULT NULL
) RETURNS void VOLATILE PARALLEL UNSAFE LANGUAGE c
AS 'MODULE_PATHNAME', 'install_bypass_guard_wrapper';
"#
)]
fn install_bypass_guard(mode: default!(Option<&str>, "'warn'"), fcinfo: pg_sys::FunctionCallInfo) {
    let task_table = task_table::argument(fcinfo, 1);
    let mode = errors::required("mode", mode);
    if !["off", "warn", "reject"].contains(&mode) {
        errors::raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("orch_lease: mode must be off, warn or reject, not \"{mode}\""),
        );
    }
    let table = task_table::task_table(task_table);
    if !task_table::caller_owns(table.relid) {
        errors::raise(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!(
                "orch_lease: must be the owner of {} to guard it",
                table.qualified
            ),
        );
    }
    remove_bypass_guard(table.relid);
    // The trigger is created by the extension's owner: nobody else may execute bypass_guard, so nobody
    // attaches it to another table.
    owner::as_owner(|| {
        if mode != "off" {
            client_run(&format!(
                "CREATE TRIGGER orch_lease_bypass_guard BEFORE UPDATE OF {} ON {}
                 FOR EACH ROW EXECUTE FUNCTION orch_lease.bypass_guard({}, {}, {})",
                quote_identifier(&table.stage_column),
                table.qualified,
                quote_literal(mode),
                quote_literal(&table.stage_column),
                quote_literal(&table.id_column),
            ));
        }
    });
}

/// Removes the bypass guard from a table, if it has one (`unregister_task_table` too).
pub fn remove_bypass_guard(relid: pg_sys::Oid) {
    owner::as_owner(|| {
        let installed = Spi::connect(|client| {
            !plans::run(
                client,
                "SELECT FROM pg_catalog.pg_trigger WHERE tgrelid = $1 AND tgname = 'orch_lease_bypass_guard'",
                &[relid.into()],
            )
            .is_empty()
        });
        if installed {
            let qualified = Spi::get_one_with_args::<String>(
                "SELECT pg_catalog.format('%I.%I', n.nspname, c.relname)
                   FROM pg_catalog.pg_class c
                   JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
                  WHERE c.oid OPERATOR(pg_catalog.=) $1",
                &[relid.into()],
            )
            .ok()
            .flatten()
            .unwrap_or_else(|| errors::internal("missing relation", "task table", ""));
            client_run(&format!(
                "DROP TRIGGER orch_lease_bypass_guard ON {qualified}"
            ));
        }
    });
}

/// Runs a utility statement (DDL: nothing to plan and keep).
fn client_run(sql: &str) {
    Spi::run(sql).unwrap_or_else(|error| errors::internal("cannot run", sql, error));
}

/// Registers the allowed stage transitions of a task table (omitted: the only one registered), each
/// written `'from -> to'`, and its terminal stages (which no transition may leave). Replaces that
/// table's earlier graph, no other's; an empty list removes it. With a graph, a CAS
/// whose (expected, new) pair is not in it answers `invalid_transition` and writes nothing; so does a
/// CAS out of a terminal stage, graph or not.
#[pg_extern(
    volatile,
    parallel_unsafe,
    requires = ["stage_rules"],
    sql = r#"
CREATE FUNCTION orch_lease.register_stage_graph(
    transitions text[],
    terminal_stages text[] DEFAULT '{}',
    task_table regclass DEFAULT NULL
) RETURNS void VOLATILE PARALLEL UNSAFE LANGUAGE c
AS 'MODULE_PATHNAME', 'register_stage_graph_wrapper';
"#
)]
fn register_stage_graph(
    transitions: Option<Vec<Option<String>>>,
    terminal_stages: default!(Option<Vec<Option<String>>>, "'{}'"),
    fcinfo: pg_sys::FunctionCallInfo,
) {
    let task_table = task_table::argument(fcinfo, 2);
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
    // Every stage named must be a value of the stage column's type (an enum label it has), and is
    // stored as that type writes it. Read by the base type: a domain's CHECK is the table owner's code,
    // which an admin registering the graph must not run.
    let table = task_table::task_table(task_table);
    // SAFETY: a catalog cache look-up of the described (so existing) stage column's type.
    let stage_type = unsafe { pg_sys::getBaseType(table.stage_type) };
    let stage = |argument: &'static str, stage: &str| {
        errors::bounded_present(argument, Some(stage));
        task_table::output(task_table::typed(argument, stage, stage_type, -1))
    };
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(from, to)| (stage("transitions", from), stage("transitions", to)))
        .collect();
    let terminal: Vec<String> = terminal
        .iter()
        .map(|terminal| stage("terminal_stages", terminal))
        .collect();
    if let Some((from, to)) = pairs.iter().find(|(from, _)| terminal.contains(from)) {
        errors::raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!(
                "orch_lease: terminal stage \"{from}\" has a transition out of it (to \"{to}\")"
            ),
        );
    }
    // No transaction that checked by the graph before is still open, none checks by it meanwhile.
    task_table::lock_out_calls();
    owner::as_owner(|| replace_stage_graph(table.relid, &pairs, terminal, stage_type));
}

fn replace_stage_graph(
    relid: pg_sys::Oid,
    pairs: &[(String, String)],
    terminal: Vec<String>,
    stage_type: pg_sys::Oid,
) {
    let froms: Vec<&str> = pairs.iter().map(|(from, _)| from.as_str()).collect();
    let tos: Vec<&str> = pairs.iter().map(|(_, to)| to.as_str()).collect();
    Spi::connect(|client| {
        forget_stage_graph(client, relid);
        plans::run(
            client,
            "INSERT INTO orch_lease.stage_transition (from_stage, to_stage, task_table)
             SELECT DISTINCT f, t, $3 FROM unnest($1::text[], $2::text[]) u (f, t)",
            &[froms.into(), tos.into(), TableArg(relid).into()],
        );
        plans::run(
            client,
            "INSERT INTO orch_lease.terminal_stage (stage, task_table)
             SELECT DISTINCT s, $2 FROM unnest($1::text[]) u (s)",
            &[terminal.into(), TableArg(relid).into()],
        );
        // Where each named label sits in an enum stage type: a label renamed and its name given to another
        // keeps every name the graph has, but not its place (red team F12).
        plans::run(
            client,
            "INSERT INTO orch_lease.stage_label (stage, rank, task_table)
             SELECT e.enumlabel, e.rank, $2
               FROM (SELECT enumlabel::pg_catalog.text,
                            (pg_catalog.row_number() OVER (ORDER BY enumsortorder))::integer AS rank
                       FROM pg_catalog.pg_enum WHERE enumtypid OPERATOR(pg_catalog.=) $1) e
              WHERE e.enumlabel OPERATOR(pg_catalog.=) ANY (
                    SELECT from_stage FROM orch_lease.stage_transition WHERE task_table = $2
                    UNION SELECT to_stage FROM orch_lease.stage_transition WHERE task_table = $2
                    UNION SELECT stage FROM orch_lease.terminal_stage WHERE task_table = $2)",
            &[stage_type.into(), TableArg(relid).into()],
        );
    });
    task_table::forget_everywhere("orch_lease.stage_transition");
}

/// Deletes `relid`'s stage graph: its transitions, terminal stages and labels' places. Run as the owner.
pub fn forget_stage_graph(client: &SpiClient<'_>, relid: pg_sys::Oid) {
    for graph in [
        "DELETE FROM orch_lease.stage_transition WHERE task_table = $1",
        "DELETE FROM orch_lease.terminal_stage WHERE task_table = $1",
        "DELETE FROM orch_lease.stage_label WHERE task_table = $1",
    ] {
        plans::run(client, graph, &[TableArg(relid).into()]);
    }
}

extension_sql!(
    r#"
COMMENT ON FUNCTION orch_lease.register_stage_graph(text[], text[], regclass) IS
    'Registers a task table''s allowed transitions (''from -> to'') and terminal stages; an empty list removes its graph.';
COMMENT ON FUNCTION orch_lease.install_bypass_guard(text, regclass) IS
    'Installs the bypass guard on a registered task table (warn or reject), or removes it (off); the caller must own the table.';
"#,
    name = "stage_rules_comments",
    requires = [register_stage_graph, install_bypass_guard]
);
