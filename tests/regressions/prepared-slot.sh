#!/usr/bin/env bash
# red2 F1: a prepared transaction that counted a lease event keeps its backend slot's event_count rows
# locked; any later session given that slot then waits (or, under lock_timeout, fails with 55P03) on
# an acquire of an unrelated item. "Contention never raises" and "no two sessions wait on one counter
# row" both fail. Needs a server with max_prepared_transactions > 0 and orch_lease installed; libpq
# environment (PGHOST, PGPORT, PGDATABASE) and PSQL (default psql) say where. Exit 1 = red.
set -euo pipefail
PSQL=${PSQL:-psql}
q() { "$PSQL" -X -v ON_ERROR_STOP=1 -At "$@"; }
q -U postgres -c "CREATE EXTENSION IF NOT EXISTS orch_lease" \
  -c "DO \$\$BEGIN CREATE ROLE red2_m LOGIN IN ROLE orch_lease_actor; EXCEPTION WHEN duplicate_object THEN NULL; END\$\$" \
  -c "DO \$\$BEGIN CREATE ROLE red2_a LOGIN IN ROLE orch_lease_actor; EXCEPTION WHEN duplicate_object THEN NULL; END\$\$" >/dev/null
trap 'q -U postgres -c "ROLLBACK PREPARED '"'"'red2_hold'"'"'" >/dev/null 2>&1 || true' EXIT
# The hostile actor: one counted grant inside a transaction it prepares and leaves.
q -U red2_m -c "BEGIN" \
  -c "SELECT acquired FROM orch_lease.transition_lease_acquire('red2-m-' || pg_backend_pid(), 'm', 1, 'red2-m-boot')" \
  -c "PREPARE TRANSACTION 'red2_hold'" >/dev/null
slots=$(q -U postgres -c "SHOW max_connections")
failed=0
for i in $(seq 1 $((slots + 10))); do
    out=$("$PSQL" -X -At -U red2_a -c "SET lock_timeout = '1s'" \
          -c "SELECT acquired FROM orch_lease.transition_lease_acquire('red2-a-$i', 'a', 1, 'red2-a-boot')" 2>&1 || true)
    case "$out" in
        *ERROR*) echo "session $i: ${out//$'\n'/ | }"; failed=$((failed + 1)) ;;
    esac
done
q -U postgres -c "DELETE FROM orch_lease.transition_lease WHERE work_item LIKE 'red2-a-%'" >/dev/null
if [ "$failed" -ne 0 ]; then
    echo "FAIL: $failed session(s) on the prepared transaction's slot raised instead of being granted"
    exit 1
fi
echo "ok: $((slots + 10)) sessions granted, none waited on the prepared transaction's counter rows"
