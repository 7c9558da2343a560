#!/usr/bin/env bash
# red2 F1: a prepared transaction that counted a lease event kept its counter row locked (0.4.0: a row per
# backend slot); any later session given that slot then waited (or, under lock_timeout, failed with
# 55P03) on an acquire of an unrelated item. Since 0.5.0 a count is a sequence's nextval, which locks
# nothing: every session, on whatever slot, must be granted at once. Needs a server with
# max_prepared_transactions > 0 and orch_lease installed; libpq environment (PGHOST, PGPORT, PGDATABASE)
# and PSQL (default psql) say where. Exit 1 = red.
# Every session must be granted (its acquire answers true), whatever psql prints otherwise (an ERROR, a
# FATAL, nothing) fails it; the grants counter must have counted every one.
set -euo pipefail
PSQL=${PSQL:-psql}
q() { "$PSQL" -X -v ON_ERROR_STOP=1 -At "$@"; }
q -U postgres -c "CREATE EXTENSION IF NOT EXISTS orch_lease" \
  -c "DO \$\$BEGIN CREATE ROLE red2_m LOGIN IN ROLE orch_lease_actor; EXCEPTION WHEN duplicate_object THEN NULL; END\$\$" \
  -c "DO \$\$BEGIN CREATE ROLE red2_a LOGIN IN ROLE orch_lease_actor; EXCEPTION WHEN duplicate_object THEN NULL; END\$\$" >/dev/null
trap 'q -U postgres -c "ROLLBACK PREPARED '"'"'red2_hold'"'"'" >/dev/null 2>&1 || true' EXIT
grants="SELECT value::bigint FROM orch_lease.transition_lease_metrics()
         WHERE metric = 'orch_lease_grants_total' AND label = 'acquired'"
# The hostile actor: one counted grant inside a transaction it prepares and leaves.
q -U red2_m -c "BEGIN" \
  -c "SELECT acquired FROM orch_lease.transition_lease_acquire('red2-m-' || pg_backend_pid(), 'm', 1, 'red2-m-boot')" \
  -c "PREPARE TRANSACTION 'red2_hold'" >/dev/null
before=$(q -U postgres -c "$grants")
slots=$(q -U postgres -c "SHOW max_connections")
sessions=$((slots + 10))
failed=0
for i in $(seq 1 "$sessions"); do
    status=0
    out=$("$PSQL" -X -q -At -v ON_ERROR_STOP=1 -U red2_a 2>&1 <<SQL
BEGIN;
SET LOCAL lock_timeout = '1s';
SELECT acquired FROM orch_lease.transition_lease_acquire('red2-a-$i', 'a', 1, 'red2-a-boot');
COMMIT;
SQL
) || status=$?
    if [ "$status" != 0 ] || [ "$out" != t ]; then
        echo "session $i (psql exit $status): ${out//$'\n'/ | }"
        failed=$((failed + 1))
    fi
done
after=$(q -U postgres -c "$grants")
q -U postgres -c "DELETE FROM orch_lease.transition_lease WHERE work_item LIKE 'red2-a-%'" >/dev/null
if [ "$failed" -ne 0 ]; then
    echo "FAIL: $failed session(s) were not granted (above)"
    exit 1
fi
if [ $((after - before)) -ne "$sessions" ]; then
    echo "FAIL: $sessions grants, the counter moved by $((after - before))"
    exit 1
fi
echo "ok: $sessions sessions granted and counted beside a prepared transaction that counted; none waited"
