#!/usr/bin/env bash
# Red team G16: with "read all, update own" RLS, an actor acquiring a row it may read but never write got
# `retry` at REPEATABLE READ and SERIALIZABLE, in every new transaction (a client retrying livelocks).
# Nothing changed since the snapshot: the answer is `not_found` at every isolation level. Runs in a
# database of its own. Exit 1 = red.
set -euo pipefail
PSQL=${PSQL:-psql}
db=orch_lease_read_not_write_rr
"$PSQL" -X -q -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
cleanup() {
    "$PSQL" -X -q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "DROP ROLE IF EXISTS g16_actor"
}
trap cleanup EXIT
q() { "$PSQL" -X -v ON_ERROR_STOP=1 -At -d "$db" "$@"; }
q -c "DROP ROLE IF EXISTS g16_actor" -c "CREATE ROLE g16_actor" \
  -c "CREATE EXTENSION orch_lease" \
  -c "CREATE TABLE tasks (id bigint PRIMARY KEY, stage text NOT NULL, tenant name NOT NULL)" \
  -c "INSERT INTO tasks VALUES (9, 'queued', 'someone_else'), (10, 'queued', 'g16_actor')" \
  -c "ALTER TABLE tasks ENABLE ROW LEVEL SECURITY" \
  -c "CREATE POLICY read_all ON tasks FOR SELECT USING (true)" \
  -c "CREATE POLICY update_own ON tasks FOR UPDATE USING (tenant = current_user)" \
  -c "GRANT SELECT, UPDATE ON tasks TO g16_actor" \
  -c "GRANT orch_lease_actor TO g16_actor" \
  -c "SELECT orch_lease.register_task_table('tasks')" >/dev/null
for iso in 'READ COMMITTED' 'REPEATABLE READ' 'SERIALIZABLE'; do
    out=$(q -q -c "SET ROLE g16_actor" -c "BEGIN ISOLATION LEVEL $iso" \
        -c "SELECT outcome FROM orch_lease.transition_lease_acquire('9', 'w', 30, 'boot-w')" -c "COMMIT")
    [ "$out" = not_found ] || { echo "read-not-write-rr: $iso answered '$out' for a read-only row (wanted not_found)"; exit 1; }
    out=$(q -q -c "SET ROLE g16_actor" -c "BEGIN ISOLATION LEVEL $iso" \
        -c "SELECT outcome FROM orch_lease.transition_lease_acquire('10', 'w', 30, 'boot-w')" -c "ROLLBACK")
    [ "$out" = acquired ] || { echo "read-not-write-rr: $iso answered '$out' for its own row (wanted acquired)"; exit 1; }
    echo "ok: $iso: not_found for a row it may only read, acquired for its own"
done
