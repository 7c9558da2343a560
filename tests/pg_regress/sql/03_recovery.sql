-- Liveness by boot incarnation: a restart supersedes the old boot and recovers its leases.
SET client_min_messages = warning;
INSERT INTO tasks VALUES (1914, 'queued'), (1915, 'queued');
SELECT count(*) FROM orch_lease.transition_lease_recover('orchestrator-boot-1', 'orchestrator', 500);
SELECT outcome FROM orch_lease.transition_lease_acquire('1914', 'monitor', 500, 'orchestrator-boot-1');
SELECT outcome FROM orch_lease.transition_lease_acquire('1915', 'reconciler', 500, 'orchestrator-boot-1');

-- The process restarts with a fresh boot id: every lease of its earlier incarnation comes back.
SELECT work_item, owner, owner_boot_id
  FROM orch_lease.transition_lease_recover('orchestrator-boot-2', 'orchestrator', 501);
-- Recover is idempotent.
SELECT count(*) FROM orch_lease.transition_lease_recover('orchestrator-boot-2', 'orchestrator', 501);
SELECT boot_id, instance, superseded_by FROM orch_lease.boot WHERE instance = 'orchestrator' ORDER BY boot_id;
SELECT event, work_item, old_owner, reason FROM orch_lease.lease_event WHERE reason LIKE 'recover%' ORDER BY work_item;

-- A zombie of the old incarnation gets nothing, and may not recover over its successor.
SELECT acquired, outcome FROM orch_lease.transition_lease_acquire('1914', 'monitor', 500, 'orchestrator-boot-1');
\set VERBOSITY terse
SELECT * FROM orch_lease.transition_lease_recover('orchestrator-boot-1', 'orchestrator');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
\set VERBOSITY default
SELECT outcome FROM orch_lease.transition_lease_acquire('1914', 'monitor', 501, 'orchestrator-boot-2');
