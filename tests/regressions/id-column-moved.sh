#!/usr/bin/env bash
# Red team 2, G4 (#27): the registry named the id column by name only. Swapping two columns' names
# (id -> old_id, ext -> id), or registering again with another id_column while leases were held, silently
# made every held lease mean another row: a second holder leased the first holder's row. A registration
# keeps its columns by number too: a column renamed away is refused at the next call (55000), and
# registering again with another id column is refused while leases on the table are held (55000).
# Runs in a database of its own. Exit 1 = red.
set -euo pipefail
PSQL=${PSQL:-psql}
db=orch_lease_id_column_moved
"$PSQL" -X -q -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
restored=${db}_restored
trap '"$PSQL" -X -q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "DROP DATABASE IF EXISTS $restored WITH (FORCE)"' EXIT
q() { "$PSQL" -X -v ON_ERROR_STOP=1 -At -d "$db" "$@"; }
# || true: an error is the answer here (its SQLSTATE), checked next.
answer() { "$PSQL" -X -v ON_ERROR_STOP=1 -v VERBOSITY=sqlstate -At -d "$db" -c "$1" 2>&1 | sed 's/^ERROR: *//' || true; }
red() { echo "id-column-moved: $*"; exit 1; }
q -c "CREATE EXTENSION orch_lease" \
  -c "CREATE TABLE tasks (id bigint PRIMARY KEY, stage text NOT NULL, ext bigint UNIQUE)" \
  -c "INSERT INTO tasks SELECT g, 'queued', g + 1000 FROM generate_series(1, 50) g" \
  -c "SELECT orch_lease.register_task_table('tasks')" >/dev/null
got=$(answer "SELECT outcome FROM orch_lease.transition_lease_acquire('42', 'A', 1, 'a-boot')")
[ "$got" = acquired ] || red "A acquires 42: $got"
# Registering again with another id column while A holds 42 would make A's lease another row's.
got=$(answer "SELECT orch_lease.register_task_table('tasks', 'ext')")
[ "$got" = 55000 ] || red "registering again with id_column ext while a lease is held: $got"
# The owner swaps the columns' names: every call is refused until the table is registered again.
q -c "ALTER TABLE tasks RENAME COLUMN id TO old_id" -c "ALTER TABLE tasks RENAME COLUMN ext TO id" >/dev/null
got=$(answer "SELECT outcome FROM orch_lease.transition_lease_acquire('1042', 'B', 1, 'b-boot')")
[ "$got" = 55000 ] || red "B acquires 1042 (A's row) after the swap: $got"
got=$(answer "SELECT outcome FROM orch_lease.update_task_stage_cas('1042', 'queued', 'done')")
[ "$got" = 55000 ] || red "a CAS on 1042 after the swap: $got"
# …and registering again under the swapped names is refused too while A's lease is held.
got=$(answer "SELECT orch_lease.register_task_table('tasks')")
[ "$got" = 55000 ] || red "registering again after the swap while a lease is held: $got"
# Once the lease is ended, the owner registers the new column.
q -c "SELECT orch_lease.transition_lease_force_release('42')" -c "SELECT orch_lease.register_task_table('tasks')" >/dev/null
got=$(answer "SELECT outcome FROM orch_lease.transition_lease_acquire('1042', 'B', 1, 'b-boot')")
[ "$got" = acquired ] || red "acquire after registering again: $got"
# A renamed stage column (its number kept) is the same column: only the name is followed.
q -c "ALTER TABLE tasks RENAME COLUMN stage TO state" -c "SELECT orch_lease.register_task_table('tasks', 'id', 'state')" >/dev/null
got=$(answer "SELECT outcome FROM orch_lease.update_task_stage_cas('1042', 'queued', 'running')")
[ "$got" = applied ] || red "CAS after registering the renamed stage column: $got"
# Red team 3, G19: a dump and restore numbers the columns anew, without the dropped ones. A table whose
# dropped column came before its id column must keep working after one, and a swap there is still refused.
q -c "CREATE TABLE t2 (legacy int, id bigint PRIMARY KEY, ext bigint UNIQUE, stage text NOT NULL)" \
  -c "ALTER TABLE t2 DROP COLUMN legacy" \
  -c "INSERT INTO t2 (id, ext, stage) SELECT g, g + 1000, 'queued' FROM generate_series(1, 10) g" \
  -c "SELECT orch_lease.register_task_table('t2')" >/dev/null
got=$(answer "SELECT outcome FROM orch_lease.transition_lease_acquire('3', 'A', 1, 'a-boot', task_table => 't2')")
[ "$got" = acquired ] || red "A acquires 3 of t2: $got"
"$PSQL" -X -q -d postgres -c "DROP DATABASE IF EXISTS $restored" -c "CREATE DATABASE $restored"
"$(dirname "$(command -v "$PSQL")")/pg_dump" -d "$db" | "$PSQL" -X -q -v ON_ERROR_STOP=1 -d "$restored" >/dev/null
db=$restored
got=$(answer "SELECT attnum FROM pg_attribute WHERE attrelid = 't2'::regclass AND attname = 'id'")
[ "$got" = 1 ] || red "the restored t2's id column is numbered $got, not 1: the restore did not renumber it"
got=$(answer "SELECT outcome FROM orch_lease.transition_lease_acquire('4', 'B', 1, 'b-boot', task_table => 't2')")
[ "$got" = acquired ] || red "after a dump and restore, B acquires 4 of t2: $got"
got=$(answer "SELECT outcome FROM orch_lease.transition_lease_acquire('3', 'B', 1, 'b-boot', task_table => 't2')")
[ "$got" = held ] || red "after a dump and restore, B acquires 3 of t2 (A's): $got"
got=$(answer "SELECT outcome FROM orch_lease.update_task_stage_cas('5', 'queued', 'running', task_table => 't2')")
[ "$got" = applied ] || red "after a dump and restore, a CAS on 5 of t2: $got"
# There ext is numbered 2, the number id had when registered: a swap with it is still refused.
q -c "ALTER TABLE t2 RENAME COLUMN id TO old_id" -c "ALTER TABLE t2 RENAME COLUMN ext TO id" >/dev/null
got=$(answer "SELECT outcome FROM orch_lease.transition_lease_acquire('1003', 'B', 1, 'b-boot', task_table => 't2')")
[ "$got" = 55000 ] || red "after a dump and restore, B acquires 1003 (A's row) after a swap: $got"
echo "id-column-moved: a moved id column is refused, never followed by name, and a restore keeps working"
