-- Several task tables (#27): tasks, jobs… each under its own leases. A work item is a (table, id) pair,
-- and a call that names no table while several are registered is an error, never a guess.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS orch_lease CASCADE;
CREATE EXTENSION orch_lease;
DROP TABLE IF EXISTS tasks, jobs;
CREATE TABLE tasks (id text PRIMARY KEY, stage text NOT NULL);
CREATE TABLE jobs (id text PRIMARY KEY, stage text NOT NULL);
INSERT INTO tasks VALUES ('42', 'queued');
INSERT INTO jobs VALUES ('42', 'queued');
SELECT orch_lease.register_task_table('tasks');
-- With one table registered, today's calls are unchanged: they mean tasks.
SELECT acquired, outcome FROM orch_lease.transition_lease_acquire('42', 'team-a', 1, 'boot-a');
-- Team B registers its own table: tasks stays registered, and its lease with it.
SELECT orch_lease.register_task_table('jobs');
SELECT relid, id_column, stage_column FROM orch_lease.task_table ORDER BY relid::text;
SELECT task_table, work_item, owner FROM orch_lease.transition_lease_status;

-- Team A's unchanged call, now that two tables are registered: an error naming them, never a write
-- on jobs (0.4.0 wrote jobs' row 42 and answered applied).
SELECT * FROM orch_lease.update_task_stage_cas('42', 'queued', 'merged');
SELECT * FROM orch_lease.transition_lease_acquire('42', 'team-a', 1, 'boot-a');
SELECT 'tasks' AS t, * FROM tasks UNION ALL SELECT 'jobs', * FROM jobs ORDER BY 1;

-- The same id in two tables is two work items: two owners lease them at once.
SELECT acquired, outcome FROM orch_lease.transition_lease_acquire('42', 'team-b', 2, 'boot-b', task_table => 'jobs');
SELECT acquired, outcome, holder FROM orch_lease.transition_lease_acquire('42', 'team-b', 2, 'boot-b', task_table => 'tasks');
SELECT task_table, work_item, owner FROM orch_lease.transition_lease_status ORDER BY task_table::text;
SELECT token AS a FROM orch_lease.transition_lease WHERE task_table = 'tasks'::regclass \gset
SELECT token AS b FROM orch_lease.transition_lease WHERE task_table = 'jobs'::regclass \gset

-- Each CAS writes only its own table; one table's token is no lease on the other's item.
SELECT * FROM orch_lease.update_task_stage_cas('42', 'queued', 'merged', :b, task_table => 'tasks');
SELECT * FROM orch_lease.update_task_stage_cas('42', 'queued', 'merged', :a, task_table => 'tasks');
SELECT 'tasks' AS t, * FROM tasks UNION ALL SELECT 'jobs', * FROM jobs ORDER BY 1;
SELECT * FROM orch_lease.commit_stage_cas('42', :b, 'queued', 'running', task_table => 'jobs');
SELECT 'tasks' AS t, * FROM tasks UNION ALL SELECT 'jobs', * FROM jobs ORDER BY 1;
SELECT orch_lease.transition_lease_held('42', :a, task_table => 'tasks') AS a_holds,
       orch_lease.transition_lease_held('42', :a, task_table => 'jobs') AS a_on_jobs;

-- Each table has its own stage graph.
SELECT orch_lease.register_stage_graph(ARRAY['queued -> running', 'running -> done'], ARRAY['done'], task_table => 'jobs');
SELECT task_table, from_stage, to_stage FROM orch_lease.stage_transition ORDER BY 1, 2;
SELECT * FROM orch_lease.update_task_stage_cas('42', 'running', 'queued', task_table => 'jobs');
SELECT * FROM orch_lease.update_task_stage_cas('42', 'merged', 'queued', task_table => 'tasks');

-- The history names the table (so do the announcements: docs/sql-reference.md, payload version 3).
SELECT event, outcome, task_table, work_item FROM orch_lease.lease_history
 WHERE event IN ('acquired', 'cas_applied') ORDER BY event_id;
-- The on-call's release names the table the status view shows. Named none, it ends the one lease held
-- under exactly that text (0.5.0: found before the registry is read), and is refused while two are.
SELECT acquired FROM orch_lease.transition_lease_acquire('42', 'team-b', 2, 'boot-b', task_table => 'jobs');
SELECT orch_lease.transition_lease_force_release('42', reason => 'drill');
SELECT orch_lease.transition_lease_force_release('42', reason => 'drill', task_table => 'jobs');
SELECT orch_lease.transition_lease_force_release('42', reason => 'drill');
SELECT event, task_table, work_item FROM orch_lease.lease_history WHERE event = 'forced' ORDER BY event_id;

-- A table that is not registered, and a view, are named in a clear error.
CREATE TABLE deploys (id text PRIMARY KEY, stage text NOT NULL);
CREATE VIEW tasks_view AS SELECT * FROM tasks;
SELECT * FROM orch_lease.transition_lease_acquire('42', 'team-c', 3, 'boot-c', task_table => 'deploys');
SELECT * FROM orch_lease.transition_lease_acquire('42', 'team-c', 3, 'boot-c', task_table => 'tasks_view');

-- Unregistering is refused while a lease on the table is held, and removes only that table.
INSERT INTO jobs VALUES ('7', 'queued');
SELECT acquired FROM orch_lease.transition_lease_acquire('7', 'team-b', 2, 'boot-b', task_table => 'jobs');
SELECT orch_lease.unregister_task_table('jobs');
SELECT orch_lease.transition_lease_force_release('7', task_table => 'jobs');
SELECT orch_lease.unregister_task_table('jobs');
SELECT relid FROM orch_lease.task_table;
SELECT count(*) AS jobs_graph FROM orch_lease.stage_transition;
-- One table again: the calls that name none mean it.
SELECT acquired, outcome FROM orch_lease.transition_lease_acquire('42', 'team-a', 1, 'boot-a');
SELECT orch_lease.unregister_task_table('deploys');
