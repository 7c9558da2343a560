#!/usr/bin/env bash
# Runs every psql snippet of docs/runbook.md, in order, in a fresh database of the running throwaway
# cluster (from scripts/test.sh), and checks that they did what the runbook says.
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
check "SELECT count(*) FROM orch_lease.boot WHERE instance = 'monitor' AND superseded_at IS NULL" 1 \
      "section 4 left one live incarnation"
check "SELECT count(*) FROM pg_db_role_setting WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = 'orch_lease_runbook')" 0 \
      "section 5 turned the kill-switch back on"
# docs/scale-out.md names orch_lease's tables and functions for Citus: every one must exist as written.
SUITE=scale-out.md
grep -o "create_distributed_function('[^']*'" docs/scale-out.md | cut -d"'" -f2 | while read -r function; do
    q "SELECT '$function'::regprocedure" >/dev/null || fail "no function $function"
done
grep -oE "create_(distributed|reference)_table\('orch_lease\.[a-z_]*'" docs/scale-out.md | cut -d"'" -f2 | while read -r table; do
    q "SELECT '$table'::regclass" >/dev/null || fail "no table $table"
done
echo "runbook: $(snippet_count docs/runbook.md) snippets ran"
echo "runbook: 1 passed, 0 failed"
