//! In-process tests of `stage_rules` (stage graph, bypass guard) and of session-bound leases.
#[pgrx::pg_schema]
mod tests {
    use crate::tests::*;

    fn graph() {
        run("CREATE TYPE public.task_stage AS ENUM ('queued', 'merged', 'rolled_back', 'done')");
        tasks("public.task_stage", &[(1, "queued"), (2, "done")]);
        run("SELECT orch_lease.register_stage_graph(
                 ARRAY['queued -> merged', 'queued -> rolled_back', 'merged -> done'], ARRAY['done'])");
    }

    #[pg_test]
    fn a_registered_graph_refuses_transitions_it_lacks() {
        graph();
        assert_eq!(
            cas("orch_lease.update_task_stage_cas('2', 'done', 'queued')"),
            "false|invalid_transition|"
        );
        assert_eq!(stage_of(2), "done", "nothing written");
        assert_eq!(
            cas("orch_lease.update_task_stage_cas('1', 'queued', 'done')"),
            "false|invalid_transition|"
        );
        assert_eq!(
            cas("orch_lease.update_task_stage_cas('1', 'queued', 'merged')"),
            "true|applied|"
        );
        assert_eq!(
            cas("orch_lease.update_task_stage_cas('1', 'merged', 'done')"),
            "true|applied|"
        );
    }

    #[pg_test]
    fn an_invalid_commit_still_ends_the_attempt() {
        graph();
        let token = token_of("2", "monitor", "boot-a");
        assert_eq!(
            cas(&format!(
                "orch_lease.commit_stage_cas('2', {token}, 'done', 'rolled_back')"
            )),
            "false|invalid_transition|"
        );
        assert_eq!(
            count("orch_lease.transition_lease"),
            0,
            "the lease is released"
        );
        assert_eq!(stage_of(2), "done");
    }

    #[pg_test]
    fn without_a_graph_or_with_the_kill_switch_off_every_transition_goes() {
        graph();
        run("SELECT orch_lease.register_stage_graph(ARRAY[]::text[])");
        assert_eq!(
            cas("orch_lease.update_task_stage_cas('2', 'done', 'queued')"),
            "true|applied|"
        );
        graph_again_and_switch_off();
    }

    fn graph_again_and_switch_off() {
        run("SELECT orch_lease.register_stage_graph(ARRAY['queued -> merged'])");
        run("SET LOCAL orch_lease.enabled = off");
        assert_eq!(
            cas("orch_lease.update_task_stage_cas('2', 'queued', 'done')"),
            "true|unconditional|"
        );
    }

    #[pg_test]
    fn a_bad_graph_is_refused() {
        use PgSqlErrorCode::*;
        graph();
        let register = "SELECT orch_lease.register_stage_graph";
        assert_error(
            &format!("{register}(ARRAY['queued -> mergd'])"),
            ERRCODE_INVALID_TEXT_REPRESENTATION,
            "transitions: invalid input value for enum",
        );
        assert_error(
            &format!("{register}(ARRAY['queued merged'])"),
            ERRCODE_INVALID_PARAMETER_VALUE,
            "is not of the form 'from -> to'",
        );
        assert_error(
            &format!("{register}(ARRAY['done -> queued'], ARRAY['done'])"),
            ERRCODE_INVALID_PARAMETER_VALUE,
            "terminal stage \"done\" has a transition out of it",
        );
        assert_error(
            &format!("{register}(NULL)"),
            ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "transitions must not be NULL",
        );
        assert_eq!(
            count("orch_lease.stage_transition"),
            3,
            "the registered graph is unchanged"
        );
    }

    #[pg_test]
    fn the_bypass_guard_warns_and_logs_in_warn_mode() {
        tasks("text", &[(1, "queued")]);
        run("SELECT orch_lease.install_bypass_guard('warn')");
        run("UPDATE public.tasks SET stage = 'merged' WHERE id = 1");
        assert_eq!(stage_of(1), "merged", "warn mode lets the write happen");
        assert_eq!(
            one::<String>(
                "SELECT concat_ws('|', task_id, old_stage, new_stage) FROM orch_lease.bypass_log"
            ),
            Some("1|queued|merged".into())
        );
        assert_eq!(
            cas("orch_lease.update_task_stage_cas('1', 'merged', 'done')"),
            "true|applied|"
        );
        assert_eq!(count("orch_lease.bypass_log"), 1, "the CAS is not a bypass");
    }

    #[pg_test]
    fn the_bypass_guard_refuses_in_reject_mode() {
        tasks("text", &[(1, "queued")]);
        run("SELECT orch_lease.install_bypass_guard('reject')");
        assert_error(
            "UPDATE public.tasks SET stage = 'merged' WHERE id = 1",
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "was written outside the stage CAS (queued -> merged)",
        );
        assert_eq!(stage_of(1), "queued");
        run("ALTER TABLE public.tasks ADD COLUMN note text");
        run("UPDATE public.tasks SET note = 'other columns are free' WHERE id = 1");
        assert_eq!(
            cas("orch_lease.update_task_stage_cas('1', 'queued', 'merged')"),
            "true|applied|"
        );
        let token = token_of("1", "monitor", "boot-a");
        assert_eq!(
            cas(&format!(
                "orch_lease.commit_stage_cas('1', {token}, 'merged', 'done')"
            )),
            "true|applied|"
        );
        run("SET LOCAL orch_lease.enabled = off");
        run("UPDATE public.tasks SET stage = 'queued' WHERE id = 1");
        assert_eq!(stage_of(1), "queued", "the kill-switch disables the guard");
        run("RESET orch_lease.enabled");
        run("SELECT orch_lease.install_bypass_guard('off')");
        run("UPDATE public.tasks SET stage = 'merged' WHERE id = 1");
        assert_eq!(count("orch_lease.bypass_log"), 0);
    }

    #[pg_test]
    fn the_bypass_guard_takes_only_known_modes() {
        tasks("text", &[(1, "queued")]);
        assert_error(
            "SELECT orch_lease.install_bypass_guard('block')",
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "mode must be off, warn or reject",
        );
    }

    #[pg_test]
    fn a_session_bound_lease_is_live_while_its_session_is() {
        let grant = one::<String>(
            "SELECT concat_ws('|', outcome, holder) FROM orch_lease.transition_lease_acquire_session('job-1', 'webhook')",
        )
        .unwrap();
        assert_eq!(grant, "acquired", "no holder to report");
        assert_eq!(
            one::<bool>("SELECT owner_pid = pg_backend_pid() AND owner_boot_id LIKE 'session:%' FROM orch_lease.transition_lease"),
            Some(true)
        );
        assert_eq!(acquire("job-1", "monitor", "boot-b"), "held||webhook");
        assert_eq!(
            one::<String>("SELECT liveness FROM orch_lease.transition_lease_status"),
            Some("live".into())
        );
    }

    #[pg_test]
    fn a_lease_of_a_gone_session_is_stale_and_reclaimed() {
        // A session that no longer exists: this backend's pid, but another start time.
        run("INSERT INTO orch_lease.transition_lease (work_item, token, owner, owner_pid, owner_boot_id, task_table)
             VALUES ('job-1', 7, 'webhook', pg_backend_pid(), 'session:' || pg_backend_pid() || ':12345', '-')");
        assert_eq!(
            one::<String>("SELECT liveness FROM orch_lease.transition_lease_status"),
            Some("stale".into())
        );
        let grant = acquire("job-1", "monitor", "boot-b");
        assert!(grant.starts_with("reclaimed|"), "{grant}");
        assert_eq!(
            one::<String>(&format!("SELECT event FROM {TAKEOVERS}")),
            Some("reclaimed".into())
        );
    }
}
