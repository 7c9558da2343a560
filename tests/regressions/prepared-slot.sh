#!/usr/bin/env bash
# red2 F1: a prepared transaction that counted a lease event keeps its backend slot's event_count rows
# locked; any later session given that slot then waits (or, under lock_timeout, fails with 55P03) on
# an acquire of an unrelated item. "Contention never raises" and "no two sessions wait on one counter
# row" both fail. Needs a server with max_prepared_transactions > 0 and orch_lease installed; libpq
# environment (PGHOST, PGPORT, PGDATABASE) and PSQL (default psql) say where. Exit 1 = red.
# Every session must be granted (its acquire answers true), whatever psql prints otherwise (an ERROR, a
# FATAL, nothing) fails it, and at least one session must have been given the prepared transaction's
# slot (it counted in a row of its own transaction, as prepared-snapshot.sh checks): a run in which no
# session landed there proves nothing.
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
xids=()
for i in $(seq 1 $((slots + 10))); do
    # One transaction: the grant, and its xid. A session counts in a row of its own transaction (shard
    # -xid) only while a prepared transaction holds its slot: those rows say which sessions landed there.
    status=0
    out=$("$PSQL" -X -q -At -v ON_ERROR_STOP=1 -U red2_a 2>&1 <<SQL
BEGIN;
SET LOCAL lock_timeout = '1s';
SELECT acquired FROM orch_lease.transition_lease_acquire('red2-a-$i', 'a', 1, 'red2-a-boot');
SELECT txid_current();
COMMIT;
SQL
) || status=$?
    if [ "$status" = 0 ] && [[ "$out" =~ ^t$'\n'([0-9]+)$ ]]; then
        xids+=("${BASH_REMATCH[1]}")
    else
        echo "session $i (psql exit $status): ${out//$'\n'/ | }"
        failed=$((failed + 1))
    fi
done
list=$(IFS=,; echo "${xids[*]}")
on_the_slot=$(q -U postgres -c "SELECT count(DISTINCT shard) FROM orch_lease.event_count
    WHERE shard < 0 AND -shard::bigint IN (SELECT x % 2147483647 FROM unnest('{$list}'::bigint[]) x)")
q -U postgres -c "DELETE FROM orch_lease.transition_lease WHERE work_item LIKE 'red2-a-%'" >/dev/null
if [ "$failed" -ne 0 ]; then
    echo "FAIL: $failed session(s) were not granted (above)"
    exit 1
fi
if [ "$on_the_slot" -eq 0 ]; then
    echo "FAIL: no session of $((slots + 10)) was given the prepared transaction's slot: nothing was tested"
    exit 1
fi
echo "ok: $((slots + 10)) sessions granted, $on_the_slot on the prepared transaction's slot; none waited on its counter rows"
