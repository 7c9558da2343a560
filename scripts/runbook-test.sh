#!/usr/bin/env bash
# Runs every psql snippet of docs/runbook.md, in order, in a fresh database of the running throwaway
# cluster (from scripts/test.sh), and checks that they did what the runbook says; then the README's tour in
# a database that has leases already, and docs/operations.md's roles recipe in two databases of the cluster.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT_DIR"
SUITE=runbook
new_database orch_lease_runbook
run_snippets docs/runbook.md runbook
check "SELECT count(*) FROM orch_lease.lease_event WHERE event = 'forced' AND work_item = 'PR-130'" 1 \
      "section 2 force-released the stuck lease"
check "SELECT string_agg(event || ':' || outcome, ' ') FROM orch_lease.lease_event WHERE work_item = 'PR-131' AND event <> 'acquired'" "reaped:ceiling" \
      "section 2 reaped the lease over the age ceiling, and only that one"
check "SELECT stage FROM runbook_tasks WHERE id = 'job-1914'" deployed "section 3 moved the stage through the CAS"
check "SELECT string_agg(event || ':' || outcome, ' ') FROM orch_lease.lease_event WHERE work_item = 'job-1914' AND event <> 'acquired'" \
      "cas_applied:applied forced:forced" "section 3 ended the unknown holder's lease by hand"
check "SELECT string_agg(work_item || ':' || outcome, ' ') FROM orch_lease.lease_event WHERE event = 'reclaimed'" \
      "PR-132:recovered" "section 4's recover returned the old incarnation's lease"
check "SELECT count(*) FROM orch_lease.boot WHERE instance = 'monitor' AND superseded_at IS NULL" 1 \
      "section 4 left one live incarnation"
check "SELECT string_agg(outcome, ' ' ORDER BY event_id) FROM orch_lease.lease_event WHERE event = 'switched'" "off on" \
      "section 5 turned the kill-switch off and back on, recorded"
check "SELECT enabled FROM orch_lease.kill_switch()" t "section 5 turned the kill-switch back on"
# The output section 5 shows for its last verification is what psql prints (aligned, as on call).
shown=$(awk '/^```text$/ { n++; on = 1; block = ""; next } /^```$/ { if (on) last = block; on = 0 } on { block = block $0 "\n" }
             END { printf "%s", last }' <(sed -n '/^## 5\./,/^## 6\./p' docs/runbook.md))
verify=$(grep -m1 '^SELECT enabled, database_enabled, session_enabled, changed_by, reason FROM orch_lease.kill_switch();' docs/runbook.md)
printed=$(psql -X -c "$verify" | sed -e 's/ *$//')
assert "section 5 shows another output for its verification than psql prints: $printed" \
       [ "$printed" = "$(printf '%b' "$shown" | sed -e 's/ *$//')" ]
# Section 2's force_release, as the page spells it, after the lease was released and taken again: the new
# holder's lease (another token) must survive it.
stuck=$(grep -m1 "^SELECT orch_lease.transition_lease_force_release('PR-130'" docs/runbook.md)
q "SELECT outcome FROM orch_lease.transition_lease_acquire('PR-130', 'monitor', 4242, 'monitor-boot-8')" >/dev/null
check "$stuck" f "section 2's force_release with the token seen earlier spares a re-acquired lease"
check "SELECT count(*) FROM orch_lease.transition_lease WHERE work_item = 'PR-130'" 1 "the re-acquired lease survived"
# The same call with the new lease's token, while a registration is left prepared (section 10), which stops
# every call that keys a work item: it ends the lease at once (red team 2, G13: it waited 5 s, then 55P03).
# A failed check stops the script: the prepared transaction must not outlive it.
trap 'q "ROLLBACK PREPARED '"'"'runbook_registration'"'"'" >/dev/null 2>&1 || true' EXIT # cleanup: gone already when the check passed
q "BEGIN; SELECT orch_lease.register_stage_graph(ARRAY['queued -> merging']); PREPARE TRANSACTION 'runbook_registration'" >/dev/null
token=$(q "SELECT token FROM orch_lease.transition_lease WHERE work_item = 'PR-130'")
started=$(date +%s%N)
PGOPTIONS="-c statement_timeout=3s" check "${stuck/, 1,/, $token,}" t "section 2's force_release under a prepared registration"
took=$(( ($(date +%s%N) - started) / 1000000 ))
q "ROLLBACK PREPARED 'runbook_registration'" >/dev/null
trap - EXIT
assert "section 2's force_release under a prepared registration took $took ms" [ "$took" -lt 1000 ]

# Section 6 describes the payload a takeover announces: the version it names is the one the server sends.
q "SELECT outcome FROM orch_lease.transition_lease_acquire('PR-130', 'monitor', 4242, 'monitor-boot-8')" >/dev/null
sent=$(psql -X -q -t -A -c "LISTEN orch_lease" -c "SELECT orch_lease.transition_lease_force_release('PR-130')" 2>&1 |
       grep -o '"version":[0-9]*' | head -n 1 | cut -d: -f2 || true) # || true: no payload is checked next
named=$(sed -n '/^## 6\./,/^## 7\./p' docs/runbook.md | grep -o 'payload format version [0-9]*' | head -n 1 | awk '{ print $NF }')
assert "section 6 describes payload version '$named', the server sends '$sent'" [ "$named" = "${sent:-none}" ]

# The preamble: a member of pg_monitor runs the queries of sections 1 and 7, all but the one-item
# transition_lease_liveness (42501), which the page says is not its.
q "DROP ROLE IF EXISTS runbook_monitor; CREATE ROLE runbook_monitor LOGIN IN ROLE pg_monitor" >/dev/null
rm -f target/runbook-monitor-*.sql
for section in 1 7; do
    sed -n "/^## $section\./,/^## $((section + 1))\./p" docs/runbook.md |
        awk -v out="target/runbook-monitor-$section" '/^```sql$/ { n++; on = 1; next } /^```$/ { on = 0; next }
                                                      on { print > (out "-" n ".sql") }'
done
monitored=0
for snippet in target/runbook-monitor-*.sql; do
    if grep -q transition_lease_liveness "$snippet"; then
        # || true: the refusal is the answer, checked next
        answer=$(psql -X -q -U runbook_monitor -v VERBOSITY=verbose -f "$snippet" 2>&1 | head -n 1 || true)
        assert "pg_monitor's $snippet: got '$answer', wanted 42501" matches "$answer" "*ERROR:  42501:*"
    else
        assert "pg_monitor cannot run $snippet" psql -X -q -U runbook_monitor -v ON_ERROR_STOP=1 -f "$snippet" -o /dev/null
    fi
    monitored=$((monitored + 1))
done
assert "sections 1 and 7 have no sql snippets" [ "$monitored" -ge 5 ]
q "DROP ROLE runbook_monitor" >/dev/null

# The README's tour, pasted into psql in a database where leases were granted before (its tokens are not 1, 2).
SUITE=README
new_database orch_lease_tour
q "CREATE EXTENSION orch_lease; SELECT nextval('orch_lease.token_seq') FROM generate_series(1, 40)" >/dev/null
run_snippets README.md tour

# docs/operations.md's roles recipe (its first two snippets) in two databases of one cluster: roles belong
# to the cluster, so the second run meets them already there.
SUITE=operations.md
awk '/^```sql$/ { n++; on = (n <= 2); next } /^```$/ { on = 0 } on' docs/operations.md > target/operations-roles.sql
for database in orch_lease_roles_1 orch_lease_roles_2; do
    new_database "$database"
    assert "the roles recipe failed in $database" psql -X -q -v ON_ERROR_STOP=1 -f target/operations-roles.sql -o /dev/null
done
check "SELECT string_agg(rolname, ' ' ORDER BY rolname) FROM pg_roles
        WHERE rolname IN ('orchestrator', 'worker', 'oncall') AND rolcanlogin" "oncall orchestrator worker" \
      "the roles recipe made its three login roles"

# README's object table and operations.md's least-privilege table name every function a role may call:
# every function of the schema but the trigger functions and what only the extension's owner executes.
SUITE=functions
functions=$(q "SELECT string_agg(DISTINCT proname, ' ') FROM pg_catalog.pg_proc
                WHERE pronamespace = 'orch_lease'::regnamespace AND prorettype <> 'trigger'::regtype
                  AND (has_function_privilege('orch_lease_admin', oid, 'EXECUTE')
                       OR has_function_privilege('pg_monitor', oid, 'EXECUTE'))")
objects=$(sed -n '/^| object | what it does |$/,/^$/p' README.md)
privileges=$(sed -n '/^## Least privilege$/,/^## /p' docs/operations.md)
for function in $functions; do
    assert "README's object table does not name $function" grep -qF "\`$function(" <<< "$objects"
    assert "operations.md's least-privilege table does not name $function" grep -qF "\`$function\`" <<< "$privileges"
done

# docs/sql-reference.md, Settings: a non-superuser's SET of the kill-switch before the library is loaded
# is a placeholder that the first call takes back (with a WARNING); with the library preloaded, 42501.
SUITE=settings
# An actor reads the stage column of the table whose work items it keys (#27).
q "DROP ROLE IF EXISTS settings_actor; CREATE ROLE settings_actor LOGIN IN ROLE orch_lease_actor;
   GRANT SELECT (stage) ON tasks TO settings_actor" >/dev/null
as_actor() { psql -X -q -t -A -U settings_actor "$@" 2>&1; }
answer=$(as_actor -c "SET orch_lease.enabled = off" -c "SHOW orch_lease.enabled" \
                  -c "SELECT orch_lease.work_item_key('1') IS NOT NULL" -c "SHOW orch_lease.enabled" | tr '\n' ' ')
assert "before the library loads: got '$answer'" \
       [ "$answer" = 'off WARNING:  permission denied to set parameter "orch_lease.enabled" t on ' ]
q "ALTER ROLE settings_actor SET session_preload_libraries = 'orch_lease'"
# || true: the SET must fail; its first line is the check, on the next line.
answer=$(as_actor -v VERBOSITY=verbose -c "SET orch_lease.enabled = off" | head -n 1 || true)
assert "with session_preload_libraries: got '$answer'" matches "$answer" "ERROR:  42501:*"
q "REVOKE SELECT (stage) ON tasks FROM settings_actor; DROP ROLE settings_actor" >/dev/null

# A misspelt setting (docs/runbook.md, section 5): refused where the library is loaded (42602); accepted by
# a session that has not loaded it, and by ALTER DATABASE from one, where the runbook's verification query
# shows the WARNING and the switch still on.
verify=$(grep -m1 '^SELECT enabled, database_enabled, session_enabled, changed_by, reason FROM orch_lease.kill_switch();' docs/runbook.md)
answer=$(psql -X -q -t -A -v VERBOSITY=verbose -c "LOAD 'orch_lease'" -c "SET orch_lease.enabeld = off" 2>&1 | head -n 1 || true) # || true: the error is the answer, checked next
assert "a misspelt SET once the library is loaded: got '$answer'" matches "$answer" "ERROR:  42602:*"
answer=$(psql -X -q -t -A -c "SET orch_lease.enabeld = off" -c "$verify" 2>&1 | sed -n '1p;3p' | tr '\n' ' ')
assert "the verification query after a misspelt SET before the library loaded: got '$answer'" \
       matches "$answer" 'WARNING:  invalid configuration parameter name "orch_lease.enabeld", removing it t|t|t|*'
answer=$(psql -X -q -t -A -c "LOAD 'orch_lease'" -c "ALTER DATABASE $PGDATABASE SET orch_lease.enabeld = off" 2>&1 | head -n 1 || true) # || true: the error is the answer, checked next
assert "a misspelt ALTER DATABASE SET once the library is loaded: got '$answer'" \
       matches "$answer" 'ERROR:  invalid configuration parameter name "orch_lease.enabeld"*'
q "ALTER DATABASE $PGDATABASE SET orch_lease.enabeld = off"
answer=$(psql -X -q -t -A -c "$verify" 2>&1 | sed -n '1p;3p' | tr '\n' ' ')
assert "the verification query in a database with a misspelt setting: got '$answer'" \
       matches "$answer" 'WARNING:  invalid configuration parameter name "orch_lease.enabeld", removing it t|t|t|*'
stored=$(sed -n '/^SELECT coalesce(d.datname/,/;$/p' docs/runbook.md)
check "$stored" "$PGDATABASE|(all)|orch_lease.enabeld=off" "the runbook's query lists the misspelt setting"
q "ALTER DATABASE $PGDATABASE RESET orch_lease.enabeld"
# ALTER SYSTEM knows the name only once the session has loaded the library (PostgreSQL 15 and 16).
answer=$(psql -X -q -t -A -c "ALTER SYSTEM SET orch_lease.enabled = off" 2>&1 | head -n 1 || true) # || true: the error is the answer, checked next
assert "ALTER SYSTEM before the library loaded: got '$answer'" \
       [ "$answer" = 'ERROR:  unrecognized configuration parameter "orch_lease.enabled"' ]
assert "ALTER SYSTEM after LOAD 'orch_lease'" psql -X -q -v ON_ERROR_STOP=1 -c "LOAD 'orch_lease'" \
       -c "ALTER SYSTEM SET orch_lease.enabled = off" -c "ALTER SYSTEM RESET orch_lease.enabled"

echo "runbook: $(snippet_count docs/runbook.md) snippets ran"
echo "runbook: $CHECKED passed, 0 failed"
