#!/usr/bin/env bash
# #29 item 8: a prepared transaction (or a session idle in transaction) that acquired under a boot, or
# began to end a lease, keeps its row locks until someone commits or rolls it back, across restarts.
# takeover (the on-call tool) and force_release waited for it without bound. Each must answer within
# its bound (5 s): takeover 55P03 naming the cause, force_release false; and the runbook's query finds
# the transaction. Same environment as prepared-slot.sh. Exit 1 = red.
set -euo pipefail
PSQL=${PSQL:-psql}
q() { "$PSQL" -X -v ON_ERROR_STOP=1 -At "$@"; }
q -U postgres -c "CREATE EXTENSION IF NOT EXISTS orch_lease" \
  -c "DO \$\$BEGIN CREATE ROLE red29_p LOGIN IN ROLE orch_lease_actor; EXCEPTION WHEN duplicate_object THEN NULL; END\$\$" \
  -c "DO \$\$BEGIN CREATE ROLE red29_adm LOGIN IN ROLE orch_lease_admin; EXCEPTION WHEN duplicate_object THEN NULL; END\$\$" >/dev/null
cleanup() {
    local gid
    for gid in red29_boot red29_release; do
        q -U postgres -c "ROLLBACK PREPARED '$gid'" >/dev/null 2>&1 || true
    done
    q -U postgres -c "DELETE FROM orch_lease.transition_lease WHERE work_item LIKE 'red29-%'" >/dev/null
}
trap cleanup EXIT
instance="red29-$$"
token=$(q -U red29_p -c "SELECT count(*) FROM orch_lease.transition_lease_recover('$instance-b1', '$instance')" \
          -c "SELECT token FROM orch_lease.transition_lease_acquire('$instance-released', 'p', 1, '$instance-b1')" | tail -1)
# One prepared transaction share-locks the boot (an acquire under it), another deletes a lease (a release).
q -U red29_p -c "BEGIN" \
  -c "SELECT outcome FROM orch_lease.transition_lease_acquire('$instance-held', 'p', 1, '$instance-b1')" \
  -c "PREPARE TRANSACTION 'red29_boot'" >/dev/null
q -U red29_p -c "BEGIN" -c "SELECT orch_lease.transition_lease_release('$instance-released', $token)" \
  -c "PREPARE TRANSACTION 'red29_release'" >/dev/null
failed=0
# answer NAME EXPECTED SQL: the first line of what SQL answered (or its SQLSTATE), within 8 s.
answer() {
    local started out took
    started=$(date +%s%N)
    out=$("$PSQL" -X -At -U red29_adm -v VERBOSITY=verbose -c "SET statement_timeout = '20s'" -c "$3" 2>&1 | head -2 | tail -1 || true) # || true: errors are answers here
    took=$(( ($(date +%s%N) - started) / 1000000 ))
    if { [ "$out" != "$2" ] && [[ "$out" != *"ERROR:  $2:"* ]]; } || [ "$took" -gt 8000 ]; then
        echo "FAIL: $1 answered after $took ms: $out (expected $2 within 8 s)"
        failed=$((failed + 1))
    else
        echo "ok: $1 answered $2 after $took ms"
    fi
}
answer "takeover under a prepared acquire" "55P03" \
       "SELECT count(*) FROM orch_lease.transition_lease_takeover('$instance-b2', '$instance')"
answer "force_release under a prepared release" "f" \
       "SELECT orch_lease.transition_lease_force_release('$instance-released', NULL, 'stuck')"
# The takeover's 55P03 names the prepared transaction that holds it up (red team of #34, F11: it named
# nobody), so that on call knows what to roll back.
detail=$("$PSQL" -X -At -U red29_adm -v VERBOSITY=verbose -c "SET statement_timeout = '20s'" \
           -c "SELECT count(*) FROM orch_lease.transition_lease_takeover('$instance-b3', '$instance')" 2>&1 |
         sed -n 's/^DETAIL: *//p' || true) # || true: the 55P03 is the answer looked at here
if [[ "$detail" != *"prepared transaction 'red29_boot'"* ]]; then
    echo "FAIL: the takeover's 55P03 does not name the prepared transaction red29_boot: $detail"
    failed=$((failed + 1))
else
    echo "ok: the takeover's 55P03 names prepared transaction red29_boot"
fi
# The runbook's look (docs/runbook.md, "A transaction that holds an item") finds both.
found=$(q -U postgres -c "SELECT count(*) FROM pg_prepared_xacts WHERE gid LIKE 'red29_%'")
if [ "$found" != 2 ]; then
    echo "FAIL: pg_prepared_xacts shows $found of the 2 prepared transactions"
    failed=$((failed + 1))
fi
[ "$failed" -eq 0 ] || exit 1
