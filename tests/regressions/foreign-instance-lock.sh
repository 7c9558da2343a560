#!/usr/bin/env bash
# Red team of #29 (F1): recover and takeover locked an instance's live boot row before checking the
# caller's right to it, and a takeover naming the instance's own live boot id answered without any role
# check, keeping that lock in the caller's transaction: an actor of another role that left it open (or
# prepared) froze every acquire, recover and takeover of the instance. Another role's takeover or recover
# must be refused (42501) and leave no lock behind. Exit 1 = red.
set -euo pipefail
PSQL=${PSQL:-psql}
q() { "$PSQL" -X -v ON_ERROR_STOP=1 -At "$@"; }
q -U postgres -c "CREATE EXTENSION IF NOT EXISTS orch_lease" \
  -c "DO \$\$BEGIN CREATE ROLE redf1_a LOGIN IN ROLE orch_lease_actor; EXCEPTION WHEN duplicate_object THEN NULL; END\$\$" \
  -c "DO \$\$BEGIN CREATE ROLE redf1_b LOGIN IN ROLE orch_lease_actor; EXCEPTION WHEN duplicate_object THEN NULL; END\$\$" >/dev/null
instance="redf1-$$"
q -U redf1_a -c "SELECT count(*) FROM orch_lease.transition_lease_recover('$instance-a1', '$instance')" >/dev/null
failed=0
for call in "transition_lease_takeover('$instance-a1', '$instance')" \
            "transition_lease_recover('$instance-a1', '$instance')" \
            "transition_lease_takeover('$instance-b1', '$instance')"; do
    # || true: the refusal is the answer, checked next
    out=$("$PSQL" -X -At -U redf1_b -v VERBOSITY=verbose -c "SELECT count(*) FROM orch_lease.$call" 2>&1 | head -1 || true)
    if [[ "$out" != "ERROR:  42501:"* ]]; then
        echo "foreign-instance-lock: redf1_b's $call answered '$out', not 42501"
        failed=1
    fi
done
# And the rightful role still recovers at once (no lock was left anywhere).
q -U redf1_a -c "SET lock_timeout = '1s'" -c "SELECT count(*) FROM orch_lease.transition_lease_recover('$instance-a2', '$instance')" >/dev/null
[ "$failed" = 0 ] || exit 1
echo "foreign-instance-lock: another role's takeover and recover of a live instance refused (42501)"
