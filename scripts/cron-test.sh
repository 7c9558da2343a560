#!/usr/bin/env bash
# The pg_cron recipe of docs/operations.md, for real: a throwaway cluster with pg_cron preloaded runs every
# sql snippet of that page, then the scheduled reaper must reclaim a dead holder's lease and cut one over
# the age ceiling while leaving a young live one alone (pg_cron 1.4 runs jobs on the minute: up to ~70 s).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT_DIR"
SUITE=cron
trap cluster_stop EXIT
cluster_start -c shared_preload_libraries=pg_cron -c cron.database_name=postgres \
              -c cron.use_background_workers=on -c max_worker_processes=16
run_snippets docs/operations.md operations

q "SELECT count(*) FROM orch_lease.transition_lease_recover('boot-1', 'orchestrator');
   SELECT count(*) FROM orch_lease.transition_lease_recover('boot-2', 'orchestrator');" >/dev/null
q "INSERT INTO orch_lease.transition_lease (work_item, token, owner, owner_pid, owner_boot_id, acquired_at)
   VALUES ('dead', nextval('orch_lease.token_seq'), 'monitor', 1, 'boot-1', now()),
          ('old', nextval('orch_lease.token_seq'), 'deployer', 2, 'boot-2', now() - interval '2 hours'),
          ('young', nextval('orch_lease.token_seq'), 'webhook', 3, 'boot-2', now())"
await_answer "SELECT count(*) FROM orch_lease.transition_lease" 1 80 1 >/dev/null
check "SELECT string_agg(work_item, ' ') FROM orch_lease.transition_lease" young "the scheduled reaper left only the young live lease"
check "SELECT string_agg(work_item || ':' || event || ':' || outcome, ' ' ORDER BY work_item) FROM orch_lease.lease_event" \
      "dead:reclaimed:stale old:reaped:ceiling" "the reaper logged one reclaim and one ceiling reap"
check "SELECT count(*) > 0 FROM cron.job_run_details d JOIN cron.job j USING (jobid)
        WHERE j.jobname = 'orch_lease_reap' AND d.status = 'succeeded'" t "pg_cron ran the reaper job"
check "SELECT count(*) FROM cron.job WHERE jobname IN ('orch_lease_reap', 'orch_lease_prune')" 2 "both jobs are scheduled"
check "SELECT rolname FROM pg_roles WHERE pg_has_role(rolname, 'orch_lease_actor', 'MEMBER') AND rolname = 'worker'" worker \
      "the roles of the recipe exist"
echo "cron: $(snippet_count docs/operations.md) snippets ran; the scheduled reaper reclaimed and reaped"
echo "cron: 1 passed, 0 failed"
