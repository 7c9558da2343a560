#!/usr/bin/env bash
# red2 F4: recover stamped superseded_at with statement_timestamp(), which a procedure keeps at its CALL
# across COMMITs: a boot superseded 2 s after it was registered shows superseded_at before its own
# registered_at (and prune judges its age by that). Same environment as prepared-slot.sh. Exit 1 = red.
set -euo pipefail
PSQL=${PSQL:-psql}
q() { "$PSQL" -X -v ON_ERROR_STOP=1 -At "$@"; }
instance="red2-proc-$$"
q -U postgres -c "CREATE PROCEDURE pg_temp.red2_two_boots() LANGUAGE plpgsql AS \$\$
BEGIN
    PERFORM count(*) FROM orch_lease.transition_lease_recover('$instance-b1', '$instance');
    COMMIT;
    PERFORM pg_sleep(2);
    PERFORM count(*) FROM orch_lease.transition_lease_takeover('$instance-b2', '$instance');
END \$\$" -c "CALL pg_temp.red2_two_boots()" >/dev/null
shown=$(q -U postgres -c "SELECT superseded_at >= registered_at FROM orch_lease.boot WHERE boot_id = '$instance-b1'")
q -U postgres -c "DELETE FROM orch_lease.boot WHERE instance = '$instance'" >/dev/null
if [ "$shown" != t ]; then
    echo "FAIL: boot $instance-b1 superseded before it was registered"
    exit 1
fi
echo "ok: superseded_at is the time of the superseding call"
