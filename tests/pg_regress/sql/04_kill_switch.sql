-- One kill-switch turns everything off and restores plain unconditional writes; scopes limit coverage.
SET client_min_messages = warning;
SET orch_lease.enabled = off;
SELECT acquired, outcome, token FROM orch_lease.transition_lease_acquire('1', 'monitor', 101, 'monitor-boot-1');
SELECT * FROM orch_lease.update_task_stage_cas('1', 'queued', 'done');
SELECT id, stage FROM tasks WHERE id = 1;
RESET orch_lease.enabled;

SET orch_lease.scopes = 'orchestrator';
SELECT acquired, outcome, token FROM orch_lease.transition_lease_acquire('1007', 'monitor', 101, 'monitor-boot-1', 'enduro');
SELECT acquired, outcome FROM orch_lease.transition_lease_acquire('2007', 'monitor', 101, 'monitor-boot-1', 'orchestrator');
RESET orch_lease.scopes;

-- Neither setting is for an ordinary actor role.
CREATE ROLE regress_actor;
SET ROLE regress_actor;
\set VERBOSITY terse
SET orch_lease.enabled = off;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
\set VERBOSITY default
RESET ROLE;
DROP ROLE regress_actor;
