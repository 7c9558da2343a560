-- What the example actors need, in a database of your own (psql -d app -f examples/setup.sql, as a role
-- that may CREATE EXTENSION: a superuser). Safe to run again: it starts the example over.
CREATE EXTENSION IF NOT EXISTS orch_lease;
DROP TABLE IF EXISTS example_task, example_effect;
CREATE TABLE example_task (id text PRIMARY KEY, stage text NOT NULL);
CREATE TABLE example_effect (task_id text, actor text, at timestamptz DEFAULT clock_timestamp());
INSERT INTO example_task SELECT 'task-' || i, 'queued' FROM generate_series(1, 12) i;
SELECT orch_lease.register_task_table('example_task');
