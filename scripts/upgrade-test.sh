#!/usr/bin/env bash
# The upgrade path, against the running throwaway cluster (from scripts/test.sh): for each released
# version, install its frozen script, make leases, boots, events and tasks, ALTER EXTENSION orch_lease
# UPDATE (chaining the upgrade scripts), and check that nothing was lost, that the upgraded install
# works, and that its schema — grants included — is exactly a fresh install's.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT_DIR"
privileged cp sql/orch_lease--0.1.0.sql sql/orch_lease--0.2.0.sql sql/orch_lease--0.3.0.sql "$("$PG_CONFIG" --sharedir)/extension/"

q() { psql -X -q -t -A -v ON_ERROR_STOP=1 -d "$1" -c "$2"; }
fresh=orch_lease_fresh
"$PG_BIN/dropdb" --if-exists "$fresh"; "$PG_BIN/createdb" "$fresh"
q "$fresh" "CREATE EXTENSION orch_lease"
version=$(q "$fresh" "SELECT extversion FROM pg_extension WHERE extname = 'orch_lease'")
q "$fresh" "$(cat tests/upgrade/schema.sql)" > target/schema-fresh.txt

# The data, written with plain SQL as the released versions' functions would have written it: the
# library installed is the current one, whose functions need the current schema.
data="
    CREATE TABLE tasks (id bigint PRIMARY KEY, stage text NOT NULL);
    INSERT INTO tasks SELECT i, CASE WHEN i % 2 = 0 THEN 'merged' ELSE 'queued' END FROM generate_series(1, 50) i;
    INSERT INTO orch_lease.task_table (relid, id_column, stage_column) VALUES ('tasks', 'id', 'stage');
    INSERT INTO orch_lease.boot (boot_id, instance, pid, superseded_at, superseded_by)
         VALUES ('boot-0', 'orchestrator', 1, now(), 'boot-1');
    INSERT INTO orch_lease.boot (boot_id, instance, pid) VALUES ('boot-1', 'orchestrator', 2);
    INSERT INTO orch_lease.transition_lease (work_item, token, owner, owner_pid, owner_boot_id)
         SELECT i::text, nextval('orch_lease.token_seq'), 'monitor', 2, 'boot-1' FROM generate_series(1, 20) i;
    -- Spelled as 0.3.0 let it be: 0.4.0 keys it as the id type writes it (21).
    INSERT INTO orch_lease.transition_lease (work_item, token, owner, owner_pid, owner_boot_id)
         VALUES ('021', nextval('orch_lease.token_seq'), 'webhook', 2, 'boot-1');
    "
# The history as each release wrote it: from 0.3.0 on every event has an outcome.
events_of() {
    local outcome_column="" recovered="" reclaimed="" forced=""
    if [ "$1" != 0.1.0 ] && [ "$1" != 0.2.0 ]; then
        outcome_column="outcome, " recovered="'recovered', " reclaimed="'reclaimed', " forced="'forced', "
    fi
    echo "INSERT INTO orch_lease.lease_event
              (${outcome_column}event, work_item, old_owner, old_token, old_boot_id, new_owner, new_token, reason)
          VALUES (${recovered}'reclaimed', '30', 'webhook', 30, 'boot-0', NULL, NULL, 'recover by boot boot-1'),
                 (${reclaimed}'reclaimed', '31', 'webhook', 31, 'boot-0', 'monitor', 32, 'holder boot superseded'),
                 (${forced}'forced', '33', 'monitor', 33, 'boot-1', NULL, NULL, 'before the upgrade')"
}
# The rows as the released versions know them: every column they had (a lease's key as the task id it is).
fingerprint="SELECT md5(string_agg(r, '|' ORDER BY r)) FROM (
    SELECT (l.work_item::bigint, l.token, l.owner, l.owner_pid, l.owner_boot_id, l.scope, l.acquired_at)::text AS r
      FROM orch_lease.transition_lease l
    UNION ALL SELECT (b.boot_id, b.instance, b.pid, b.registered_at, b.superseded_at, b.superseded_by)::text
      FROM orch_lease.boot b
    UNION ALL SELECT (e.event_id, e.at, e.event, e.work_item, e.old_owner, e.old_token, e.old_boot_id,
                      e.new_owner, e.new_token, e.reason)::text FROM orch_lease.lease_event e
    UNION ALL SELECT t::text FROM tasks t UNION ALL SELECT last_value::text FROM orch_lease.token_seq) rows"

for from in 0.1.0 0.2.0 0.3.0; do
    db=orch_lease_upgraded_from_${from//./_}
    "$PG_BIN/dropdb" --if-exists "$db"; "$PG_BIN/createdb" "$db"
    q "$db" "CREATE EXTENSION orch_lease VERSION '$from'"
    q "$db" "$data" >/dev/null
    q "$db" "$(events_of "$from")" >/dev/null
    before=$(q "$db" "$fingerprint")
    # Until the update, the old functions with the new library say what to do (not "column does not exist").
    if stale=$(q "$db" "SELECT outcome FROM orch_lease.transition_lease_acquire('1', 'o', 1, 'b')" 2>&1) ||
       ! grep -q "Run ALTER EXTENSION orch_lease UPDATE" <<<"$stale"; then
        echo "upgrade from $from: a call before the update answered: $stale"; exit 1
    fi
    q "$db" "ALTER EXTENSION orch_lease UPDATE"
    [ "$before" = "$(q "$db" "$fingerprint")" ] || { echo "upgrade from $from: leases, boots, events or stages changed"; exit 1; }

    keys=$(q "$db" "SELECT string_agg(work_item, ',' ORDER BY token) FROM orch_lease.transition_lease WHERE owner = 'webhook'")
    [ "$keys" = 21 ] || { echo "upgrade from $from: the lease on '021' is keyed '$keys', not '21'"; exit 1; }
    outcome=$(q "$db" "SELECT outcome FROM orch_lease.transition_lease_acquire('+21', 'reaper', 3, 'boot-9')")
    [ "$outcome" = held ] || { echo "upgrade from $from: another spelling of a leased task is $outcome, not held"; exit 1; }

    # The upgraded install works: a lease made before it commits, and the history counts old and new.
    outcome=$(q "$db" "SELECT outcome FROM orch_lease.commit_stage_cas('1', (SELECT token FROM orch_lease.transition_lease WHERE work_item = '1'), 'queued', 'merged')")
    [ "$outcome" = applied ] || { echo "upgrade from $from: a lease made before the update does not commit ($outcome)"; exit 1; }
    counts=$(q "$db" "SELECT string_agg(label || '=' || value, ' ' ORDER BY label) FROM orch_lease.transition_lease_metrics()
                       WHERE metric IN ('orch_lease_reclaims_total', 'orch_lease_grants_total', 'orch_lease_cas_total') AND value > 0")
    [ "$counts" = "applied=1 manual=1 reclaimed=1 stale=2" ] || { echo "upgrade from $from: metrics after the update: $counts"; exit 1; }

    q "$db" "$(cat tests/upgrade/schema.sql)" > "target/schema-from-$from.txt"
    if ! diff -u target/schema-fresh.txt "target/schema-from-$from.txt"; then
        echo "upgrade from $from: the upgraded schema differs from a fresh $version install (above)"
        exit 1
    fi
    echo "upgrade $from -> $version: data kept, schema identical to a fresh install ($(wc -l < target/schema-fresh.txt) facts)"
done
# A lease 0.4.0 cannot key (not an id of the task table) stops the update with what to do; done, it goes on.
db=orch_lease_upgrade_refused
"$PG_BIN/dropdb" --if-exists "$db"; "$PG_BIN/createdb" "$db"
q "$db" "CREATE EXTENSION orch_lease VERSION '0.3.0'"
q "$db" "$data" >/dev/null
q "$db" "INSERT INTO orch_lease.transition_lease (work_item, token, owner, owner_pid, owner_boot_id)
         VALUES ('PR-7', nextval('orch_lease.token_seq'), 'monitor', 2, 'boot-1')"
if refusal=$(q "$db" "ALTER EXTENSION orch_lease UPDATE" 2>&1); then
    echo "upgrade: a lease on a work item that is no task id did not stop the update"; exit 1
fi
grep -q 'work item "PR-7"' <<<"$refusal" || { echo "upgrade: the refusal does not name the lease: $refusal"; exit 1; }
[ "$(q "$db" "SELECT extversion FROM pg_extension WHERE extname = 'orch_lease'")" = 0.3.0 ] || { echo "upgrade: a refused update changed the version"; exit 1; }
q "$db" "DELETE FROM orch_lease.transition_lease WHERE work_item = 'PR-7'"
q "$db" "ALTER EXTENSION orch_lease UPDATE"
echo "upgrade with a lease on 'PR-7': refused with what to do, then done once it was released"
echo "upgrade: 2 passed, 0 failed"
