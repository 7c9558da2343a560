#!/usr/bin/env bash
# The pg_cron recipe of docs/operations.md, for real: a throwaway cluster with pg_cron preloaded runs every
# sql snippet of that page, then the scheduled reaper must reclaim a dead holder's lease and cut one over
# the age ceiling while leaving a young live one alone (pg_cron 1.4 runs jobs on the minute: up to ~70 s),
# as orch_lease_reaper, without ever reaching the count(*) aggregate that the database's owner put first in
# the database's search_path (issue #34: the superuser job of 0.4.0's page made that owner a superuser).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT_DIR"
SUITE=cron
trap cluster_stop EXIT
cluster_start -c shared_preload_libraries=pg_cron -c cron.database_name=postgres \
              -c cron.use_background_workers=on -c max_worker_processes=16
run_snippets docs/operations.md operations

# The database's owner, no superuser, plants its own count(*) where the jobs' sessions look first: its final
# function records who ran it and makes the owner a superuser when it can (it runs even over no rows).
q "CREATE ROLE app_owner LOGIN; ALTER DATABASE postgres OWNER TO app_owner" >/dev/null
psql -X -q -v ON_ERROR_STOP=1 -U app_owner >/dev/null <<'SQL'
CREATE SCHEMA app_private;
GRANT USAGE ON SCHEMA app_private TO PUBLIC;
CREATE TABLE app_private.reached (by_role name, at timestamptz DEFAULT pg_catalog.now());
GRANT INSERT ON app_private.reached TO PUBLIC;
CREATE FUNCTION app_private.grab(bigint) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO app_private.reached (by_role) VALUES (current_user);
    BEGIN
        EXECUTE 'ALTER ROLE app_owner SUPERUSER';
    EXCEPTION WHEN insufficient_privilege THEN NULL;
    END;
    RETURN $1;
END $$;
CREATE AGGREGATE app_private.count(*) (SFUNC = pg_catalog.int8inc, STYPE = bigint, INITCOND = '0',
                                       FINALFUNC = app_private.grab);
ALTER DATABASE postgres SET search_path = app_private, pg_catalog, public;
SQL
export PGOPTIONS="-c search_path=public" # this script's own sessions keep to the default

q "SELECT count(*) FROM orch_lease.transition_lease_recover('boot-1', 'orchestrator');
   SELECT count(*) FROM orch_lease.transition_lease_recover('boot-2', 'orchestrator');" >/dev/null
# No task table is registered here: the leases are keyed to none (0), as an acquire's would be.
q "INSERT INTO orch_lease.transition_lease (work_item, token, owner, owner_pid, owner_boot_id, acquired_at, task_table)
   VALUES ('dead', nextval('orch_lease.token_seq'), 'monitor', 1, 'boot-1', now(), 0),
          ('old', nextval('orch_lease.token_seq'), 'deployer', 2, 'boot-2', now() - interval '2 hours', 0),
          ('young', nextval('orch_lease.token_seq'), 'webhook', 3, 'boot-2', now(), 0)"
await_answer "SELECT count(*) FROM orch_lease.transition_lease" 1 80 1 >/dev/null
check "SELECT coalesce(string_agg(by_role, ' '), 'nobody') FROM app_private.reached" nobody \
      "the jobs reached the database owner's count(*) aggregate"
check "SELECT rolsuper FROM pg_roles WHERE rolname = 'app_owner'" f "the database's owner stayed no superuser"
check "SELECT string_agg(work_item, ' ') FROM orch_lease.transition_lease" young "the scheduled reaper left only the young live lease"
check "SELECT string_agg(work_item || ':' || event || ':' || outcome, ' ' ORDER BY work_item) FROM orch_lease.lease_event" \
      "dead:reclaimed:stale old:reaped:ceiling" "the reaper logged one reclaim and one ceiling reap"
check "SELECT count(*) > 0 FROM cron.job_run_details d JOIN cron.job j USING (jobid)
        WHERE j.jobname = 'orch_lease_reap' AND d.status = 'succeeded'" t "pg_cron ran the reaper job"
check "SELECT string_agg(jobname || ':' || username, ' ' ORDER BY jobname) FROM cron.job" \
      "orch_lease_prune:orch_lease_reaper orch_lease_reap:orch_lease_reaper" "both jobs are scheduled, as orch_lease_reaper"
check "SELECT string_agg(DISTINCT by_role, ' ') FROM orch_lease.lease_event WHERE event IN ('reclaimed', 'reaped')" \
      orch_lease_reaper "the reaper ran as orch_lease_reaper"
check "SELECT rolname FROM pg_roles WHERE pg_has_role(rolname, 'orch_lease_actor', 'MEMBER') AND rolname = 'worker'" worker \
      "the roles of the recipe exist"
echo "cron: $(snippet_count docs/operations.md) snippets ran; the scheduled reaper reclaimed and reaped"
echo "cron: $CHECKED passed, 0 failed"
