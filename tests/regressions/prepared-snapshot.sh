#!/usr/bin/env bash
# red2 F2: a prepared transaction counted a lease event in its backend slot's counter row (0.4.0); a
# REPEATABLE READ transaction of a later session given that slot took its snapshot, then the prepared
# transaction committed, then that session's next grant counted in the slot's row: 40001, an error the
# caller's contention did not cause, and the caller's transaction lost. Since 0.5.0 a count is a
# sequence's nextval, which no snapshot can conflict with: the second grant must go on, and both
# counted. Needs a server with max_prepared_transactions > 0 and orch_lease installed; libpq environment
# (PGHOST, PGPORT, PGDATABASE) and PSQL (default psql) say where. Exit 1 = red.
set -euo pipefail
PSQL=${PSQL:-psql}
q() { "$PSQL" -X -v ON_ERROR_STOP=1 -At -U postgres "$@"; }
q -c "CREATE EXTENSION IF NOT EXISTS orch_lease" >/dev/null
trap 'q -c "ROLLBACK PREPARED '"'"'red2_f2'"'"'" >/dev/null 2>&1 || true' EXIT
grants="SELECT value::bigint FROM orch_lease.transition_lease_metrics()
         WHERE metric = 'orch_lease_grants_total' AND label = 'acquired'"
# One counted grant in a transaction left prepared.
q -c "BEGIN" \
  -c "SELECT acquired FROM orch_lease.transition_lease_acquire('red2-f2-m', 'm', 1, 'red2-f2-m-boot')" \
  -c "PREPARE TRANSACTION 'red2_f2'" >/dev/null
before=$(q -c "$grants")
commit_prepared="$PSQL -X -At -U postgres -c \"COMMIT PREPARED 'red2_f2'\""
# || true: psql's status is not the verdict, its output is.
out=$("$PSQL" -X -At -U postgres 2>&1 <<SQL || true
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT outcome FROM orch_lease.transition_lease_acquire('red2-f2-a', 'a', 1, 'red2-f2-a-boot');
\! $commit_prepared >/dev/null
SELECT 'second call: ' || outcome FROM orch_lease.transition_lease_acquire('red2-f2-b', 'a', 1, 'red2-f2-a-boot');
COMMIT;
SQL
)
after=$(q -c "$grants")
q -c "DELETE FROM orch_lease.transition_lease WHERE work_item LIKE 'red2-f2-%'" >/dev/null
case "$out" in
    *ERROR*) echo "FAIL: the session raised: ${out//$'\n'/ | }"; exit 1 ;;
    *"second call: acquired"*) ;;
    *) echo "FAIL: the second call did not answer acquired: ${out//$'\n'/ | }"; exit 1 ;;
esac
[ $((after - before)) = 2 ] || { echo "FAIL: two grants, the counter moved by $((after - before))"; exit 1; }
echo "ok: a REPEATABLE READ session went on after a prepared transaction that counted committed; both grants counted"
