//! In-process tests of `recovery`; pgrx runs them from the SQL schema `tests`.
#[pgrx::pg_schema]
mod tests {
    use crate::tests::*;

    fn recover(boot: &str) -> String {
        one::<String>(&format!(
            "SELECT coalesce(string_agg(work_item || ':' || owner_boot_id, ',' ORDER BY work_item), '')
               FROM orch_lease.transition_lease_recover('{boot}', 'orchestrator', 77)"
        ))
        .unwrap()
    }

    #[pg_test]
    fn recover_registers_the_boot_and_is_idempotent() {
        assert_eq!(recover("boot-1"), "");
        assert_eq!(
            recover("boot-1"),
            "",
            "a second call with the same boot returns nothing"
        );
        assert_eq!(
            one::<String>("SELECT concat_ws('|', instance, pid, (superseded_at IS NULL)::text) FROM orch_lease.boot"),
            Some("orchestrator|77|true".into())
        );
    }

    #[pg_test]
    fn a_boot_of_another_process_is_refused() {
        recover("boot-1"); // pid 77
        assert_error(
            "SELECT * FROM orch_lease.transition_lease_recover('boot-1', 'orchestrator', 78)",
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "is registered for pid 77, not 78",
        );
        run("SELECT * FROM orch_lease.transition_lease_recover('boot-1', 'orchestrator')");
    }

    #[pg_test]
    fn a_new_boot_supersedes_the_old_and_releases_its_leases() {
        recover("boot-1");
        token_of("job-1", "monitor", "boot-1");
        token_of("job-2", "webhook", "boot-1");
        token_of("job-3", "other-instance", "boot-x");
        assert_eq!(recover("boot-2"), "job-1:boot-1,job-2:boot-1");
        assert_eq!(
            one::<String>("SELECT string_agg(work_item, ',') FROM orch_lease.transition_lease"),
            Some("job-3".into()),
            "leases of other boots stay"
        );
        assert_eq!(
            one::<String>("SELECT superseded_by FROM orch_lease.boot WHERE boot_id = 'boot-1'"),
            Some("boot-2".into())
        );
        assert_eq!(
            count("orch_lease.lease_event WHERE event = 'reclaimed' AND reason LIKE 'recover%'"),
            2
        );
        assert_eq!(recover("boot-2"), "");
    }

    #[pg_test]
    fn a_superseded_boot_may_not_recover() {
        recover("boot-1");
        recover("boot-2");
        assert_error(
            "SELECT * FROM orch_lease.transition_lease_recover('boot-1', 'orchestrator')",
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "boot \"boot-1\" was superseded by \"boot-2\"",
        );
        assert_eq!(
            one::<String>("SELECT boot_id FROM orch_lease.boot WHERE superseded_at IS NULL"),
            Some("boot-2".into()),
            "the zombie did not supersede its successor"
        );
    }

    #[pg_test]
    fn a_boot_belongs_to_one_instance() {
        recover("boot-1");
        assert_error(
            "SELECT * FROM orch_lease.transition_lease_recover('boot-1', 'billing')",
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "registered for instance \"orchestrator\"",
        );
        assert_error(
            "SELECT * FROM orch_lease.transition_lease_recover(NULL)",
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "boot_id must not be NULL",
        );
        assert_error(
            "SELECT * FROM orch_lease.transition_lease_recover('b', '')",
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "instance must not be empty",
        );
    }

    #[pg_test]
    fn instances_recover_independently() {
        run("SELECT * FROM orch_lease.transition_lease_recover('a-1', 'alpha')");
        run("SELECT * FROM orch_lease.transition_lease_recover('b-1', 'beta')");
        token_of("job-a", "monitor", "a-1");
        token_of("job-b", "monitor", "b-1");
        run("SELECT * FROM orch_lease.transition_lease_recover('a-2', 'alpha')");
        assert_eq!(
            one::<String>("SELECT string_agg(work_item, ',') FROM orch_lease.transition_lease"),
            Some("job-b".into())
        );
        assert_eq!(count("orch_lease.boot WHERE superseded_at IS NULL"), 2);
    }

    /// A lease inserted as it would be held: `boot` need not be registered.
    fn held(item: &str, boot: &str, age: &str) {
        run(&format!(
            "INSERT INTO orch_lease.transition_lease (work_item, token, owner, owner_pid, owner_boot_id, acquired_at, task_table)
             VALUES ('{item}', nextval('orch_lease.token_seq'), 'monitor', 4242, '{boot}', clock_timestamp() - interval '{age}', '-')"
        ));
    }

    fn liveness(item: &str) -> String {
        one::<String>(&format!(
            "SELECT orch_lease.transition_lease_liveness('{item}')"
        ))
        .unwrap()
    }

    #[pg_test]
    fn reap_takes_dead_leases_and_leases_over_the_ceiling_and_leaves_the_rest() {
        recover("boot-1");
        recover("boot-2"); // boot-1 is superseded now
        held("dead", "boot-1", "1 second");
        held("old", "boot-2", "2 hours");
        held("young", "boot-2", "1 minute");
        held("unregistered", "boot-x", "1 minute");
        held("unregistered-old", "boot-x", "3 hours");
        assert_eq!(
            one::<String>(
                "SELECT string_agg(concat_ws(':', work_item, kind, owner, (age_s >= 3600 OR kind = 'stale')::text), ' ')
                   FROM orch_lease.transition_lease_reap(3600)"
            ),
            Some("dead:stale:monitor:true old:ceiling:monitor:true unregistered-old:ceiling:monitor:true".into())
        );
        assert_eq!(
            one::<String>("SELECT string_agg(work_item, ' ' ORDER BY work_item) FROM orch_lease.transition_lease"),
            Some("unregistered young".into()),
            "live or unknown leases under the ceiling stay"
        );
        assert_eq!(
            one::<String>(&format!(
                "SELECT string_agg(concat_ws(':', work_item, event, outcome, old_owner), ' ' ORDER BY work_item) FROM {TAKEOVERS}"
            )),
            Some("dead:reclaimed:stale:monitor old:reaped:ceiling:monitor unregistered-old:reaped:ceiling:monitor".into())
        );
        assert!(
            one::<String>("SELECT reason FROM orch_lease.lease_event WHERE work_item = 'old'")
                .unwrap()
                .contains("over the ceiling of 3600 s")
        );
        assert_eq!(
            one::<i64>("SELECT count(*) FROM orch_lease.transition_lease_reap(3600)"),
            Some(0),
            "a second run finds nothing"
        );
    }

    #[pg_test]
    fn reap_refuses_a_missing_or_non_positive_ceiling() {
        assert_error(
            "SELECT * FROM orch_lease.transition_lease_reap(NULL)",
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "max_running_s must not be NULL",
        );
        for bad in ["0", "-5"] {
            assert_error(
                &format!("SELECT * FROM orch_lease.transition_lease_reap({bad})"),
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                "max_running_s must be a positive number of seconds",
            );
        }
    }

    #[pg_test]
    fn liveness_says_none_live_stale_or_unknown() {
        recover("boot-1");
        recover("boot-2");
        held("stale", "boot-1", "1 second");
        held("live", "boot-2", "1 second");
        held("unknown", "boot-x", "1 second");
        run("INSERT INTO orch_lease.transition_lease (work_item, token, owner, owner_pid, owner_boot_id, task_table)
             VALUES ('gone-session', 99, 'webhook', pg_backend_pid(), 'session:' || pg_backend_pid() || ':12345', '-')");
        for item in ["none", "live", "stale", "unknown"] {
            assert_eq!(liveness(item), item);
        }
        assert_eq!(liveness("gone-session"), "stale");
        assert_error(
            "SELECT orch_lease.transition_lease_liveness(NULL)",
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "work_item must not be NULL",
        );
    }
}
