//! In-process tests of `roles`: what an actor, an admin and PUBLIC may do, and that orch_lease never
//! becomes a way around the application's own grants or a hostile search_path.
#[pgrx::pg_schema]
mod tests {
    use crate::tests::*;

    /// Tasks 1..3 queued, and a role `app` that is an orch_lease actor with the given task grants.
    fn app_with(task_grants: &str) {
        tasks("text", &[(1, "queued"), (2, "queued"), (3, "queued")]);
        run("CREATE ROLE app IN ROLE orch_lease_actor");
        if !task_grants.is_empty() {
            run(&format!("GRANT {task_grants} ON public.tasks TO app"));
        }
        run("GRANT USAGE ON SCHEMA public TO app");
    }

    fn denied(sql: &str) {
        assert_error(
            sql,
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            "permission denied",
        );
    }

    #[pg_test]
    fn an_actor_runs_the_whole_cycle() {
        app_with("SELECT, UPDATE");
        run("SET LOCAL ROLE app");
        let token = token_of("1", "monitor", "boot-a");
        assert_eq!(
            cas(&format!(
                "orch_lease.commit_stage_cas('1', {token}, 'queued', 'merged')"
            )),
            "true|applied|"
        );
        assert_eq!(
            acquire("2", "monitor", "boot-a").split('|').next(),
            Some("acquired")
        );
        assert_eq!(count("orch_lease.transition_lease_status"), 1);
        assert_eq!(
            one::<String>("SELECT orch_lease.transition_lease_liveness('2')"),
            Some("unknown".into())
        );
        assert!(count("orch_lease.transition_lease_metrics()") > 10);
        assert_eq!(
            one::<String>(
                "SELECT by_role::text FROM orch_lease.lease_history WHERE event = 'cas_applied'"
            ),
            Some("app".into()),
            "the history names the caller, not the extension's owner"
        );
    }

    #[pg_test]
    fn an_actor_cannot_take_leases_away_write_the_tables_or_switch_orch_lease_off() {
        app_with("SELECT, UPDATE");
        let token = token_of("1", "monitor", "boot-a");
        run("SET LOCAL ROLE app");
        for call in [
            format!("SELECT orch_lease.transition_lease_force_release('1', {token})"),
            "SELECT * FROM orch_lease.transition_lease".into(),
            "SELECT * FROM orch_lease.lease_event".into(),
            "SELECT * FROM orch_lease.transition_lease_reap(1)".into(),
            "SELECT orch_lease.transition_lease_prune('0 seconds')".into(),
            "SELECT orch_lease.register_task_table('public.tasks')".into(),
            "SELECT orch_lease.register_stage_graph('{\"queued -> merged\"}')".into(),
            "SELECT orch_lease.install_bypass_guard('off')".into(),
            "DELETE FROM orch_lease.transition_lease".into(),
            "UPDATE orch_lease.transition_lease SET owner = 'app'".into(),
            "INSERT INTO orch_lease.boot (boot_id, instance) VALUES ('b', 'i')".into(),
            "DELETE FROM orch_lease.lease_event".into(),
            "UPDATE orch_lease.task_table SET id_column = 'stage'".into(),
            "SELECT nextval('orch_lease.token_seq')".into(),
            "SET orch_lease.enabled = off".into(),
            "SELECT set_config('orch_lease.history', 'takeovers', true)".into(),
        ] {
            denied(&call);
        }
        run("RESET ROLE");
        assert_eq!(
            count("orch_lease.transition_lease"),
            1,
            "the lease is still held"
        );
    }

    #[pg_test]
    fn public_gets_nothing() {
        app_with("");
        run("CREATE ROLE stranger");
        run("SET LOCAL ROLE stranger");
        denied("SELECT * FROM orch_lease.transition_lease_acquire('1', 'x', 1, 'b')");
        denied("SELECT * FROM orch_lease.transition_lease_status");
        run("RESET ROLE");
        assert_eq!(
            count(
                "pg_proc p WHERE p.pronamespace = 'orch_lease'::regnamespace
                   AND (p.proacl IS NULL OR EXISTS (SELECT FROM aclexplode(p.proacl) a WHERE a.grantee = 0))"
            ),
            0,
            "no orch_lease function is executable by PUBLIC"
        );
    }

    #[pg_test]
    fn the_cas_writes_with_the_callers_own_privileges() {
        app_with("SELECT, UPDATE");
        run("SET LOCAL ROLE app");
        let token = token_of("1", "monitor", "boot-a");
        run("RESET ROLE");
        run("REVOKE UPDATE ON public.tasks FROM app");
        run("SET LOCAL ROLE app");
        denied(&format!(
            "SELECT * FROM orch_lease.commit_stage_cas('1', {token}, 'queued', 'merged')"
        ));
        denied("SELECT * FROM orch_lease.update_task_stage_cas('1', 'queued', 'merged')");
        run("RESET ROLE");
        assert_eq!(stage_of(1), "queued");
        assert_eq!(
            count("orch_lease.transition_lease"),
            1,
            "a denied commit releases nothing"
        );
    }

    #[pg_test]
    fn row_level_security_on_the_task_table_still_applies() {
        app_with("SELECT, UPDATE");
        run("ALTER TABLE public.tasks ENABLE ROW LEVEL SECURITY");
        run("CREATE POLICY only_odd ON public.tasks TO app USING (id % 2 = 1)");
        run("SET LOCAL ROLE app");
        assert_eq!(
            cas("orch_lease.update_task_stage_cas('2', 'queued', 'merged')"),
            "false|not_found|",
            "a row the policy hides is not there for the CAS either"
        );
        assert_eq!(
            cas("orch_lease.update_task_stage_cas('3', 'queued', 'merged')"),
            "true|applied|"
        );
        run("RESET ROLE");
        assert_eq!(
            (stage_of(2), stage_of(3)),
            ("queued".into(), "merged".into())
        );
    }

    #[pg_test]
    fn every_function_says_what_it_is_for() {
        assert_eq!(
            count(
                "pg_proc p WHERE p.pronamespace = 'orch_lease'::regnamespace
                   AND obj_description(p.oid, 'pg_proc') IS NULL"
            ),
            0,
            "\\df+ shows a description for every orch_lease function"
        );
    }

    #[pg_test]
    fn security_definer_functions_pin_their_search_path() {
        assert!(count("pg_proc WHERE pronamespace = 'orch_lease'::regnamespace AND prosecdef") > 0);
        assert_eq!(
            count(
                "pg_proc WHERE pronamespace = 'orch_lease'::regnamespace AND prosecdef
                   AND NOT coalesce(proconfig @> '{\"search_path=pg_catalog, pg_temp\"}', false)"
            ),
            0
        );
    }

    #[pg_test]
    fn a_hostile_search_path_never_runs_with_orch_leases_privileges() {
        app_with("SELECT, UPDATE");
        // A text = text operator that records who ran it, planted ahead of pg_catalog.
        run("CREATE SCHEMA evil");
        run("CREATE TABLE evil.hits (who name)");
        run("GRANT USAGE ON SCHEMA evil TO PUBLIC");
        run("GRANT INSERT ON evil.hits TO PUBLIC");
        run("CREATE FUNCTION evil.eq(text, text) RETURNS boolean LANGUAGE plpgsql AS
             $$ BEGIN INSERT INTO evil.hits VALUES (current_user); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$");
        run("CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.eq)");
        run("SET LOCAL search_path = evil, pg_catalog, public");
        run("SET LOCAL ROLE app");
        run("SELECT * FROM orch_lease.transition_lease_recover('boot-a', 'orchestrator')");
        let token = token_of("1", "monitor", "boot-a");
        acquire("1", "webhook", "boot-b");
        run("SELECT orch_lease.transition_lease_liveness('1')");
        run(&format!(
            "SELECT orch_lease.transition_lease_release('1', {token})"
        ));
        run("SELECT count(*) FROM orch_lease.transition_lease_metrics()");
        run("RESET ROLE");
        run("SELECT * FROM orch_lease.transition_lease_reap(3600)");
        run("SELECT orch_lease.transition_lease_prune()");
        assert_eq!(
            count("evil.hits"),
            0,
            "orch_lease's own statements never resolve an operator through the caller's search_path"
        );
        assert_eq!(
            one::<bool>("SELECT 'a' = 'a'"),
            Some(true),
            "while the planted operator is live for the caller's own SQL"
        );
        assert_eq!(count("evil.hits"), 1);
    }

    #[pg_test]
    fn an_error_inside_orch_lease_does_not_leave_its_caller_behind() {
        run("CREATE ROLE oncall IN ROLE orch_lease_admin");
        run("SELECT * FROM orch_lease.transition_lease_recover('boot-1', 'orchestrator')");
        run("SELECT * FROM orch_lease.transition_lease_recover('boot-2', 'orchestrator')");
        run("SET LOCAL ROLE oncall");
        assert_error(
            "SELECT * FROM orch_lease.transition_lease_recover('boot-1', 'orchestrator')",
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "was superseded",
        );
        run("RESET ROLE");
        token_of("job-1", "monitor", "boot-2");
        assert_eq!(
            one::<bool>("SELECT by_role = current_user FROM orch_lease.lease_event WHERE event = 'acquired'"),
            Some(true),
            "the next call's history names its own caller"
        );
    }
}
