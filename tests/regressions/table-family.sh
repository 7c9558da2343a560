#!/usr/bin/env bash
# Red team 2, G1 and G2 (#27): one row must be one work item whatever happens to the table's family
# after registration. G1: a plain-inheritance child of a registered table made one row two work items
# ((tasks, 150) and (tasks_child, 150)) with two holders, and the parent's CAS wrote the child's rows too
# (one key, two rows). G2: ATTACH PARTITION after both tables were registered made one row two work items.
# A table's work items are its own rows (ONLY), and two registered tables of one inheritance or partition
# family are refused at every call (55000), not only at registration. Runs in a database of its own.
# Exit 1 = red.
set -euo pipefail
PSQL=${PSQL:-psql}
db=orch_lease_table_family
"$PSQL" -X -q -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
trap '"$PSQL" -X -q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"' EXIT
q() { "$PSQL" -X -v ON_ERROR_STOP=1 -At -d "$db" "$@"; }
# || true: an error is the answer here (its SQLSTATE), checked next.
answer() { "$PSQL" -X -v ON_ERROR_STOP=1 -v VERBOSITY=sqlstate -At -d "$db" -c "$1" 2>&1 | sed 's/^ERROR: *//' || true; }
red() { echo "table-family: $*"; exit 1; }
# ddl_between BEFORE DDL AFTER: BEFORE and AFTER in one session (what it cached in between counts), DDL
# made by another session between them; the two answers (an error as its SQLSTATE) on one line.
ddl_between() {
    "$PSQL" -X -At -v VERBOSITY=sqlstate -d "$db" -c "$1" -c "\\! \"$PSQL\" -X -q -d $db -c \"$2\"" -c "$3" 2>&1 |
        sed 's/^ERROR: *//' | tr '\n' ' ' | sed 's/ $//' || true # an error is the answer, checked by the caller
}
q -c "CREATE EXTENSION orch_lease" \
  -c "CREATE TABLE tasks (id bigint PRIMARY KEY, stage text NOT NULL)" \
  -c "CREATE TABLE tasks_child (PRIMARY KEY (id)) INHERITS (tasks)" \
  -c "INSERT INTO tasks VALUES (42, 'queued')" \
  -c "INSERT INTO tasks_child VALUES (42, 'queued'), (150, 'queued')" \
  -c "SELECT orch_lease.register_task_table('tasks')" >/dev/null
# G1, a child alone: the parent's work item 42 is the parent's row, and its CAS writes that row only.
got=$(answer "SELECT outcome FROM orch_lease.update_task_stage_cas('42', 'queued', 'running')")
[ "$got" = applied ] || red "CAS on (tasks, 42): $got"
got=$(q -c "SELECT string_agg(tableoid::regclass || '=' || stage, ',' ORDER BY tableoid::regclass::text) FROM tasks WHERE id = 42")
[ "$got" = "tasks=running,tasks_child=queued" ] || red "one CAS on (tasks, 42) wrote: $got"
# The child's row 150 is not a work item of the parent.
got=$(answer "SELECT outcome FROM orch_lease.transition_lease_acquire('150', 'A', 1, 'a-boot')")
[ "$got" = not_found ] || red "acquire (tasks, 150), a row of the child: $got"
# G1, the child registered too: one family, two registrations; every call on either is refused.
got=$(answer "SELECT orch_lease.register_task_table('tasks_child')")
[ "$got" = 55000 ] || red "registering the child of a registered table: $got"
q -c "DROP TABLE tasks_child" -c "CREATE TABLE tasks_child (id bigint PRIMARY KEY, stage text NOT NULL)" \
  -c "INSERT INTO tasks_child VALUES (150, 'queued')" \
  -c "SELECT orch_lease.register_task_table('tasks_child')" \
  -c "ALTER TABLE tasks_child INHERIT tasks" >/dev/null
for table in tasks tasks_child; do
    got=$(answer "SELECT outcome FROM orch_lease.transition_lease_acquire('150', 'A', 1, 'a-boot', task_table => '$table')")
    [ "$got" = 55000 ] || red "acquire on $table after ALTER TABLE … INHERIT: $got"
done
q -c "ALTER TABLE tasks_child NO INHERIT tasks" >/dev/null
got=$(answer "SELECT outcome FROM orch_lease.transition_lease_acquire('150', 'A', 1, 'a-boot', task_table => 'tasks_child')")
[ "$got" = acquired ] || red "acquire on tasks_child after NO INHERIT: $got"
# G2: ATTACH PARTITION after both are registered.
q -c "CREATE TABLE ptasks (id bigint PRIMARY KEY, stage text NOT NULL) PARTITION BY RANGE (id)" \
  -c "CREATE TABLE eu (id bigint PRIMARY KEY, stage text NOT NULL)" \
  -c "INSERT INTO eu VALUES (7, 'queued')" \
  -c "SELECT orch_lease.register_task_table('ptasks')" \
  -c "SELECT orch_lease.register_task_table('eu')" >/dev/null
got=$(answer "SELECT outcome FROM orch_lease.transition_lease_acquire('7', 'A', 1, 'a-boot', task_table => 'eu')")
[ "$got" = acquired ] || red "acquire (eu, 7) before the attach: $got"
q -c "ALTER TABLE ptasks ATTACH PARTITION eu FOR VALUES FROM (0) TO (1000)" >/dev/null
for table in ptasks eu; do
    got=$(answer "SELECT outcome FROM orch_lease.transition_lease_acquire('7', 'B', 1, 'b-boot', task_table => '$table')")
    [ "$got" = 55000 ] || red "acquire (7) on $table after ATTACH PARTITION: $got"
    got=$(answer "SELECT outcome FROM orch_lease.update_task_stage_cas('7', 'queued', 'running', task_table => '$table')")
    [ "$got" = 55000 ] || red "CAS (7) on $table after ATTACH PARTITION: $got"
done
# The refusal names the other table and says what to do (|| true: the error is the answer, checked next).
got=$("$PSQL" -X -At -d "$db" -c "SELECT orch_lease.transition_lease_acquire('7', 'B', 1, 'b-boot', task_table => 'ptasks')" 2>&1 || true)
[[ $got == *'shares its rows with the registered task table "public.eu"'* && $got == *HINT* ]] || red "the refusal: $got"
# The holder of (eu, 7) can still end its lease.
got=$(answer "SELECT orch_lease.transition_lease_force_release('7', task_table => 'eu')")
[ "$got" = t ] || red "force_release (eu, 7) after the attach: $got"
q -c "ALTER TABLE ptasks DETACH PARTITION eu" >/dev/null
got=$(answer "SELECT outcome FROM orch_lease.transition_lease_acquire('7', 'B', 1, 'b-boot', task_table => 'eu')")
[ "$got" = acquired ] || red "acquire (eu, 7) after DETACH: $got"
# Levels apart, through unregistered partitioned tables in between: a session that described the top
# table before must see that it now holds the rows of eu, registered, two levels down (ATTACH
# invalidates the table attached to, the one attached and its partitions). One session, the ATTACH
# made by another; (eu, 7) is held when the top table is asked for 7.
q -c "CREATE TABLE world (id bigint PRIMARY KEY, stage text NOT NULL) PARTITION BY RANGE (id)" \
  -c "CREATE TABLE middle PARTITION OF world FOR VALUES FROM (0) TO (1000) PARTITION BY RANGE (id)" \
  -c "CREATE TABLE sub (id bigint PRIMARY KEY, stage text NOT NULL) PARTITION BY RANGE (id)" \
  -c "ALTER TABLE sub ATTACH PARTITION eu FOR VALUES FROM (0) TO (100)" \
  -c "SELECT orch_lease.unregister_task_table('ptasks')" \
  -c "SELECT orch_lease.register_task_table('world')" >/dev/null
got=$(ddl_between "SELECT outcome FROM orch_lease.transition_lease_acquire('8', 'A', 1, 'a-boot', task_table => 'world')" \
                  "ALTER TABLE middle ATTACH PARTITION sub FOR VALUES FROM (0) TO (100)" \
                  "SELECT outcome FROM orch_lease.transition_lease_acquire('7', 'A', 1, 'a-boot', task_table => 'world')")
[ "$got" = "not_found 55000" ] || red "the top table, described before an ATTACH two levels down: $got"
# The same with plain inheritance, where PostgreSQL invalidates only the two tables joined (neither of
# them registered): a registered grandparent and a registered grandchild become one family.
q -c "CREATE TABLE gp (id bigint PRIMARY KEY, stage text NOT NULL)" \
  -c "CREATE TABLE p1 (PRIMARY KEY (id)) INHERITS (gp)" \
  -c "CREATE TABLE p2 (id bigint PRIMARY KEY, stage text NOT NULL)" \
  -c "CREATE TABLE gc (PRIMARY KEY (id)) INHERITS (p2)" \
  -c "INSERT INTO gp VALUES (5, 'queued')" \
  -c "SELECT orch_lease.register_task_table('gp')" -c "SELECT orch_lease.register_task_table('gc')" >/dev/null
got=$(ddl_between "SELECT outcome FROM orch_lease.transition_lease_acquire('5', 'A', 1, 'a-boot', task_table => 'gp')" \
                  "ALTER TABLE p2 INHERIT p1" \
                  "SELECT outcome FROM orch_lease.transition_lease_acquire('5', 'B', 1, 'b-boot', task_table => 'gp')")
[ "$got" = "acquired 55000" ] || red "the grandparent, described before an INHERIT two levels down: $got"
echo "table-family: a table's work items are its own rows; a family with two registrations is refused at every call"
