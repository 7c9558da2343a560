#!/usr/bin/env bash
# Red team 3, G18 (#29 item 2): force_release naming no table ended "the one lease held under exactly
# that text" even with leases of several tables held. With tasks (bigint ids) and jobs (text ids)
# registered and task 7 held, an actor leasing jobs planted job '007'; the on-call's
# force_release('007') (the ticket's spelling of task 7) ended the planted job lease, answered true,
# and left task 7 held. Naming no table is a guess unless the held leases are all of one table: then
# it must be refused (42P08, name the table), and naming the table ends the intended lease. Runs in a
# database of its own. Exit 1 = red.
set -euo pipefail
PSQL=${PSQL:-psql}
db=orch_lease_force_release_other_table
"$PSQL" -X -q -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
trap '"$PSQL" -X -q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"' EXIT
q() { "$PSQL" -X -v ON_ERROR_STOP=1 -At -d "$db" "$@"; }
# || true: an error is the answer here (its SQLSTATE), checked next.
answer() { "$PSQL" -X -v ON_ERROR_STOP=1 -v VERBOSITY=sqlstate -At -d "$db" -c "$1" 2>&1 | sed 's/^ERROR: *//' || true; }
red() { echo "force-release-other-table: $*"; exit 1; }
held() { q -c "SELECT coalesce(string_agg(task_table::text || ':' || work_item, ',' ORDER BY task_table::text, work_item), '-') FROM orch_lease.transition_lease"; }
q -c "CREATE EXTENSION orch_lease" \
  -c "CREATE TABLE tasks (id bigint PRIMARY KEY, stage text NOT NULL)" \
  -c "CREATE TABLE jobs (id text PRIMARY KEY, stage text NOT NULL)" \
  -c "INSERT INTO tasks VALUES (7, 'queued')" -c "INSERT INTO jobs VALUES ('007', 'queued')" \
  -c "SELECT orch_lease.register_task_table('tasks')" -c "SELECT orch_lease.register_task_table('jobs')" \
  -c "SELECT outcome FROM orch_lease.transition_lease_acquire('7', 'a', 600, 'a-boot', task_table => 'tasks')" \
  -c "SELECT outcome FROM orch_lease.transition_lease_acquire('007', 'b', 600, 'b-boot', task_table => 'jobs')" >/dev/null
[ "$(held)" = "jobs:007,tasks:7" ] || red "setup: $(held)"
got=$(answer "SELECT orch_lease.transition_lease_force_release('007', reason => 'stuck task 7')")
[ "$got" = 42P08 ] || red "force_release('007') naming no table, leases of two tables held: $got, held: $(held)"
[ "$(held)" = "jobs:007,tasks:7" ] || red "a refused force_release ended a lease: $(held)"
got=$(answer "SELECT orch_lease.transition_lease_force_release('007', reason => 'stuck task 7', task_table => 'tasks')")
[ "$got" = t ] || red "force_release('007') of tasks: $got"
[ "$(held)" = "jobs:007" ] || red "naming tasks ended: $(held)"
# Leases of one table only: naming no table ends the lease held under exactly that text (G13's path).
got=$(answer "SELECT orch_lease.transition_lease_force_release('007', reason => 'stuck job')")
[ "$got" = t ] || red "force_release('007') with jobs' leases only: $got"
[ "$(held)" = "-" ] || red "left: $(held)"
echo "force-release-other-table: naming no table ends no other table's lease"
