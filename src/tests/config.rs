//! In-process tests of `config`; pgrx runs them from the SQL schema `tests`.
#[pgrx::pg_schema]
mod tests {
    use crate::tests::*;

    #[pg_test]
    fn history_retention_is_checked_when_it_is_set() {
        for bad in ["banana", "-1 day", "1 day ago"] {
            assert_error(
                &format!("SET LOCAL orch_lease.history_retention = '{bad}'"),
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                "invalid value for parameter",
            );
        }
        run("SET LOCAL orch_lease.history_retention = '12 hours'");
        assert_eq!(
            one::<String>("SHOW orch_lease.history_retention"),
            Some("12 hours".into())
        );
    }

    #[pg_test]
    fn kill_switch_off_grants_without_writing() {
        run("SET LOCAL orch_lease.enabled = off");
        assert_eq!(
            one::<String>(
                "SELECT concat_ws('|', acquired::text, outcome, coalesce(token::text, 'null'))
                   FROM orch_lease.transition_lease_acquire('job-1', 'monitor', 1, 'boot-a')"
            ),
            Some("true|disabled|null".into())
        );
        assert_eq!(count("orch_lease.transition_lease"), 0);
    }

    #[pg_test]
    fn kill_switch_off_makes_the_cas_an_unconditional_write() {
        tasks("text", &[(1, "review")]);
        run("SET LOCAL orch_lease.enabled = off");
        assert_eq!(
            cas("orch_lease.update_task_stage_cas('1', 'queued', 'merged')"),
            "true|unconditional|"
        );
        assert_eq!(
            stage_of(1),
            "merged",
            "written although the expected stage did not match"
        );
        assert_eq!(
            cas("orch_lease.commit_stage_cas('1', 12345, 'queued', 'done')"),
            "true|unconditional|"
        );
        assert_eq!(stage_of(1), "done", "written although no lease was held");
        assert_eq!(
            cas("orch_lease.update_task_stage_cas('2', 'queued', 'merged')"),
            "false|not_found|"
        );
    }

    #[pg_test]
    fn scopes_limit_what_is_leased() {
        run("SET LOCAL orch_lease.scopes = 'orchestrator, billing'");
        let outcome = |scope: &str| {
            one::<String>(&format!(
                "SELECT outcome FROM orch_lease.transition_lease_acquire('job-' || coalesce({scope}, 'none'),
                                                                         'o', 1, 'b', {scope})"
            ))
            .unwrap()
        };
        assert_eq!(outcome("'enduro'"), "out_of_scope");
        assert_eq!(outcome("'billing'"), "acquired");
        assert_eq!(
            outcome("NULL"),
            "acquired",
            "an unscoped item is always covered"
        );
        assert_eq!(
            count("orch_lease.transition_lease WHERE scope = 'enduro'"),
            0
        );
        run("SET LOCAL orch_lease.scopes = ''");
        assert_eq!(
            outcome("'enduro'"),
            "acquired",
            "an empty list covers every scope"
        );
    }

    #[pg_test]
    fn an_ordinary_role_cannot_turn_the_kill_switch_off() {
        run("CREATE ROLE plain_actor");
        run("SET LOCAL ROLE plain_actor");
        assert_error(
            "SET orch_lease.enabled = off",
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            "permission denied",
        );
        assert_error(
            "SET orch_lease.scopes = 'nothing'",
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            "permission denied",
        );
        run("RESET ROLE");
        assert_eq!(one::<String>("SHOW orch_lease.enabled"), Some("on".into()));
    }
}
