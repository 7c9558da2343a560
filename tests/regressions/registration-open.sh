#!/usr/bin/env bash
# Red team F2 (#29 items 2, 4, 8): a registration left open or prepared holds orch_lease.task_table in
# ACCESS EXCLUSIVE mode, and every call that keys a work item waited for it without bound (acquire, held,
# the CAS, liveness, and the on-call force_release of a spelling that is not the exact key). Each must
# give up within the bound (5 s, or the caller's shorter lock_timeout) with a clear 55P03 naming the open
# registration. The on-call's force_release of a lease by the exact text it is held under needs no keying:
# it answers at once, the table named or not (red team G13: it waited too, since #27). Runs in a database
# of its own; needs max_prepared_transactions > 0. Exit 1 = red.
set -euo pipefail
PSQL=${PSQL:-psql}
db=orch_lease_registration_open
"$PSQL" -X -q -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
trap '"$PSQL" -X -q -d "$db" -c "ROLLBACK PREPARED '"'"'f2_reg'"'"'" >/dev/null 2>&1 || true
      "$PSQL" -X -q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"' EXIT
q() { "$PSQL" -X -v ON_ERROR_STOP=1 -At -d "$db" "$@"; }
q -c "CREATE EXTENSION orch_lease" \
  -c "CREATE TABLE tasks (id bigint PRIMARY KEY, stage text NOT NULL)" \
  -c "INSERT INTO tasks VALUES (7, 'queued'), (9, 'queued'), (11, 'queued'), (12, 'queued'), (13, 'queued')" \
  -c "SELECT orch_lease.register_task_table('tasks')" \
  -c "SELECT a.token FROM unnest(ARRAY['7', '11', '12']) id,
             orch_lease.transition_lease_acquire(id, 'w', 1, 'boot-w') a" \
  -c "SELECT count(*) FROM orch_lease.transition_lease_recover('boot-t', 'oncall')" \
  -c "SELECT outcome FROM orch_lease.transition_lease_acquire('13', 't', 1, 'boot-t')" >/dev/null
q -c "BEGIN" \
  -c "SELECT orch_lease.register_stage_graph(ARRAY['queued -> running'], ARRAY['done'])" \
  -c "PREPARE TRANSACTION 'f2_reg'" >/dev/null
for sql in "SELECT outcome FROM orch_lease.transition_lease_acquire('8', 'w', 1, 'boot-w')" \
           "SELECT orch_lease.transition_lease_held('7', 1)" \
           "SELECT outcome FROM orch_lease.update_task_stage_cas('9', 'queued', 'running')" \
           "SELECT orch_lease.transition_lease_liveness('7')" \
           "SELECT orch_lease.transition_lease_force_release('07', NULL, 'incident')"; do
    start=$(date +%s%N)
    # || true: the error is the answer, checked next; statement_timeout stops the unfixed build's wait
    answer=$(PGOPTIONS="-c statement_timeout=15s" "$PSQL" -X -At -d "$db" -v VERBOSITY=verbose -c "$sql" 2>&1 || true)
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    case "$answer" in
        *"55P03"*"a registration of the task table is still open"*) ;;
        *) echo "registration-open: $sql answered after $ms ms: ${answer//$'\n'/ | }"; exit 1 ;;
    esac
    [ "$ms" -lt 8000 ] || { echo "registration-open: $sql waited $ms ms"; exit 1; }
    echo "ok: $sql gave up after $ms ms with 55P03"
done
# The exact held text, as the status view shows it: ended at once (statement_timeout stops a wait).
# So do the other on-call tools, which key nothing: takeover, recover, reap, hand_over.
for sql in "SELECT orch_lease.transition_lease_force_release('11', NULL, 'incident')" \
           "SELECT orch_lease.transition_lease_force_release('12', NULL, 'incident', task_table => 'tasks')" \
           "SELECT count(*) = 1 FROM orch_lease.transition_lease_takeover('boot-t2', 'oncall')" \
           "SELECT count(*) = 0 FROM orch_lease.transition_lease_recover('boot-t3', 'oncall')" \
           "SELECT count(*) = 0 FROM orch_lease.transition_lease_reap(3600)" \
           "SELECT orch_lease.transition_lease_hand_over('oncall', 'postgres') IS NOT NULL"; do
    start=$(date +%s%N)
    answer=$(PGOPTIONS="-c statement_timeout=15s" "$PSQL" -X -At -d "$db" -c "$sql" 2>&1 || true) # || true: checked next
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    [ "$answer" = t ] || { echo "registration-open: $sql answered after $ms ms: ${answer//$'\n'/ | }"; exit 1; }
    [ "$ms" -lt 1000 ] || { echo "registration-open: $sql took $ms ms"; exit 1; }
    echo "ok: $sql answered in $ms ms"
done
# The caller's shorter lock_timeout is the bound.
start=$(date +%s%N)
PGOPTIONS="-c lock_timeout=200ms" "$PSQL" -X -At -d "$db" -c "SELECT orch_lease.transition_lease_held('7', 1)" >/dev/null 2>&1 &&
    { echo "registration-open: held answered under an open registration"; exit 1; }
ms=$(( ($(date +%s%N) - start) / 1000000 ))
[ "$ms" -lt 2000 ] || { echo "registration-open: lock_timeout=200ms, waited $ms ms"; exit 1; }
echo "ok: with lock_timeout = 200ms, gave up after $ms ms"
q -c "ROLLBACK PREPARED 'f2_reg'" >/dev/null
[ "$(q -c "SELECT orch_lease.transition_lease_held('7', 1)")" = t ] || { echo "registration-open: held after the rollback"; exit 1; }
echo "ok: once the registration ended, calls answer again"
