#!/usr/bin/env bash
# red2 F2: a prepared transaction counted a lease event in its backend slot's event_count row; a REPEATABLE
# READ transaction of a later session given that slot takes its snapshot, then the prepared transaction
# commits, then that session's next grant counts in the slot's row: 40001 ("could not serialize access due
# to concurrent update"), an error the caller's contention did not cause and the caller's transaction is
# lost. Needs a server with max_prepared_transactions > 0 and orch_lease installed; libpq environment
# (PGHOST, PGPORT, PGDATABASE) and PSQL (default psql) say where. Exit 1 = red.
set -euo pipefail
PSQL=${PSQL:-psql}
q() { "$PSQL" -X -v ON_ERROR_STOP=1 -At -U postgres "$@"; }
q -c "CREATE EXTENSION IF NOT EXISTS orch_lease" >/dev/null
trap 'q -c "ROLLBACK PREPARED '"'"'red2_f2'"'"'" >/dev/null 2>&1 || true' EXIT
# One counted grant in a transaction left prepared: it holds its slot's counter row and the slot's lock.
q -c "BEGIN" \
  -c "SELECT acquired FROM orch_lease.transition_lease_acquire('red2-f2-m', 'm', 1, 'red2-f2-m-boot')" \
  -c "PREPARE TRANSACTION 'red2_f2'" >/dev/null
commit_prepared="$PSQL -X -At -U postgres -c \"COMMIT PREPARED 'red2_f2'\""
slots=$(q -c "SHOW max_connections")
for i in $(seq 1 $((slots + 10))); do
    # A session counts in a row of its own transaction (shard < 0) only while a prepared transaction holds
    # its slot: then it is the session this is about. It commits the prepared transaction after its
    # snapshot was taken, and calls again.
    # || true: psql's status is not the verdict, its output is: an ERROR fails below, and a session whose
    # output has neither an ERROR nor the second call is not on the slot (none at all fails at the end).
    out=$("$PSQL" -X -At -U postgres 2>&1 <<SQL || true
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT outcome FROM orch_lease.transition_lease_acquire('red2-f2-a-$i', 'a', 1, 'red2-f2-a-boot');
SELECT EXISTS (SELECT FROM orch_lease.event_count WHERE shard = -(txid_current() % 2147483647)::integer)
       AS on_the_slot \gset
\if :on_the_slot
\! $commit_prepared >/dev/null
SELECT 'second call: ' || outcome FROM orch_lease.transition_lease_acquire('red2-f2-b-$i', 'a', 1, 'red2-f2-a-boot');
\endif
COMMIT;
SQL
)
    case "$out" in
        *ERROR*)
            q -c "DELETE FROM orch_lease.transition_lease WHERE work_item LIKE 'red2-f2-%'" >/dev/null
            echo "FAIL: the session on the prepared transaction's slot raised: ${out//$'\n'/ | }"
            exit 1 ;;
        *"second call"*)
            q -c "DELETE FROM orch_lease.transition_lease WHERE work_item LIKE 'red2-f2-%'" >/dev/null
            echo "ok: session $i, on the prepared transaction's slot, went on after its COMMIT PREPARED"
            # The row of its own it counted in first is folded into slot 0 by prune (red3 F3), the sums kept.
            sums="SELECT event || '/' || outcome || '=' || sum(n) FROM orch_lease.event_count
                   GROUP BY event, outcome ORDER BY 1"
            before=$(q -c "$sums")
            [ "$(q -c "SELECT count(*) FROM orch_lease.event_count WHERE shard < 0")" != 0 ] ||
                { echo "FAIL: no count in a transaction's own row to fold"; exit 1; }
            q -c "SELECT orch_lease.transition_lease_prune('100 years')" >/dev/null
            left=$(q -c "SELECT count(*) FROM orch_lease.event_count WHERE shard < 0")
            [ "$left" = 0 ] || { echo "FAIL: prune left $left counts in transactions' own rows"; exit 1; }
            [ "$(q -c "$sums")" = "$before" ] || { echo "FAIL: folding changed the sums"; exit 1; }
            echo "ok: prune folded the transaction's own counts into slot 0, sums unchanged"
            exit 0 ;;
    esac
done
echo "FAIL: no session was given the prepared transaction's slot"
exit 1
