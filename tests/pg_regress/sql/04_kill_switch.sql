-- One kill-switch turns everything off and restores plain unconditional writes; scopes limit coverage.
SET client_min_messages = warning;
SET orch_lease.enabled = off;
SELECT acquired, outcome, token FROM orch_lease.transition_lease_acquire('1', 'monitor', 101, 'monitor-boot-1');
SELECT * FROM orch_lease.update_task_stage_cas('1', 'queued', 'done');
SELECT id, stage FROM tasks WHERE id = 1;
RESET orch_lease.enabled;

INSERT INTO tasks VALUES (1007, 'queued'), (2007, 'queued');
SET orch_lease.scopes = 'orchestrator';
SELECT acquired, outcome, token FROM orch_lease.transition_lease_acquire('1007', 'monitor', 101, 'monitor-boot-1', 'enduro');
SELECT acquired, outcome FROM orch_lease.transition_lease_acquire('2007', 'monitor', 101, 'monitor-boot-1', 'orchestrator');
RESET orch_lease.scopes;

-- The database's switch (0.5.0): one statement by an admin turns orch_lease off for every session of the
-- database at its next call, recorded (and announced); switching to the state it is in does nothing.
SELECT orch_lease.set_enabled(false, 'INC-1: back to plain writes');
SELECT enabled, database_enabled, session_enabled, changed_by = current_user AS by_me, reason
  FROM orch_lease.kill_switch();
SELECT acquired, outcome, token FROM orch_lease.transition_lease_acquire('3', 'monitor', 101, 'monitor-boot-1');
SELECT orch_lease.set_enabled(false, 'twice');
SELECT orch_lease.set_enabled(true, 'INC-1 over');
SELECT event, outcome, work_item, reason, by_role = current_user AS by_me
  FROM orch_lease.lease_history WHERE event = 'switched' ORDER BY event_id;
-- Off wins: the session's own setting off, the database's switch on.
SET orch_lease.enabled = off;
SELECT enabled, database_enabled, session_enabled FROM orch_lease.kill_switch();
RESET orch_lease.enabled;
SELECT enabled, database_enabled, session_enabled FROM orch_lease.kill_switch();

-- Neither the settings nor the switch are for an ordinary actor role.
CREATE ROLE regress_actor IN ROLE orch_lease_actor;
SET ROLE regress_actor;
\set VERBOSITY terse
SET orch_lease.enabled = off;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT orch_lease.set_enabled(false, 'me too');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
\set VERBOSITY default
RESET ROLE;
DROP ROLE regress_actor;
