//! Least privilege. Two roles, created when missing (roles are cluster-wide and outlive the extension):
//! - `orch_lease_actor`: acquire, release, the stage CAS and commit, recover of its own instances,
//!   liveness, metrics, and reading the status view and history of its own role (tokens are
//!   capabilities: an actor never reads another role's);
//! - `orch_lease_admin`: everything an actor may, plus force_release, recover of any instance, reap,
//!   prune, the registrations, the kill-switch (`set_enabled`), and reading every lease table.
//!
//! PUBLIC gets nothing, and nobody but the extension's owner writes the lease tables: the functions do
//! it for their callers (`owner::as_owner`), each only in the way it is meant to. The stage CAS writes
//! the application's task table with the caller's own privileges and row-level security. `pg_monitor`
//! may read the status view and the metrics, for postgres_exporter. Nobody but the extension's owner
//! executes the bypass guard, so only `install_bypass_guard` attaches it, to the registered table.
use pgrx::prelude::*;

extension_sql!(
    r#"
DO $$
BEGIN
    -- The schema must be the installer's: a schema someone else created beforehand is theirs to rename
    -- or fill, and every orch_lease statement runs in it as the extension's owner.
    IF (SELECT nspowner FROM pg_catalog.pg_namespace WHERE nspname OPERATOR(pg_catalog.=) 'orch_lease')
       OPERATOR(pg_catalog.<>) (SELECT oid FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) current_user) THEN
        RAISE EXCEPTION 'orch_lease: the schema orch_lease exists and belongs to another role'
              USING ERRCODE = '42501',
                    HINT = 'Drop or rename that schema (or have its owner give it to you), then CREATE EXTENSION orch_lease.';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'orch_lease_actor') THEN
        CREATE ROLE orch_lease_actor NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'orch_lease_admin') THEN
        CREATE ROLE orch_lease_admin NOLOGIN;
    END IF;
    IF NOT pg_catalog.pg_has_role('orch_lease_admin', 'orch_lease_actor', 'MEMBER') THEN
        GRANT orch_lease_actor TO orch_lease_admin;
    END IF;
END
$$;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA orch_lease FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA orch_lease FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA orch_lease FROM PUBLIC;
GRANT USAGE ON SCHEMA orch_lease TO orch_lease_actor, pg_monitor;

GRANT EXECUTE ON FUNCTION
    orch_lease.transition_lease_acquire(text, text, integer, text, text, regclass),
    orch_lease.transition_lease_acquire_session(text, text, text, regclass),
    orch_lease.transition_lease_acquire(bigint, text, integer, text, text, regclass),
    orch_lease.transition_lease_acquire_session(bigint, text, text, regclass),
    orch_lease.transition_lease_release(text, bigint, regclass),
    orch_lease.transition_lease_held(text, bigint, regclass),
    orch_lease.update_task_stage_cas(text, text, text, bigint, regclass),
    orch_lease.commit_stage_cas(text, bigint, text, text, regclass),
    orch_lease.transition_lease_recover(text, text, integer),
    orch_lease.transition_lease_takeover(text, text, integer),
    orch_lease.transition_lease_liveness(text, regclass),
    orch_lease.work_item_key(text, regclass)
    TO orch_lease_actor;
GRANT EXECUTE ON FUNCTION
    orch_lease.session_alive(text),
    orch_lease.boot_liveness(text),
    orch_lease.transition_lease_metrics(),
    orch_lease.kill_switch()
    TO orch_lease_actor, pg_monitor;
GRANT SELECT ON
    orch_lease.boot, orch_lease.task_table, orch_lease.stage_transition, orch_lease.terminal_stage,
    orch_lease.transition_lease_status, orch_lease.lease_history
    TO orch_lease_actor;
GRANT SELECT ON orch_lease.transition_lease_status, orch_lease.lease_history, orch_lease.boot TO pg_monitor;

GRANT EXECUTE ON FUNCTION
    orch_lease.transition_lease_force_release(text, bigint, text, regclass),
    orch_lease.transition_lease_hand_over(text, text),
    orch_lease.transition_lease_reap(integer),
    orch_lease.transition_lease_prune(interval),
    orch_lease.register_task_table(regclass, name, name, boolean),
    orch_lease.unregister_task_table(regclass),
    orch_lease.register_stage_graph(text[], text[], regclass),
    orch_lease.install_bypass_guard(text, regclass),
    orch_lease.set_enabled(boolean, text),
    orch_lease.adopt_moved_data(bigint)
    TO orch_lease_admin;
GRANT SELECT ON
    orch_lease.transition_lease, orch_lease.lease_event, orch_lease.event_counter, orch_lease.bypass_log,
    orch_lease.kill_switch
    TO orch_lease_admin;
"#,
    name = "roles",
    finalize
);
