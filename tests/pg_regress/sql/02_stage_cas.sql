-- The expected-stage compare-and-swap on the application's own task table.
SET client_min_messages = warning;
DROP TABLE IF EXISTS tasks;
DROP TYPE IF EXISTS task_stage;
CREATE TYPE task_stage AS ENUM ('queued', 'merged', 'rolled_back', 'done');
CREATE TABLE tasks (id bigint PRIMARY KEY, stage task_stage NOT NULL);
INSERT INTO tasks VALUES (1, 'queued'), (2, 'queued'), (3, 'queued');

-- Name the existing table: no column is added to it.
SELECT orch_lease.register_task_table('tasks', 'id', 'stage');

-- The stage changes only if it still equals the expected one.
SELECT * FROM orch_lease.update_task_stage_cas('1', 'queued', 'merged');
-- A lost race changes nothing and says what the stage is now.
SELECT * FROM orch_lease.update_task_stage_cas('1', 'queued', 'rolled_back');
SELECT * FROM orch_lease.update_task_stage_cas('404', 'queued', 'merged');

-- The lease-guarded path in two round trips: acquire (which says the stage), do the effect, then
-- commit the stage and release in one step.
SELECT token AS t, stage AS s
  FROM orch_lease.transition_lease_acquire('2', 'deploy-finalizer', 303, 'finalizer-boot-1') \gset
\echo stage :s
SELECT * FROM orch_lease.commit_stage_cas('2', :t, :'s', 'merged');
SELECT count(*) AS leases_left FROM orch_lease.transition_lease;

-- A commit whose lease was taken away writes nothing.
SELECT token AS t FROM orch_lease.transition_lease_acquire('3', 'job-reaper', 404, 'reaper-boot-1') \gset
SELECT orch_lease.transition_lease_force_release('3');
SELECT * FROM orch_lease.commit_stage_cas('3', :t, 'queued', 'rolled_back');
SELECT id, stage FROM tasks ORDER BY id;

-- A stage the enum does not have is an error naming the argument; nothing is written.
\set VERBOSITY terse
SELECT * FROM orch_lease.update_task_stage_cas('3', 'queued', 'rolled-back');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT * FROM orch_lease.update_task_stage_cas('three', 'queued', 'done');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT orch_lease.register_task_table('tasks', 'id', 'status');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
\set VERBOSITY default
SELECT id, stage FROM tasks WHERE id = 3;
