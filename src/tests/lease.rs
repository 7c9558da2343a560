//! In-process tests of `lease`; pgrx runs them from the SQL schema `tests`.
#[pgrx::pg_schema]
mod tests {
    use crate::tests::*;

    #[pg_test]
    fn acquire_grants_new_leases_with_ever_larger_tokens() {
        let first = token_of("job-1", "monitor", "boot-a");
        let second = token_of("job-2", "monitor", "boot-a");
        assert!(second > first);
        assert!(one::<bool>(&format!(
            "SELECT orch_lease.transition_lease_release('job-1', {first})"
        ))
        .unwrap());
        let third = token_of("job-1", "webhook", "boot-b");
        assert!(third > second, "a re-grant gets a new, larger token");
        assert_eq!(count("orch_lease.transition_lease"), 2);
    }

    #[pg_test]
    fn a_second_actor_is_refused_with_the_holder() {
        let token = token_of("job-1", "monitor", "boot-a");
        let row = one::<String>(
            "SELECT concat_ws('|', acquired::text, outcome, (token IS NULL)::text, holder, holder_pid,
                              holder_boot_id, (held_since IS NOT NULL)::text)
               FROM orch_lease.transition_lease_acquire('job-1', 'reconciler', 7, 'boot-b')",
        )
        .unwrap();
        assert_eq!(row, "false|held|true|monitor|4242|boot-a|true");
        assert_eq!(
            one::<i64>("SELECT token FROM orch_lease.transition_lease"),
            Some(token)
        );
    }

    #[pg_test]
    fn held_says_whether_the_caller_still_holds_its_lease() {
        let token = token_of("job-1", "monitor", "boot-a");
        let held = |token: &str| {
            one::<bool>(&format!(
                "SELECT orch_lease.transition_lease_held('job-1', {token})"
            ))
            .unwrap()
        };
        assert!(held(&token.to_string()));
        assert!(!held(&(token + 1).to_string()), "another token");
        assert!(!held("NULL"), "no token");
        run("CREATE ROLE other IN ROLE orch_lease_actor");
        run("SET LOCAL ROLE other");
        assert!(
            !held(&token.to_string()),
            "another role's lease is not held by us"
        );
        run("RESET ROLE");
        run("SELECT orch_lease.transition_lease_force_release('job-1')");
        assert!(!held(&token.to_string()), "taken away");
    }

    #[pg_test]
    fn the_same_owner_asking_twice_is_held_too() {
        token_of("job-1", "monitor", "boot-a");
        assert_eq!(acquire("job-1", "monitor", "boot-a"), "held||monitor");
    }

    #[pg_test]
    fn a_lease_of_a_superseded_boot_is_reclaimed_and_logged() {
        run("SELECT * FROM orch_lease.transition_lease_recover('boot-a', 'orchestrator')");
        let old = token_of("job-1", "monitor", "boot-a");
        // The boot is superseded but its lease not yet released (recover releases in the same
        // transaction; this is the backstop for a lease that outlived it).
        run("UPDATE orch_lease.boot SET superseded_at = now(), superseded_by = 'boot-z'");
        let grant = acquire("job-1", "reaper", "boot-b");
        let mut parts = grant.split('|');
        assert_eq!(parts.next(), Some("reclaimed"));
        let new: i64 = parts.next().unwrap().parse().unwrap();
        assert!(new > old);
        assert_eq!(
            parts.next(),
            Some("monitor"),
            "the grant names the previous holder"
        );
        assert_eq!(
            one::<String>("SELECT concat_ws('|', owner, token) FROM orch_lease.transition_lease"),
            Some(format!("reaper|{new}"))
        );
        assert_eq!(
            one::<String>(
                &format!("SELECT concat_ws('|', event, work_item, old_owner, old_token, new_owner, new_token)
                   FROM {TAKEOVERS}")
            ),
            Some(format!("reclaimed|job-1|monitor|{old}|reaper|{new}"))
        );
    }

    #[pg_test]
    fn a_superseded_caller_gets_nothing() {
        run("SELECT * FROM orch_lease.transition_lease_recover('boot-a', 'orchestrator')");
        run("SELECT * FROM orch_lease.transition_lease_recover('boot-b', 'orchestrator')");
        assert_eq!(acquire("job-1", "monitor", "boot-a"), "superseded||");
        assert_eq!(count("orch_lease.transition_lease"), 0);
        token_of("job-1", "monitor", "boot-b");
    }

    #[pg_test]
    fn release_frees_only_the_exact_lease() {
        let token = token_of("job-1", "monitor", "boot-a");
        let release = |token: &str| {
            one::<bool>(&format!(
                "SELECT orch_lease.transition_lease_release('job-1', {token})"
            ))
            .unwrap()
        };
        assert!(
            !release(&(token + 1).to_string()),
            "a wrong token frees nothing"
        );
        assert!(!release("NULL"), "a NULL token frees nothing");
        assert!(!release("-1"));
        assert!(!release(&i64::MAX.to_string()));
        assert_eq!(count("orch_lease.transition_lease"), 1);
        assert!(release(&token.to_string()));
        assert!(
            !release(&token.to_string()),
            "the second release finds nothing"
        );
        assert_eq!(count("orch_lease.transition_lease"), 0);
    }

    #[pg_test]
    fn a_stale_token_after_a_re_acquire_frees_nothing() {
        let old = token_of("job-1", "monitor", "boot-a");
        run(&format!(
            "SELECT orch_lease.transition_lease_release('job-1', {old})"
        ));
        let new = token_of("job-1", "webhook", "boot-b");
        assert_eq!(
            one::<bool>(&format!(
                "SELECT orch_lease.transition_lease_release('job-1', {old})"
            )),
            Some(false)
        );
        assert_eq!(
            one::<i64>("SELECT token FROM orch_lease.transition_lease"),
            Some(new)
        );
    }

    #[pg_test]
    fn force_release_with_an_expected_token_frees_only_that_lease() {
        let token = token_of("job-1", "monitor", "boot-a");
        let forced = |args: String| {
            one::<bool>(&format!(
                "SELECT orch_lease.transition_lease_force_release({args})"
            ))
            .unwrap()
        };
        assert!(
            !forced(format!("'job-1', {}", token + 1)),
            "a re-acquired lease is never freed"
        );
        assert_eq!(count("orch_lease.transition_lease"), 1);
        assert_eq!(count(TAKEOVERS), 0);
        assert!(forced(format!("'job-1', {token}, 'stuck since Tuesday'")));
        assert_eq!(
            one::<String>(&format!(
                "SELECT concat_ws('|', event, old_owner, old_token, reason) FROM {TAKEOVERS}"
            )),
            Some(format!("forced|monitor|{token}|stuck since Tuesday"))
        );
        assert!(!forced("'job-1'".into()), "nothing left to free");
    }

    #[pg_test]
    fn force_release_without_a_token_frees_whatever_is_held() {
        token_of("job-1", "monitor", "boot-a");
        assert_eq!(
            one::<bool>("SELECT orch_lease.transition_lease_force_release('job-1')"),
            Some(true)
        );
        assert_eq!(
            one::<String>(&format!("SELECT reason FROM {TAKEOVERS}")),
            Some("manual".into())
        );
        assert_eq!(count("orch_lease.transition_lease"), 0);
    }

    #[pg_test]
    fn bad_input_is_refused_with_a_sqlstate_naming_the_argument() {
        use PgSqlErrorCode::*;
        let acquire = "SELECT orch_lease.transition_lease_acquire";
        assert_error(
            &format!("{acquire}(NULL, 'o', 1, 'b')"),
            ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "work_item must not be NULL",
        );
        assert_error(
            &format!("{acquire}('', 'o', 1, 'b')"),
            ERRCODE_INVALID_PARAMETER_VALUE,
            "work_item must not be empty",
        );
        assert_error(
            &format!("{acquire}('  ', 'o', 1, 'b')"),
            ERRCODE_INVALID_PARAMETER_VALUE,
            "work_item must not be empty",
        );
        assert_error(
            &format!("{acquire}('j', NULL, 1, 'b')"),
            ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "owner must not be NULL",
        );
        assert_error(
            &format!("{acquire}('j', 'o', NULL, 'b')"),
            ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "owner_pid must not be NULL",
        );
        assert_error(
            &format!("{acquire}('j', 'o', -5, 'b')"),
            ERRCODE_INVALID_PARAMETER_VALUE,
            "owner_pid must be a positive",
        );
        assert_error(
            &format!("{acquire}('j', 'o', 1, '')"),
            ERRCODE_INVALID_PARAMETER_VALUE,
            "owner_boot_id must not be empty",
        );
        assert_error(
            &format!("{acquire}(repeat('x', 1025), 'o', 1, 'b')"),
            ERRCODE_STRING_DATA_RIGHT_TRUNCATION,
            "work_item is too long",
        );
        assert_error(
            "SELECT orch_lease.transition_lease_release(NULL, 1)",
            ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "work_item must not be NULL",
        );
        assert_error(
            "SELECT orch_lease.transition_lease_force_release('j', NULL, NULL)",
            ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "reason must not be NULL",
        );
        assert_eq!(
            count("orch_lease.transition_lease"),
            0,
            "nothing was written"
        );
    }

    #[pg_test]
    fn odd_but_valid_text_is_just_text() {
        let item = "tâche-🚀-'; DROP TABLE orch_lease.transition_lease; --";
        let quoted = item.replace('\'', "''");
        token_of(&quoted, "wébhook", "boot-Ω");
        assert_eq!(
            one::<String>("SELECT work_item FROM orch_lease.transition_lease"),
            Some(item.into())
        );
    }

    #[pg_test]
    fn the_status_view_reports_age_and_liveness() {
        run("SELECT * FROM orch_lease.transition_lease_recover('boot-a', 'orchestrator', 100)");
        token_of("live-job", "monitor", "boot-a");
        token_of("unknown-job", "monitor", "boot-never-registered");
        token_of("stale-job", "monitor", "boot-a");
        run("UPDATE orch_lease.transition_lease SET owner_boot_id = 'boot-old' WHERE work_item = 'stale-job'");
        run("INSERT INTO orch_lease.boot VALUES ('boot-old', 'orchestrator', 99, now(), now(), 'boot-a')");
        assert_eq!(
            one::<String>(
                "SELECT string_agg(concat_ws(':', work_item, liveness, coalesce(instance, '-'), (age_s >= 0)::text), ' '
                                   ORDER BY work_item)
                   FROM orch_lease.transition_lease_status"
            ),
            Some("live-job:live:orchestrator:true stale-job:stale:orchestrator:true unknown-job:unknown:-:true".into())
        );
        assert_error(
            "DELETE FROM orch_lease.transition_lease_status",
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "cannot delete from view",
        );
    }
}
