#!/usr/bin/env bash
# red2 F2: a REPEATABLE READ (or SERIALIZABLE) caller on the backend slot of a prepared transaction that
# counted: when that transaction is committed (COMMIT PREPARED) after the caller's snapshot, the caller's
# next counted event updates a counter row changed since its snapshot: 40001, its transaction aborted by
# a race it had no part in. Same environment as prepared-slot.sh. Exit 1 = red.
set -euo pipefail
PSQL=${PSQL:-psql}
q() { "$PSQL" -X -v ON_ERROR_STOP=1 -At "$@"; }
q -U postgres -c "DO \$\$BEGIN CREATE ROLE red2_m LOGIN IN ROLE orch_lease_actor; EXCEPTION WHEN duplicate_object THEN NULL; END\$\$" \
  -c "DO \$\$BEGIN CREATE ROLE red2_o LOGIN IN ROLE orch_lease_admin; EXCEPTION WHEN duplicate_object THEN NULL; END\$\$" >/dev/null
trap 'q -U postgres -c "ROLLBACK PREPARED '"'"'red2_snap'"'"'" >/dev/null 2>&1 || true' EXIT
q -U red2_m -c "BEGIN" \
  -c "SELECT acquired FROM orch_lease.transition_lease_acquire('red2-s-' || pg_backend_pid(), 'm', 1, 'red2-m-boot')" \
  -c "PREPARE TRANSACTION 'red2_snap'" >/dev/null
slots=$(q -U postgres -c "SHOW max_connections")
commit_prepared="$PSQL -X -At -U postgres -c \"COMMIT PREPARED 'red2_snap'\""
for i in $(seq 1 $((slots + 10))); do
    # Is this session on the prepared transaction's slot? Its count cannot use the slot's row: it
    # either waits (lock_timeout: 55P03) or goes to a shard of its own transaction (below 0).
    out=$("$PSQL" -X -At -U red2_o 2>&1 <<SQL || true
SET lock_timeout = '200ms';
\set ON_ERROR_STOP 0
BEGIN;
SELECT acquired FROM orch_lease.transition_lease_acquire('red2-probe-$i', 'o', 1, 'red2-o-boot');
SELECT coalesce(min(shard) < 0, true) AS on_slot FROM orch_lease.event_count
 WHERE xmin::text = (pg_catalog.txid_current() % 4294967296)::text \gset
ROLLBACK;
\if :{?on_slot}
\else
\set on_slot t
\endif
\if :on_slot
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT 'snapshot taken';
\! $commit_prepared
SELECT acquired FROM orch_lease.transition_lease_acquire('red2-rr-$i', 'o', 1, 'red2-o-boot');
COMMIT;
\echo ON_SLOT
\endif
SQL
)
    case "$out" in
        *ON_SLOT*)
            q -U postgres -c "DELETE FROM orch_lease.transition_lease WHERE work_item LIKE 'red2-rr-%'" >/dev/null
            if [[ "$out" == *ERROR* ]]; then
                echo "FAIL: session $i: ${out//$'\n'/ | }"
                exit 1
            fi
            echo "ok: session $i on the slot, granted after COMMIT PREPARED under REPEATABLE READ"
            exit 0 ;;
    esac
done
echo "FAIL: no session landed on the prepared transaction's slot"
exit 1
