//! In-process tests of `events`: the lease history, its retention and the metrics.
#[pgrx::pg_schema]
mod tests {
    use crate::tests::*;

    /// The history as `event:outcome` pairs, oldest first.
    fn history() -> String {
        one::<String>(
            "SELECT coalesce(string_agg(event || ':' || outcome, ' ' ORDER BY event_id), '')
               FROM orch_lease.lease_event",
        )
        .unwrap()
    }

    fn metric(name: &str, label: &str) -> f64 {
        one::<f64>(&format!(
            "SELECT value FROM orch_lease.transition_lease_metrics() WHERE metric = '{name}' AND label = '{label}'"
        ))
        .unwrap_or_else(|| panic!("no metric {name}{{{label}}}"))
    }

    /// One of everything: grant, refusal, CAS applied and lost, release, forced release.
    fn a_day_of_work() -> i64 {
        tasks(
            "text",
            &[
                (1, "queued"),
                (2, "queued"),
                (3, "queued"),
                (4, "queued"),
                (5, "queued"),
            ],
        );
        forget_counts();
        the_work()
    }

    /// Every count gone: the sequences that count events are not transactional, but restarting one
    /// is, and is undone with the test.
    fn forget_counts() {
        run("DO $$ DECLARE c regclass; BEGIN
                 FOR c IN SELECT counter FROM orch_lease.event_counter LOOP
                     EXECUTE format('ALTER SEQUENCE %s RESTART', c);
                 END LOOP;
             END $$");
    }

    fn the_work() -> i64 {
        let token = token_of("1", "monitor", "boot-a");
        acquire("1", "webhook", "boot-b");
        cas(&format!(
            "orch_lease.commit_stage_cas('1', {token}, 'queued', 'merging')"
        ));
        cas("orch_lease.update_task_stage_cas('2', 'done', 'merging')");
        let other = token_of("2", "reconciler", "boot-c");
        run(&format!(
            "SELECT orch_lease.transition_lease_release('2', {other})"
        ));
        token_of("3", "monitor", "boot-a");
        run("SELECT orch_lease.transition_lease_force_release('3', NULL, 'stuck')");
        token
    }

    /// The `_total` metrics, as one string.
    fn counters() -> Option<String> {
        one::<String>(
            "SELECT string_agg(metric || label || value, ',' ORDER BY metric, label)
               FROM orch_lease.transition_lease_metrics() WHERE metric LIKE '%_total'",
        )
    }

    #[pg_test]
    fn the_default_history_records_every_change_but_not_the_held_refusal() {
        a_day_of_work();
        assert_eq!(
            history(),
            "acquired:acquired cas_applied:applied cas_lost:stage_mismatch \
             acquired:acquired released:released acquired:acquired forced:forced"
        );
        assert_eq!(
            metric("orch_lease_refusals_total", "held"),
            1.0,
            "the refusal is counted all the same"
        );
    }

    #[pg_test]
    fn the_counters_are_the_same_whatever_the_history_keeps() {
        a_day_of_work();
        let default = counters();
        forget_counts();
        run("SET LOCAL orch_lease.history = 'takeovers'");
        a_day_of_work_again();
        assert_eq!(counters(), default, "takeovers only");
        forget_counts();
        run("SET LOCAL orch_lease.history = 'all'");
        a_day_of_work_again();
        assert_eq!(counters(), default, "all");
    }

    /// `a_day_of_work` once more, on the same tasks and boots.
    fn a_day_of_work_again() {
        run("TRUNCATE orch_lease.transition_lease");
        run("UPDATE tasks SET stage = 'queued'");
        the_work();
    }

    #[pg_test]
    fn the_full_history_records_every_grant_refusal_release_takeover_and_cas() {
        run("SET LOCAL orch_lease.history = 'all'");
        let token = a_day_of_work();
        assert_eq!(
            history(),
            "acquired:acquired refused:held cas_applied:applied cas_lost:stage_mismatch \
             acquired:acquired released:released acquired:acquired forced:forced"
        );
        assert_eq!(
            one::<String>(
                "SELECT concat_ws('|', actor, old_owner, old_token::text, new_owner) FROM orch_lease.lease_event
                  WHERE event = 'refused'"
            ),
            Some(format!("webhook|monitor|{token}")),
            "a refusal names who asked and who holds the lease"
        );
        assert_eq!(
            one::<String>(
                "SELECT concat_ws('|', work_item, old_token::text, stage_from, stage_to, (by_role = current_user)::text)
                   FROM orch_lease.lease_event WHERE event = 'cas_applied'"
            ),
            Some(format!("1|{token}|queued|merging|true"))
        );
    }

    #[pg_test]
    fn takeovers_only_history_skips_routine_events() {
        run("SET LOCAL orch_lease.history = 'takeovers'");
        a_day_of_work();
        assert_eq!(history(), "forced:forced");
    }

    #[pg_test]
    fn metrics_count_what_happened() {
        a_day_of_work();
        token_of("4", "monitor", "boot-a");
        for (name, label, value) in [
            ("orch_lease_grants_total", "acquired", 4.0),
            ("orch_lease_grants_total", "reclaimed", 0.0),
            ("orch_lease_refusals_total", "held", 1.0),
            ("orch_lease_refusals_total", "busy", 0.0),
            ("orch_lease_releases_total", "released", 1.0),
            ("orch_lease_reclaims_total", "manual", 1.0),
            ("orch_lease_cas_total", "applied", 1.0),
            ("orch_lease_cas_total", "stage_mismatch", 1.0),
            ("orch_lease_leases", "unknown", 1.0),
            ("orch_lease_leases", "live", 0.0),
        ] {
            assert_eq!(metric(name, label), value, "{name}{{{label}}}");
        }
        assert!(metric("orch_lease_oldest_live_lease_age_seconds", "") >= 0.0);
    }

    #[pg_test]
    fn pruning_keeps_the_counters_and_bounds_the_history() {
        a_day_of_work();
        let before = counters();
        run("UPDATE orch_lease.lease_event SET at = at - interval '30 days' WHERE event <> 'forced'");
        assert_eq!(
            one::<i64>("SELECT orch_lease.transition_lease_prune()"),
            Some(6),
            "the default retention (7 days) removes what is older"
        );
        assert_eq!(history(), "forced:forced");
        assert_eq!(before, counters(), "pruned events still count");
        assert_eq!(
            one::<i64>("SELECT orch_lease.transition_lease_prune('0 seconds')"),
            Some(1)
        );
        token_of("5", "monitor", "boot-a");
        assert_eq!(
            metric("orch_lease_grants_total", "acquired"),
            4.0,
            "and the counters go on"
        );
        run("SET LOCAL orch_lease.history_retention = '1 hour'");
        run("UPDATE orch_lease.lease_event SET at = at - interval '2 hours'");
        assert_eq!(
            one::<i64>("SELECT orch_lease.transition_lease_prune()"),
            Some(1)
        );
        assert_error(
            "SELECT orch_lease.transition_lease_prune('-1 day')",
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "older_than must not be negative",
        );
    }
}
