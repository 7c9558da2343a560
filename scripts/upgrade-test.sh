#!/usr/bin/env bash
# The upgrade path, against the running throwaway cluster (from scripts/test.sh): install the frozen
# 0.1.0 script, make leases, boots, events and tasks, ALTER EXTENSION orch_lease UPDATE, and check that
# nothing was lost and that the upgraded schema is exactly a fresh install's.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT_DIR"
privileged cp sql/orch_lease--0.1.0.sql "$("$PG_CONFIG" --sharedir)/extension/"

q() { psql -X -q -t -A -v ON_ERROR_STOP=1 -d "$1" -c "$2"; }
for db in orch_lease_upgraded orch_lease_fresh; do "$PG_BIN/dropdb" --if-exists "$db"; "$PG_BIN/createdb" "$db"; done

q orch_lease_upgraded "CREATE EXTENSION orch_lease VERSION '0.1.0'"
# Data made through the 0.1.0 schema. (The library is already the new one; its functions that read
# tables of the new version cannot run until the update, so the tasks' stages are set with plain SQL.)
q orch_lease_upgraded "
    CREATE TABLE tasks (id bigint PRIMARY KEY, stage text NOT NULL);
    INSERT INTO tasks SELECT i, CASE WHEN i % 2 = 0 THEN 'merged' ELSE 'queued' END FROM generate_series(1, 50) i;
    SELECT orch_lease.register_task_table('tasks');
    SELECT count(*) FROM orch_lease.transition_lease_recover('boot-1', 'orchestrator', 1);
    SELECT count(*) FROM generate_series(1, 20) i, LATERAL orch_lease.transition_lease_acquire(i::text, 'monitor', 1, 'boot-1') g;
    SELECT orch_lease.transition_lease_force_release('20', NULL, 'before the upgrade');" >/dev/null
fingerprint="SELECT md5(string_agg(r, '|' ORDER BY r)) FROM (
    SELECT l::text AS r FROM orch_lease.transition_lease l UNION ALL SELECT b::text FROM orch_lease.boot b
    UNION ALL SELECT e::text FROM orch_lease.lease_event e UNION ALL SELECT t::text FROM tasks t
    UNION ALL SELECT last_value::text FROM orch_lease.token_seq) rows"
before=$(q orch_lease_upgraded "$fingerprint")

q orch_lease_upgraded "ALTER EXTENSION orch_lease UPDATE"
version=$(q orch_lease_upgraded "SELECT extversion FROM pg_extension WHERE extname = 'orch_lease'")
after=$(q orch_lease_upgraded "$fingerprint")
[ "$before" = "$after" ] || { echo "upgrade: leases, boots, events or stages changed"; exit 1; }

# The upgraded install works: the leases made before it can be committed.
outcome=$(q orch_lease_upgraded "SELECT outcome FROM orch_lease.commit_stage_cas('1', (SELECT token FROM orch_lease.transition_lease WHERE work_item = '1'), 'queued', 'merged')")
[ "$outcome" = applied ] || { echo "upgrade: a lease made before the update does not commit ($outcome)"; exit 1; }

q orch_lease_fresh "CREATE EXTENSION orch_lease"
q orch_lease_upgraded "$(cat tests/upgrade/schema.sql)" > target/schema-upgraded.txt
q orch_lease_fresh "$(cat tests/upgrade/schema.sql)" > target/schema-fresh.txt
if ! diff -u target/schema-fresh.txt target/schema-upgraded.txt; then
    echo "upgrade: the upgraded schema differs from a fresh $version install (above)"
    exit 1
fi
echo "upgrade 0.1.0 -> $version: data kept, schema identical to a fresh install ($(wc -l < target/schema-fresh.txt) facts)"
echo "upgrade: 1 passed, 0 failed"
