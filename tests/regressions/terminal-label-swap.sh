#!/usr/bin/env bash
# Red team F12 (#29 item 11): the terminal-stage fix failed closed when a label the graph names was renamed
# away, but a swap defeated it: after RENAME VALUE 'done' TO 'finished' and RENAME VALUE 'running' TO
# 'done', every label the graph names exists again, and `finished -> queued` (out of the old terminal
# stage) applied. A label the graph names must be the same label it named (its place in the enum), or
# every CAS fails closed (55000) until the graph is registered again; each table's places are its own. Runs
# in a database of its own.
# Exit 1 = red.
set -euo pipefail
PSQL=${PSQL:-psql}
db=orch_lease_terminal_label_swap
"$PSQL" -X -q -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
trap '"$PSQL" -X -q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"' EXIT
q() { "$PSQL" -X -v ON_ERROR_STOP=1 -At -d "$db" "$@"; }
# || true: an error is the answer here (its SQLSTATE), checked next.
cas() { "$PSQL" -X -v ON_ERROR_STOP=1 -v VERBOSITY=sqlstate -At -d "$db" -c "$1" 2>&1 | sed 's/^ERROR: *//' || true; }
q -c "CREATE EXTENSION orch_lease" \
  -c "CREATE TYPE st AS ENUM ('queued', 'running', 'done')" \
  -c "CREATE TABLE tasks (id bigint PRIMARY KEY, stage st NOT NULL)" \
  -c "INSERT INTO tasks VALUES (1, 'done'), (2, 'queued')" \
  -c "SELECT orch_lease.register_task_table('tasks')" \
  -c "SELECT orch_lease.register_stage_graph(ARRAY[]::text[], ARRAY['done'])" >/dev/null
answer=$(cas "SELECT outcome FROM orch_lease.update_task_stage_cas('1', 'done', 'queued')")
[ "$answer" = invalid_transition ] || { echo "terminal-label-swap: out of 'done' before any rename: $answer"; exit 1; }
q -c "ALTER TYPE st RENAME VALUE 'done' TO 'finished'" >/dev/null
answer=$(cas "SELECT outcome FROM orch_lease.update_task_stage_cas('1', 'finished', 'queued')")
[ "$answer" = 55000 ] || { echo "terminal-label-swap: after the rename: $answer"; exit 1; }
q -c "ALTER TYPE st RENAME VALUE 'running' TO 'done'" >/dev/null
answer=$(cas "SELECT outcome FROM orch_lease.update_task_stage_cas('1', 'finished', 'queued')")
[ "$answer" = 55000 ] || { echo "terminal-label-swap: after the swap, out of the old terminal stage: $answer"; exit 1; }
[ "$(q -c "SELECT stage FROM tasks WHERE id = 1")" = finished ] || { echo "terminal-label-swap: the row moved"; exit 1; }
echo "ok: after a rename and a swap of the terminal label, the CAS fails closed (55000)"
# Registering the graph again with the labels as they are now makes it apply again.
q -c "SELECT orch_lease.register_stage_graph(ARRAY[]::text[], ARRAY['finished'])" >/dev/null
answer=$(cas "SELECT outcome FROM orch_lease.update_task_stage_cas('1', 'finished', 'queued')")
[ "$answer" = invalid_transition ] || { echo "terminal-label-swap: registered again: $answer"; exit 1; }
answer=$(cas "SELECT outcome FROM orch_lease.update_task_stage_cas('2', 'queued', 'done')")
[ "$answer" = applied ] || { echo "terminal-label-swap: registered again, queued -> done: $answer"; exit 1; }
# A label added at the end moves no named label: nothing to register again.
q -c "ALTER TYPE st ADD VALUE 'archived'" >/dev/null
answer=$(cas "SELECT outcome FROM orch_lease.update_task_stage_cas('2', 'done', 'archived')")
[ "$answer" = applied ] || { echo "terminal-label-swap: after ADD VALUE at the end: $answer"; exit 1; }
echo "ok: registered again, the graph applies; a label added at the end changes nothing"
# Each table's labels are its own (#27): registering another table's graph keeps this one's places, a
# swap in this table's enum fails this table's CAS closed and no other's, and unregistering a table
# removes its places only.
q -c "CREATE TYPE st_jobs AS ENUM ('open', 'closed')" \
  -c "CREATE TABLE jobs (id bigint PRIMARY KEY, stage st_jobs NOT NULL)" \
  -c "INSERT INTO jobs VALUES (1, 'open'), (2, 'closed')" \
  -c "SELECT orch_lease.register_task_table('jobs')" \
  -c "SELECT orch_lease.register_stage_graph(ARRAY['open -> closed'], ARRAY['closed'], 'jobs')" >/dev/null
q -c "ALTER TYPE st RENAME VALUE 'finished' TO 'gone'" -c "ALTER TYPE st RENAME VALUE 'done' TO 'finished'" >/dev/null
answer=$(cas "SELECT outcome FROM orch_lease.update_task_stage_cas('1', 'gone', 'queued', task_table => 'tasks')")
[ "$answer" = 55000 ] || { echo "terminal-label-swap: tasks' swap after jobs' graph was registered: $answer"; exit 1; }
answer=$(cas "SELECT outcome FROM orch_lease.update_task_stage_cas('1', 'open', 'closed', task_table => 'jobs')")
[ "$answer" = applied ] || { echo "terminal-label-swap: jobs' CAS after a swap in tasks' enum: $answer"; exit 1; }
answer=$(cas "SELECT outcome FROM orch_lease.update_task_stage_cas('2', 'closed', 'open', task_table => 'jobs')")
[ "$answer" = invalid_transition ] || { echo "terminal-label-swap: out of jobs' terminal stage: $answer"; exit 1; }
echo "ok: a swap in one table's enum fails its CAS closed (55000), another table's graph applies"
q -c "SELECT orch_lease.unregister_task_table('jobs')" >/dev/null
[ "$(q -c "SELECT count(*) FILTER (WHERE task_table = 'jobs'::regclass) || '/' || count(*) FILTER (WHERE task_table = 'tasks'::regclass) FROM orch_lease.stage_label")" = 0/1 ] ||
    { echo "terminal-label-swap: stage_label after unregistering jobs: $(q -c "TABLE orch_lease.stage_label")"; exit 1; }
answer=$(cas "SELECT outcome FROM orch_lease.update_task_stage_cas('1', 'gone', 'queued')")
[ "$answer" = 55000 ] || { echo "terminal-label-swap: tasks after jobs was unregistered: $answer"; exit 1; }
echo "ok: unregistering a table removes its labels' places, not another table's"
