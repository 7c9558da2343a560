#!/usr/bin/env bash
# The upgrade path, against the running throwaway cluster (from scripts/test.sh): for each released
# version, install its frozen script, make leases, boots, events and tasks, ALTER EXTENSION orch_lease
# UPDATE (chaining the upgrade scripts), and check that nothing was lost, that the upgraded install
# works, and that its schema — grants included — is exactly a fresh install's.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT_DIR"
SUITE=upgrade
privileged cp sql/orch_lease--0.1.0.sql sql/orch_lease--0.2.0.sql sql/orch_lease--0.3.0.sql "$("$PG_CONFIG" --sharedir)/extension/"

new_database orch_lease_fresh
q "CREATE EXTENSION orch_lease"
version=$(q "SELECT extversion FROM pg_extension WHERE extname = 'orch_lease'")
q "$(cat tests/upgrade/schema.sql)" > target/schema-fresh.txt

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
    SUITE="upgrade from $from"
    new_database "orch_lease_upgraded_from_${from//./_}"
    q "CREATE EXTENSION orch_lease VERSION '$from'"
    q "$data" >/dev/null
    q "$(events_of "$from")" >/dev/null
    before=$(q "$fingerprint")
    # Until the update, the old functions with the new library say what to do (not "column does not exist").
    if stale=$(q "SELECT outcome FROM orch_lease.transition_lease_acquire('1', 'o', 1, 'b')" 2>&1) ||
       ! grep -q "Run ALTER EXTENSION orch_lease UPDATE" <<<"$stale"; then
        fail "a call before the update answered: $stale"
    fi
    q "ALTER EXTENSION orch_lease UPDATE"
    check "$fingerprint" "$before" "leases, boots, events or stages changed"

    check "SELECT string_agg(work_item, ',' ORDER BY token) FROM orch_lease.transition_lease WHERE owner = 'webhook'" 21 \
          "the lease on '021' is not keyed '21'"
    check "SELECT outcome FROM orch_lease.transition_lease_acquire('+21', 'reaper', 3, 'boot-9')" held \
          "another spelling of a leased task is not held"

    # The upgraded install works: a lease made before it commits, and the history counts old and new.
    check "SELECT outcome FROM orch_lease.commit_stage_cas('1', (SELECT token FROM orch_lease.transition_lease WHERE work_item = '1'), 'queued', 'merged')" \
          applied "a lease made before the update does not commit"
    check "SELECT string_agg(label || '=' || value, ' ' ORDER BY label) FROM orch_lease.transition_lease_metrics()
            WHERE metric IN ('orch_lease_reclaims_total', 'orch_lease_grants_total', 'orch_lease_cas_total') AND value > 0" \
          "applied=1 manual=1 reclaimed=1 stale=2" "metrics after the update"

    q "$(cat tests/upgrade/schema.sql)" > "target/schema-from-$from.txt"
    diff -u target/schema-fresh.txt "target/schema-from-$from.txt" ||
        fail "the upgraded schema differs from a fresh $version install (above)"
    echo "upgrade $from -> $version: data kept, schema identical to a fresh install ($(wc -l < target/schema-fresh.txt) facts)"
done
# The schema facts see what they claim to: a column privilege, a sequence's settings, an owner and a type
# changed on a fresh install each make its facts differ (each change is undone before the next).
SUITE="upgrade schema facts"
new_database orch_lease_facts_red
q "CREATE EXTENSION orch_lease"
q "DROP ROLE IF EXISTS orch_lease_facts_owner; CREATE ROLE orch_lease_facts_owner"
while IFS='|' read -r change undo; do
    q "$change"
    if q "$(cat tests/upgrade/schema.sql)" | diff -q target/schema-fresh.txt - >/dev/null; then
        fail "the schema facts did not see: $change"
    fi
    q "$undo"
done <<'CHANGES'
GRANT SELECT (token) ON orch_lease.transition_lease TO PUBLIC|REVOKE SELECT (token) ON orch_lease.transition_lease FROM PUBLIC
ALTER SEQUENCE orch_lease.token_seq CACHE 7|ALTER SEQUENCE orch_lease.token_seq CACHE 1
ALTER TABLE orch_lease.boot OWNER TO orch_lease_facts_owner|ALTER TABLE orch_lease.boot OWNER TO postgres
CREATE TYPE orch_lease.stray AS ENUM ('a')|DROP TYPE orch_lease.stray
CHANGES
q "$(cat tests/upgrade/schema.sql)" | diff -u target/schema-fresh.txt - || fail "undoing the changes did not restore the facts"
q "DROP ROLE orch_lease_facts_owner"
echo "upgrade schema facts: a column privilege, a sequence setting, an owner and a type each detected"

# A lease 0.4.0 cannot key (not an id of the task table) stops the update with what to do; done, it goes on.
SUITE=upgrade
new_database orch_lease_upgrade_refused
q "CREATE EXTENSION orch_lease VERSION '0.3.0'"
q "$data" >/dev/null
q "INSERT INTO orch_lease.transition_lease (work_item, token, owner, owner_pid, owner_boot_id)
         VALUES ('PR-7', nextval('orch_lease.token_seq'), 'monitor', 2, 'boot-1')"
if refusal=$(q "ALTER EXTENSION orch_lease UPDATE" 2>&1); then
    fail "a lease on a work item that is no task id did not stop the update"
fi
grep -q 'work item "PR-7"' <<<"$refusal" || fail "the refusal does not name the lease: $refusal"
check "SELECT extversion FROM pg_extension WHERE extname = 'orch_lease'" 0.3.0 "a refused update changed the version"
q "DELETE FROM orch_lease.transition_lease WHERE work_item = 'PR-7'"
q "ALTER EXTENSION orch_lease UPDATE"
echo "upgrade with a lease on 'PR-7': refused with what to do, then done once it was released"
echo "upgrade: 3 passed, 0 failed"
