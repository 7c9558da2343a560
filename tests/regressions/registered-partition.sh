#!/usr/bin/env bash
# Red team of #29.10: the bypass guard took every partition's write for a write of the topmost
# partitioned table, so when a partition itself is the registered task table, its guard refused every CAS
# (reject) or logged it as a bypass (warn). A CAS on a registered partition must apply, and a bare UPDATE
# must still be refused. Runs in a database of its own. Exit 1 = red.
set -euo pipefail
PSQL=${PSQL:-psql}
db=orch_lease_registered_partition
"$PSQL" -X -q -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
trap '"$PSQL" -X -q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"' EXIT
q() { "$PSQL" -X -v ON_ERROR_STOP=1 -At -d "$db" "$@"; }
q -c "CREATE EXTENSION orch_lease" \
  -c "CREATE TABLE jobs (id bigint, kind text, stage text NOT NULL, PRIMARY KEY (id, kind)) PARTITION BY LIST (kind)" \
  -c "CREATE TABLE deploy_jobs PARTITION OF jobs (UNIQUE (id)) FOR VALUES IN ('deploy')" \
  -c "INSERT INTO jobs VALUES (1, 'deploy', 'queued'), (2, 'deploy', 'queued')" \
  -c "SELECT orch_lease.register_task_table('deploy_jobs')" \
  -c "SELECT orch_lease.install_bypass_guard('reject')" >/dev/null
# || true: an error is an answer here, checked next
answer=$(q -c "SELECT outcome FROM orch_lease.update_task_stage_cas('1', 'queued', 'merged')" 2>&1 || true)
[ "$answer" = applied ] || { echo "registered-partition: the CAS on a registered partition answered: $answer"; exit 1; }
if q -c "UPDATE deploy_jobs SET stage = 'merged' WHERE id = 2" >/dev/null 2>&1; then
    echo "registered-partition: a bare UPDATE of the registered partition passed the guard"
    exit 1
fi
echo "registered-partition: the CAS on a registered partition applies; a bare UPDATE is refused"
