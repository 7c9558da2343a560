#!/usr/bin/env bash
# red2 F3: the reaper measures ages from statement_timestamp(), which inside a procedure that commits
# between sweeps stays the CALL's start: a reaper loop run as a procedure never reaps a lease acquired
# after it started, however old it grows (and would report a wrong age). Same environment as
# prepared-slot.sh. Exit 1 = red.
set -euo pipefail
PSQL=${PSQL:-psql}
q() { "$PSQL" -X -v ON_ERROR_STOP=1 -At "$@"; }
q -U postgres -c "DO \$\$BEGIN CREATE ROLE red2_a LOGIN IN ROLE orch_lease_actor; EXCEPTION WHEN duplicate_object THEN NULL; END\$\$" \
  -c "DELETE FROM orch_lease.transition_lease WHERE work_item = 'red2-reap-me'" >/dev/null
out=$(mktemp); trap 'rm -f "$out"' EXIT
# The reaper: sweep, commit, sleep 3 s, sweep again with a ceiling of 2 s.
q -U postgres >"$out" 2>&1 <<'SQL' &
CREATE PROCEDURE pg_temp.red2_reap_twice() LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
    PERFORM count(*) FROM orch_lease.transition_lease_reap(86400);
    COMMIT;
    PERFORM pg_sleep(3);
    SELECT count(*) INTO n FROM orch_lease.transition_lease_reap(2) WHERE work_item = 'red2-reap-me';
    RAISE NOTICE 'second sweep reaped %', n;
END $$;
CALL pg_temp.red2_reap_twice();
SQL
reaper=$!
sleep 0.5
q -U red2_a -c "SELECT acquired FROM orch_lease.transition_lease_acquire('red2-reap-me', 'a', 1, 'red2-a-boot')" >/dev/null
wait "$reaper"
left=$(q -U postgres -c "SELECT count(*) FROM orch_lease.transition_lease WHERE work_item = 'red2-reap-me'")
q -U postgres -c "DELETE FROM orch_lease.transition_lease WHERE work_item = 'red2-reap-me'" >/dev/null
grep -o 'second sweep reaped [0-9]*' "$out"
if [ "$left" != 0 ]; then
    echo "FAIL: a lease held about 2.5 s outlived a sweep with a ceiling of 2 s"
    exit 1
fi
echo "ok: the second sweep reaped the lease over the ceiling"
