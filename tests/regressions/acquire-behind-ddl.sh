#!/usr/bin/env bash
# Red team G14: since #26 acquire reads the task row (not_found, the stage), so it needs the task table's
# ACCESS SHARE lock, and it waited without bound behind any lock that conflicts with it: a migration's
# ALTER TABLE queued behind one long reader (the whole fleet stalls while the migration waits), or an
# actor's own LOCK TABLE … ACCESS EXCLUSIVE left prepared (across restarts). acquire never waits: it answers
# `busy` at once and writes no lease; once the table is free it grants. Runs in a database of its own;
# needs max_prepared_transactions > 0. Exit 1 = red.
set -euo pipefail
PSQL=${PSQL:-psql}
db=orch_lease_acquire_behind_ddl
"$PSQL" -X -q -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
alter_pid=""
cleanup() {
    [ -z "$alter_pid" ] || kill "$alter_pid" 2>/dev/null || true
    local gid
    for gid in g14_lock g14_reader; do
        "$PSQL" -X -q -d "$db" -c "ROLLBACK PREPARED '$gid'" >/dev/null 2>&1 || true
    done
    "$PSQL" -X -q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"
}
trap cleanup EXIT
q() { "$PSQL" -X -v ON_ERROR_STOP=1 -At -d "$db" "$@"; }
q -c "CREATE EXTENSION orch_lease" \
  -c "CREATE TABLE tasks (id bigint PRIMARY KEY, stage text NOT NULL)" \
  -c "INSERT INTO tasks VALUES (5, 'queued'), (6, 'queued')" \
  -c "SELECT orch_lease.register_task_table('tasks')" >/dev/null
# answer WHAT SQL WANTED: SQL answers WANTED within a second (statement_timeout stops a wait).
answer() {
    local start out ms
    start=$(date +%s%N)
    out=$(PGOPTIONS="-c statement_timeout=15s" "$PSQL" -X -At -d "$db" -c "$2" 2>&1 || true) # || true: checked next
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    [ "$out" = "$3" ] || { echo "acquire-behind-ddl: $1 answered after $ms ms: ${out//$'\n'/ | } (wanted $3)"; exit 1; }
    [ "$ms" -lt 1000 ] || { echo "acquire-behind-ddl: $1 took $ms ms"; exit 1; }
    echo "ok: $1 answered $3 in $ms ms"
}
acquire="SELECT outcome FROM orch_lease.transition_lease_acquire('5', 'w', 1, 'boot-w')"
session="SELECT outcome FROM orch_lease.transition_lease_acquire_session('5', 'w')"
# 1. A LOCK TABLE left prepared: it outlives its session.
q -c "BEGIN" -c "LOCK TABLE tasks IN ACCESS EXCLUSIVE MODE" -c "PREPARE TRANSACTION 'g14_lock'" >/dev/null
answer "acquire under a prepared LOCK TABLE" "$acquire" busy
answer "acquire_session under a prepared LOCK TABLE" "$session" busy
[ "$(q -c "SELECT count(*) FROM orch_lease.transition_lease")" = 0 ] ||
    { echo "acquire-behind-ddl: a busy acquire left a lease"; exit 1; }
q -c "ROLLBACK PREPARED 'g14_lock'" >/dev/null
# 2. A migration's ALTER TABLE queued behind a reader (here a prepared one, which holds its ACCESS SHARE).
q -c "BEGIN" -c "SELECT count(*) FROM tasks" -c "PREPARE TRANSACTION 'g14_reader'" >/dev/null
"$PSQL" -X -q -d "$db" -c "ALTER TABLE tasks ADD COLUMN note text" >/dev/null 2>&1 &
alter_pid=$!
for _ in $(seq 100); do
    [ "$(q -c "SELECT count(*) FROM pg_locks WHERE relation = 'tasks'::regclass AND NOT granted")" = 1 ] && break
    sleep 0.05
done
answer "acquire behind a queued ALTER TABLE" "${acquire/\'5\'/\'6\'}" busy
q -c "ROLLBACK PREPARED 'g14_reader'" >/dev/null
wait "$alter_pid"
alter_pid=""
# 3. A lock on one index only (REINDEX), or on one partition of a partitioned task table, prepared.
q -c "CREATE TABLE parted (id bigint PRIMARY KEY, stage text NOT NULL) PARTITION BY RANGE (id)" \
  -c "CREATE TABLE parted_low PARTITION OF parted FOR VALUES FROM (0) TO (100)" \
  -c "CREATE TABLE parted_high PARTITION OF parted FOR VALUES FROM (100) TO (200)" \
  -c "INSERT INTO parted VALUES (7, 'queued'), (150, 'queued')" \
  -c "SELECT orch_lease.register_task_table('parted')" >/dev/null
q -c "BEGIN" -c "REINDEX INDEX tasks_pkey" -c "PREPARE TRANSACTION 'g14_lock'" >/dev/null
of_tasks="SELECT outcome FROM orch_lease.transition_lease_acquire('5', 'w', 1, 'boot-w', task_table => 'tasks')"
answer "acquire under a prepared REINDEX of the id's index" "$of_tasks" busy
q -c "ROLLBACK PREPARED 'g14_lock'" >/dev/null
q -c "BEGIN" -c "LOCK TABLE parted_high IN ACCESS EXCLUSIVE MODE" -c "PREPARE TRANSACTION 'g14_lock'" >/dev/null
answer "acquire of a row of the locked partition" \
       "SELECT outcome FROM orch_lease.transition_lease_acquire('150', 'w', 1, 'boot-w', task_table => 'parted')" busy
q -c "ROLLBACK PREPARED 'g14_lock'" >/dev/null
answer "acquire once the partition is free" \
       "SELECT outcome FROM orch_lease.transition_lease_acquire('150', 'w', 1, 'boot-w', task_table => 'parted')" acquired
# 4. The table free again: granted.
answer "acquire once the migration ran" "$of_tasks" acquired
