-- First contact (0.5.0, #31): a programming mistake is told apart from a lost race, and each refusal a
-- newcomer meets says what to do.
SET client_min_messages = warning;
-- A clean slate: no lease, registration nor history of the specs before, and the counters as they stand.
SELECT bool_and(orch_lease.transition_lease_force_release(work_item, NULL, 'clean slate', task_table => task_table))
       AS cleared
  FROM orch_lease.transition_lease;
SELECT orch_lease.unregister_task_table('tasks');
DROP TABLE tasks;
DROP TYPE IF EXISTS task_stage;
CREATE TABLE tasks (id text PRIMARY KEY, stage text NOT NULL);
INSERT INTO tasks VALUES ('PR-1', 'queued'), ('PR-2', 'queued'), ('PR-3', 'queued'), ('PR-4', 'queued'),
                         ('131', 'queued');
SELECT orch_lease.register_task_table('tasks', 'id', 'stage');
SELECT orch_lease.transition_lease_prune('0 s') >= 0 AS pruned;
SELECT sum(value) FILTER (WHERE label = 'lease_lost') AS lost,
       sum(value) FILTER (WHERE label = 'not_held') AS not_held
  FROM orch_lease.transition_lease_metrics() WHERE metric = 'orch_lease_cas_total' \gset before_

-- A lease taken away from its holder (here forced) is a lost race: lease_lost, the critical alert.
SELECT token AS t FROM orch_lease.transition_lease_acquire('PR-1', 'monitor', 4242, 'monitor-boot-1') \gset
SELECT orch_lease.transition_lease_force_release('PR-1', :t, 'on call');
SELECT * FROM orch_lease.commit_stage_cas('PR-1', :t, 'queued', 'merged');

-- Committing twice, or with a token this item never had, is a mistake: not_held, nothing written.
SELECT token AS t FROM orch_lease.transition_lease_acquire('PR-2', 'monitor', 4242, 'monitor-boot-1') \gset
SELECT * FROM orch_lease.commit_stage_cas('PR-2', :t, 'queued', 'merged');
SELECT * FROM orch_lease.commit_stage_cas('PR-2', :t, 'merged', 'done');
SELECT * FROM orch_lease.commit_stage_cas('PR-3', :t, 'queued', 'merged');
SELECT * FROM orch_lease.update_task_stage_cas('PR-3', 'queued', 'merged', 0);
-- A lease its holder released is not lost either.
SELECT token AS t FROM orch_lease.transition_lease_acquire('PR-4', 'monitor', 4242, 'monitor-boot-1') \gset
SELECT orch_lease.transition_lease_release('PR-4', :t);
SELECT * FROM orch_lease.commit_stage_cas('PR-4', :t, 'queued', 'merged');
SELECT id, stage FROM tasks ORDER BY id;
-- Counted apart: OrchLeaseLostCommit watches lease_lost only.
SELECT sum(value) FILTER (WHERE label = 'lease_lost') - :before_lost AS lease_lost,
       sum(value) FILTER (WHERE label = 'not_held') - :before_not_held AS not_held
  FROM orch_lease.transition_lease_metrics() WHERE metric = 'orch_lease_cas_total';
SELECT outcome, count(*) FROM orch_lease.lease_history WHERE event = 'cas_lost' GROUP BY outcome ORDER BY 1;

-- A NULL token (what a disabled or out_of_scope grant hands out) no longer makes commit_stage_cas a
-- plain CAS while orch_lease is on: the write without a lease is asked for by name.
SELECT * FROM orch_lease.commit_stage_cas('PR-3', NULL, 'queued', 'merged');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT * FROM orch_lease.update_task_stage_cas('PR-3', 'queued', 'merged');
-- With the kill-switch off it is still the bare write (deprecated).
SET orch_lease.enabled = off;
SELECT * FROM orch_lease.commit_stage_cas('PR-3', NULL, 'merged', 'done');
RESET orch_lease.enabled;

-- An integer work item: a hint to pass the id as text, not PostgreSQL's generic 42883.
SELECT * FROM orch_lease.transition_lease_acquire(131, 'monitor', 4242, 'monitor-boot-1');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT * FROM orch_lease.transition_lease_acquire_session(131, 'monitor');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- A quoted id still reaches the text function.
SELECT acquired, outcome FROM orch_lease.transition_lease_acquire('131', 'monitor', 4242, 'monitor-boot-1');
SELECT orch_lease.transition_lease_force_release('131');

-- Registering a table whose id type cannot key a held lease (one taken while no table was registered,
-- which the first table registered adopts): a lease is in the way (55000), naming the lease, not an
-- argument the caller never passed.
SELECT orch_lease.unregister_task_table('tasks');
SELECT acquired FROM orch_lease.transition_lease_acquire('PR-2', 'monitor', 4242, 'monitor-boot-1');
CREATE TABLE int_tasks (id bigint PRIMARY KEY, stage text NOT NULL);
SELECT orch_lease.register_task_table('int_tasks', 'id', 'stage');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT orch_lease.transition_lease_force_release('PR-2');
SELECT orch_lease.register_task_table('int_tasks', 'id', 'stage');
SELECT orch_lease.unregister_task_table('int_tasks');

-- A composite key: the hint names the workaround, a unique generated column, which then works.
CREATE TABLE tenant_tasks (tenant text, id text, stage text NOT NULL, PRIMARY KEY (tenant, id));
INSERT INTO tenant_tasks VALUES ('acme', 'PR-1', 'queued'), ('globex', 'PR-1', 'queued');
SELECT orch_lease.register_task_table('tenant_tasks', 'id', 'stage');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
ALTER TABLE tenant_tasks ADD COLUMN task_key text GENERATED ALWAYS AS (tenant || '/' || id) STORED UNIQUE;
SELECT orch_lease.register_task_table('tenant_tasks', 'task_key', 'stage');
SELECT token AS t FROM orch_lease.transition_lease_acquire('acme/PR-1', 'monitor', 4242, 'monitor-boot-1') \gset
SELECT acquired, outcome FROM orch_lease.transition_lease_acquire('globex/PR-1', 'monitor', 4242, 'monitor-boot-1');
SELECT * FROM orch_lease.commit_stage_cas('acme/PR-1', :t, 'queued', 'merged');
SELECT tenant, id, stage FROM tenant_tasks ORDER BY tenant;
SELECT orch_lease.transition_lease_force_release('globex/PR-1');

-- The status view says when the session that registered a holder's boot is gone (a SIGKILLed
-- orchestrator whose lease stays live until its restart recovers it).
SELECT * FROM orch_lease.transition_lease_recover('monitor-boot-2', 'monitor');
SELECT acquired FROM orch_lease.transition_lease_acquire('globex/PR-1', 'monitor', 4242, 'monitor-boot-2');
SELECT work_item, liveness, session_gone FROM orch_lease.transition_lease_status;
UPDATE orch_lease.boot SET registered_session = 'session:1:1' WHERE boot_id = 'monitor-boot-2';
SELECT work_item, liveness, session_gone FROM orch_lease.transition_lease_status;
UPDATE orch_lease.boot SET registered_session = NULL WHERE boot_id = 'monitor-boot-2';
SELECT work_item, liveness, session_gone FROM orch_lease.transition_lease_status;
SELECT orch_lease.transition_lease_force_release('globex/PR-1');

-- An admin that registered another role's instance on its behalf (runbook section 4) and then acquires
-- with that boot is told whose boot it is and what to do; an actor of a third role is not told the name.
CREATE ROLE regress_contact_orch LOGIN IN ROLE orch_lease_actor;
CREATE ROLE regress_contact_other LOGIN IN ROLE orch_lease_actor;
GRANT SELECT, UPDATE ON tenant_tasks TO regress_contact_other;
SET ROLE regress_contact_orch;
SELECT count(*) FROM orch_lease.transition_lease_recover('orch-boot-1', 'contact-orchestrator');
RESET ROLE;
SELECT count(*) FROM orch_lease.transition_lease_takeover('orch-boot-2', 'contact-orchestrator');
SELECT registered_by FROM orch_lease.boot WHERE boot_id = 'orch-boot-2';
SELECT * FROM orch_lease.transition_lease_acquire('acme/PR-1', 'on-call', 1, 'orch-boot-2');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SET ROLE regress_contact_other;
SELECT * FROM orch_lease.transition_lease_acquire('acme/PR-1', 'other', 1, 'orch-boot-2');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
RESET ROLE;
DELETE FROM orch_lease.boot WHERE instance = 'contact-orchestrator';
REVOKE SELECT, UPDATE ON tenant_tasks FROM regress_contact_other;
DROP ROLE regress_contact_orch, regress_contact_other;
DROP TABLE tenant_tasks, int_tasks;
