-- The transition lease: owner-exclusion on entry to a side-effectful transition.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS orch_lease CASCADE;
CREATE EXTENSION orch_lease;

-- Each process registers its incarnation once, at start.
SELECT count(*) FROM orch_lease.transition_lease_recover('monitor-boot-1', 'monitor', 101);
SELECT count(*) FROM orch_lease.transition_lease_recover('webhook-boot-1', 'webhook', 202);

-- The monitor asks for the transition of PR-130 and gets it, with a fencing token.
SELECT acquired, outcome, token FROM orch_lease.transition_lease_acquire('PR-130', 'monitor', 101, 'monitor-boot-1');

-- The webhook handler sees a live owner and does not start the heavy work at all.
SELECT acquired, outcome, token, holder, holder_pid, holder_boot_id
  FROM orch_lease.transition_lease_acquire('PR-130', 'webhook', 202, 'webhook-boot-1');

-- There is no implicit re-entry: the same owner asking again is refused too.
SELECT outcome, holder FROM orch_lease.transition_lease_acquire('PR-130', 'monitor', 101, 'monitor-boot-1');

-- Who holds what, for the people on call.
SELECT work_item, owner, owner_pid, instance, token, liveness, age_s >= 0 AS has_age
  FROM orch_lease.transition_lease_status;

-- Release needs the exact token: a stale one frees nothing and is not an error.
SELECT orch_lease.transition_lease_release('PR-130', 999);
SELECT orch_lease.transition_lease_release('PR-130', 1);
SELECT orch_lease.transition_lease_release('PR-130', 1);

-- Every grant gets a new, larger token.
SELECT outcome, token FROM orch_lease.transition_lease_acquire('PR-130', 'webhook', 202, 'webhook-boot-1');

-- The manual release: with expected_token it can never free a lease re-acquired meanwhile.
SELECT orch_lease.transition_lease_force_release('PR-130', 1, 'stuck');
SELECT orch_lease.transition_lease_force_release('PR-130', 2, 'stuck after a 900 s merge re-test');

-- The lease history: every grant, release and takeover, with who and which token. The two held
-- refusals are counted in the metrics, not recorded (orch_lease.history = changes, the default).
SELECT event, outcome, work_item, actor, new_token, old_owner, old_token, reason FROM orch_lease.lease_event ORDER BY event_id;
SELECT label, value FROM orch_lease.transition_lease_metrics() WHERE metric = 'orch_lease_refusals_total' AND value > 0;

-- Bad input is an error with a SQLSTATE that names the argument.
\set VERBOSITY terse
SELECT orch_lease.transition_lease_acquire(NULL, 'monitor', 101, 'monitor-boot-1');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT orch_lease.transition_lease_acquire('PR-131', '', 101, 'monitor-boot-1');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT orch_lease.transition_lease_acquire('PR-131', 'monitor', 0, 'monitor-boot-1');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT orch_lease.transition_lease_acquire(repeat('x', 2000), 'monitor', 101, 'monitor-boot-1');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
\set VERBOSITY default
SELECT count(*) AS leases FROM orch_lease.transition_lease;
