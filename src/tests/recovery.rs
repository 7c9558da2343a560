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
}
