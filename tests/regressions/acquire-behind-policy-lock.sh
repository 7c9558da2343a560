#!/usr/bin/env bash
# Red team 3, G17 (#27, G14's residual): acquire took the task table's own locks without waiting, but
# its read of the row, made as the caller, also reads what the table's row-level security policy reads
# (a membership table). A migration holding that table's lock made every acquire wait; with a
# lock_timeout set it raised 55P03 and left the caller's transaction aborted. Acquire must answer
# `busy` at once and keep the caller's transaction usable. Runs in a database of its own. Exit 1 = red.
set -euo pipefail
PSQL=${PSQL:-psql}
db=orch_lease_acquire_behind_policy_lock
actor=orch_lease_reg_g17
"$PSQL" -X -q -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
migration=""
# Ends the migration's session (a killed psql would leave its backend sleeping with the lock).
end_migration() {
    "$PSQL" -X -q -At -d postgres -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'g17_migration'" >/dev/null
    wait "$migration" 2>/dev/null || true # || true: its session was ended on purpose
}
cleanup() {
    [ -z "$migration" ] || end_migration
    "$PSQL" -X -q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "DROP ROLE IF EXISTS $actor"
}
trap cleanup EXIT
q() { "$PSQL" -X -v ON_ERROR_STOP=1 -At -d "$db" "$@"; }
red() { echo "acquire-behind-policy-lock: $*"; exit 1; }
q -c "CREATE EXTENSION orch_lease" \
  -c "DO \$\$BEGIN CREATE ROLE $actor LOGIN IN ROLE orch_lease_actor; EXCEPTION WHEN duplicate_object THEN NULL; END\$\$" \
  -c "CREATE TABLE members (role name PRIMARY KEY, tenant int NOT NULL)" \
  -c "INSERT INTO members VALUES ('$actor', 1)" \
  -c "CREATE TABLE tasks (id bigint PRIMARY KEY, stage text NOT NULL, tenant int NOT NULL DEFAULT 1)" \
  -c "INSERT INTO tasks SELECT g, 'queued' FROM generate_series(1, 9) g" \
  -c "GRANT SELECT ON members TO $actor" -c "GRANT SELECT, UPDATE ON tasks TO $actor" \
  -c "ALTER TABLE tasks ENABLE ROW LEVEL SECURITY" \
  -c "CREATE POLICY tenant_rows ON tasks USING (tenant = (SELECT m.tenant FROM members m WHERE m.role = current_user))" \
  -c "SELECT orch_lease.register_task_table('tasks')" >/dev/null
acquire() { q -U "$actor" -c "SELECT outcome FROM orch_lease.transition_lease_acquire('$1', 'a', 30, 'g17-boot')"; }
[ "$(acquire 5)" = acquired ] || red "baseline acquire of a task of the caller's tenant"
# A migration of the membership table, left open.
PGAPPNAME=g17_migration "$PSQL" -X -q -d "$db" -c "BEGIN" -c "LOCK TABLE members IN ACCESS EXCLUSIVE MODE" -c "SELECT pg_sleep(30)" >/dev/null 2>&1 &
migration=$!
for _ in $(seq 50); do
    [ "$(q -c "SELECT count(*) FROM pg_locks WHERE relation = 'members'::regclass AND mode = 'AccessExclusiveLock' AND granted")" = 1 ] && break
    sleep 0.1
done
started=$(date +%s%N)
got=$(q -U "$actor" -c "SET statement_timeout = '10s'" \
        -c "SELECT outcome FROM orch_lease.transition_lease_acquire('6', 'a', 30, 'g17-boot')" 2>&1 | tail -1 || true) # || true: an error is the answer, checked next
took=$(( ($(date +%s%N) - started) / 1000000 ))
[ "$got" = busy ] || red "acquire behind the policy table's lock: $got after $took ms"
[ "$took" -lt 3000 ] || red "acquire answered busy only after $took ms"
got=$(q -q -U "$actor" -c "SET lock_timeout = '500ms'" -c "BEGIN" \
        -c "SELECT outcome FROM orch_lease.transition_lease_acquire('7', 'a', 30, 'g17-boot')" \
        -c "SELECT 'usable'" -c "COMMIT" 2>&1 | tr '\n' ' ' || true) # || true: an error is the answer, checked next
[ "$got" = "busy usable " ] || red "with lock_timeout set, acquire and the caller's transaction: $got"
[ "$(q -c "SELECT count(*) FROM orch_lease.transition_lease WHERE work_item IN ('6', '7')")" = 0 ] ||
    red "a busy acquire left a lease"
end_migration
migration=""
[ "$(acquire 6)" = acquired ] || red "acquire once the migration ended"
echo "acquire-behind-policy-lock: busy at once behind a lock the policy needs, the caller's transaction kept"
