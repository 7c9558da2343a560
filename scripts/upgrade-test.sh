#!/usr/bin/env bash
# The upgrade path, against the running throwaway cluster (from scripts/test.sh): for each released
# version, install its frozen script with its own library, make leases, boots, events, a stage graph, a
# bypass guard and tasks through its own functions, put the current library back, ALTER EXTENSION
# orch_lease UPDATE (chaining the upgrade scripts), and check that nothing was lost, that the upgraded
# install works, and that its schema — grants, owners, sequences and types included — is a fresh one's.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT_DIR"
SUITE=upgrade
privileged cp sql/orch_lease--0.1.0.sql sql/orch_lease--0.2.0.sql sql/orch_lease--0.3.0.sql sql/orch_lease--0.4.0.sql "$("$PG_CONFIG" --sharedir)/extension/"

new_database orch_lease_fresh
q "CREATE EXTENSION orch_lease"
version=$(q "SELECT extversion FROM pg_extension WHERE extname = 'orch_lease'")
q "$(cat tests/upgrade/schema.sql)" > target/schema-fresh.txt

# Each fixture is written through the released version's own functions, served by its own library
# (scripts/releases.sh builds it from git history); the current library is put back for the update. A
# library is swapped by rename, so that running backends keep the one they mapped.
scripts/releases.sh
libdir=$("$PG_CONFIG" --pkglibdir)
cp "$libdir/orch_lease.so" target/releases/current.so
trap 'use_library target/releases/current.so; cluster_stop' EXIT

# Leases, boots, takeovers, a commit and a force release, as every release could make them; an id spelled
# as no release before 0.4.0 minded ('021'), which 0.4.0 keys as the id type writes it (21).
fixture_0_1_0="
    CREATE TABLE tasks (id bigint PRIMARY KEY, stage text NOT NULL);
    INSERT INTO tasks SELECT i, CASE WHEN i % 2 = 0 THEN 'merged' ELSE 'queued' END FROM generate_series(1, 50) i;
    SELECT orch_lease.register_task_table('tasks');
    SELECT count(*) FROM orch_lease.transition_lease_recover('boot-0', 'orchestrator', 1);
    SELECT count(orch_lease.transition_lease_acquire(i::text, 'webhook', 1, 'boot-0')) FROM generate_series(30, 31) i;
    SELECT count(*) FROM orch_lease.transition_lease_recover('boot-1', 'orchestrator', 2);
    SELECT count(orch_lease.transition_lease_acquire(i::text, 'monitor', 2, 'boot-1')) FROM generate_series(1, 20) i;
    SELECT count(*) FROM orch_lease.transition_lease_acquire('021', 'webhook', 2, 'boot-1');
    SELECT count(*) FROM orch_lease.transition_lease_acquire('33', 'monitor', 2, 'boot-1');
    SELECT orch_lease.transition_lease_force_release('33', NULL, 'before the upgrade');
    SELECT count(*) FROM orch_lease.transition_lease_acquire('34', 'monitor', 2, 'boot-1');
    SELECT count(*) FROM orch_lease.commit_stage_cas('34', (SELECT token FROM orch_lease.transition_lease WHERE work_item = '34'), 'merged', 'done');"
# From 0.2.0 on: a stage graph, a bypass guard on the task table with a logged bypass, and a session lease
# whose session is gone.
fixture_0_2_0="$fixture_0_1_0
    SELECT orch_lease.register_stage_graph(ARRAY['queued -> merged', 'merged -> done'], ARRAY['done']);
    SELECT orch_lease.install_bypass_guard('warn');
    SET client_min_messages = error;
    UPDATE tasks SET stage = 'queued' WHERE id = 40;"
fixture_of() {
    case $1 in
        0.1.0) echo "$fixture_0_1_0" ;;
        *) echo "$fixture_0_2_0" ;;
    esac
}
session_lease() { # from 0.2.0 on: a lease bound to a session that then ends
    [ "$1" = 0.1.0 ] || q "SELECT outcome FROM orch_lease.transition_lease_acquire_session('45', 'sessions')" >/dev/null
}
# The rows as the released versions know them: every column they had (a lease's key as the task id it is).
fingerprint_of() {
    local since_0_2_0=""
    [ "$1" = 0.1.0 ] || since_0_2_0="
        UNION ALL SELECT (s.from_stage, s.to_stage)::text FROM orch_lease.stage_transition s
        UNION ALL SELECT (g.at, g.task_table, g.task_id, g.old_stage, g.new_stage)::text FROM orch_lease.bypass_log g"
    echo "SELECT md5(string_agg(r, '|' ORDER BY r)) FROM (
        SELECT (l.work_item::bigint, l.token, l.owner, l.owner_pid, l.owner_boot_id, l.scope, l.acquired_at)::text AS r
          FROM orch_lease.transition_lease l
        UNION ALL SELECT (b.boot_id, b.instance, b.pid, b.registered_at, b.superseded_at, b.superseded_by)::text
          FROM orch_lease.boot b
        UNION ALL SELECT (e.event_id, e.at, e.event, e.work_item, e.old_owner, e.old_token, e.old_boot_id,
                          e.new_owner, e.new_token, e.reason)::text FROM orch_lease.lease_event e $since_0_2_0
        UNION ALL SELECT t::text FROM tasks t UNION ALL SELECT last_value::text FROM orch_lease.token_seq) rows"
}

passed=0 # one per upgrade path, red check and cluster without the roles that ran to its end
for from in 0.1.0 0.2.0 0.3.0 0.4.0; do
    SUITE="upgrade from $from"
    new_database "orch_lease_upgraded_from_${from//./_}"
    use_library "target/releases/$from/orch_lease.so"
    q "CREATE EXTENSION orch_lease VERSION '$from'"
    q "$(fixture_of "$from")" >/dev/null
    session_lease "$from"
    # A site's own grant on the reaper (0.3.0's; its cron role): 0.4.0 recreates the function and keeps it.
    [ "$from" != 0.3.0 ] || q "DROP ROLE IF EXISTS orch_lease_reaper_job; CREATE ROLE orch_lease_reaper_job;
        GRANT EXECUTE ON FUNCTION orch_lease.transition_lease_reap(integer) TO orch_lease_reaper_job" >/dev/null
    # A site's own grant on a function 0.5.0 recreates with a task_table argument (#27): kept, and dumped.
    [ "$from" != 0.4.0 ] || q "DROP ROLE IF EXISTS orch_lease_site_caller; CREATE ROLE orch_lease_site_caller;
        GRANT EXECUTE ON FUNCTION orch_lease.commit_stage_cas TO orch_lease_site_caller" >/dev/null
    # A site's REVOKE on orch_lease's own role, on a function 0.5.0 recreates: kept, and dumped (red team
    # 2, G12: the update gave it back).
    # Its GRANT of one to them too (the update dropped it).
    # A third role's grant on those two functions stays the site's, not an initial privilege (red team 3,
    # G21: the replayed GRANT/REVOKE recorded the whole ACL there, so pg_dump left it out).
    [ "$from" != 0.4.0 ] || q "REVOKE EXECUTE ON FUNCTION orch_lease.transition_lease_liveness FROM orch_lease_actor;
        GRANT EXECUTE ON FUNCTION orch_lease.register_stage_graph TO orch_lease_actor;
        GRANT EXECUTE ON FUNCTION orch_lease.transition_lease_liveness, orch_lease.register_stage_graph
              TO orch_lease_site_caller" >/dev/null
    # A site's own view over the history: the update must not need its tables' columns unused (red3 F1).
    q "CREATE VIEW public.site_history AS SELECT event, work_item FROM orch_lease.lease_event" >/dev/null
    use_library target/releases/current.so
    fingerprint=$(fingerprint_of "$from")
    before=$(q "$fingerprint")
    # Until the update, the old functions with the new library say what to do (not "column does not exist").
    # register_task_table too, whose 0.4.0 entry passes an argument fewer (red team 2, G9).
    for call in "transition_lease_acquire('1', 'o', 1, 'b')" "register_task_table('tasks')"; do
        if stale=$(q "SELECT orch_lease.$call" 2>&1) ||
           ! grep -q "Run ALTER EXTENSION orch_lease UPDATE" <<<"$stale"; then
            fail "$call before the update answered: $stale"
        fi
    done
    q "ALTER EXTENSION orch_lease UPDATE"
    check "$fingerprint" "$before" "leases, boots, events or stages changed"
    # #27: the one registered table stays registered, and its leases and stage graph are its own.
    check "SELECT string_agg(DISTINCT task_table::text, ',') FROM orch_lease.transition_lease" tasks \
          "a lease made before the update is not keyed to the registered table"
    check "SELECT count(*) FROM orch_lease.stage_transition WHERE task_table <> 'tasks'::regclass" 0 \
          "the stage graph made before the update is not the registered table's"
    check "SELECT count(*) = (SELECT count(*) FROM orch_lease.lease_event) FROM public.site_history" t \
          "the site's view over the history does not read it"
    q "DROP VIEW public.site_history" >/dev/null

    check "SELECT string_agg(work_item, ',' ORDER BY token) FROM orch_lease.transition_lease WHERE owner = 'webhook'" 21 \
          "the lease on '021' is not keyed '21'"
    check "SELECT outcome FROM orch_lease.transition_lease_acquire('+21', 'reaper', 3, 'boot-9')" held \
          "another spelling of a leased task is not held"

    # The upgraded install works: a lease made before it commits, and the history counts old and new.
    check "SELECT outcome FROM orch_lease.commit_stage_cas('1', (SELECT token FROM orch_lease.transition_lease WHERE work_item = '1'), 'queued', 'merged')" \
          applied "a lease made before the update does not commit"
    check "SELECT string_agg(label || '=' || value, ' ' ORDER BY label) FROM orch_lease.transition_lease_metrics()
            WHERE metric = 'orch_lease_reclaims_total' AND value > 0" \
          "manual=1 stale=2" "the takeovers made before the update are not counted"
    if [ "$from" != 0.1.0 ]; then
        check "SELECT outcome FROM orch_lease.update_task_stage_cas('50', 'done', 'queued')" invalid_transition \
              "the stage graph made before the update does not hold"
        check "SELECT count(*) FROM (SELECT orch_lease.transition_lease_acquire('45', 'reaper', 3, 'boot-9') g) a
                WHERE (g).outcome = 'reclaimed'" 1 "the session lease of a gone session is not reclaimed"
        q "SET client_min_messages = error; UPDATE tasks SET stage = 'merged' WHERE id = 41" >/dev/null
        check "SELECT string_agg(task_id || ':' || by_role, ' ' ORDER BY at) FROM orch_lease.bypass_log" \
              "40:postgres 41:postgres" "the bypass guard installed before the update does not log as the writer"
    fi

    if [ "$from" = 0.3.0 ]; then
        check "SELECT has_function_privilege('orch_lease_reaper_job', 'orch_lease.transition_lease_reap(integer)', 'EXECUTE')" t \
              "the site's own grant on the reaper was lost"
        # pg_dump writes an extension's ACLs only where they differ from its initial privileges
        # (pg_init_privs): recorded there, the site's grant would be lost by a dump and restore.
        "$PG_BIN/pg_dump" --schema-only > "target/dump-from-$from.sql" || fail "pg_dump of the upgraded database failed"
        grep -Eq '^GRANT ALL ON FUNCTION orch_lease\.transition_lease_reap\(.*\) TO orch_lease_reaper_job;$' "target/dump-from-$from.sql" ||
            fail "pg_dump leaves out the site's own grant on the reaper (target/dump-from-$from.sql)"
        # Revoked before the schema facts, the role dropped after them: an initial privilege left naming
        # it shows by name.
        q "REVOKE EXECUTE ON FUNCTION orch_lease.transition_lease_reap(integer) FROM orch_lease_reaper_job" >/dev/null
    fi

    if [ "$from" = 0.4.0 ]; then
        check "SELECT has_function_privilege('orch_lease_site_caller', 'orch_lease.commit_stage_cas(text,bigint,text,text,regclass)', 'EXECUTE')" t \
              "the site's own grant on commit_stage_cas was lost"
        "$PG_BIN/pg_dump" --schema-only > "target/dump-from-$from.sql" || fail "pg_dump of the upgraded database failed"
        grep -Eq '^GRANT ALL ON FUNCTION orch_lease\.commit_stage_cas\(.*\) TO orch_lease_site_caller;$' "target/dump-from-$from.sql" ||
            fail "pg_dump leaves out the site's own grant on commit_stage_cas (target/dump-from-$from.sql)"
        q "REVOKE EXECUTE ON FUNCTION orch_lease.commit_stage_cas(text,bigint,text,text,regclass) FROM orch_lease_site_caller" >/dev/null
        liveness="orch_lease.transition_lease_liveness(text,regclass)"
        check "SELECT has_function_privilege('orch_lease_actor', '$liveness', 'EXECUTE')" f \
              "the update gave orch_lease_actor back the EXECUTE on liveness the site revoked"
        grep -Eq '^REVOKE ALL ON FUNCTION orch_lease\.transition_lease_liveness\(.*\) FROM orch_lease_actor;$' "target/dump-from-$from.sql" ||
            fail "pg_dump leaves out the site's REVOKE on liveness (target/dump-from-$from.sql)"
        graph="orch_lease.register_stage_graph(text[],text[],regclass)"
        check "SELECT has_function_privilege('orch_lease_actor', '$graph', 'EXECUTE')" t \
              "the update dropped the site's GRANT of register_stage_graph to orch_lease_actor"
        grep -Eq '^GRANT ALL ON FUNCTION orch_lease\.register_stage_graph\(.*\) TO orch_lease_actor;$' "target/dump-from-$from.sql" ||
            fail "pg_dump leaves out the site's GRANT of register_stage_graph (target/dump-from-$from.sql)"
        for fn in transition_lease_liveness register_stage_graph; do
            grep -Eq "^GRANT ALL ON FUNCTION orch_lease\.$fn\(.*\) TO orch_lease_site_caller;\$" "target/dump-from-$from.sql" ||
                fail "pg_dump leaves out the site's grant of $fn to a third role (target/dump-from-$from.sql)"
        done
        # ... and a restore keeps them.
        restored=orch_lease_restored_from_0_4_0
        "$PG_BIN/dropdb" --if-exists "$restored" && "$PG_BIN/createdb" "$restored"
        psql -X -q -v ON_ERROR_STOP=1 -d "$restored" -f "target/dump-from-$from.sql" >/dev/null ||
            fail "the dump of the upgraded database did not restore (target/dump-from-$from.sql)"
        PGDATABASE=$restored check "SELECT has_function_privilege('orch_lease_site_caller', '$liveness', 'EXECUTE')
                                       AND has_function_privilege('orch_lease_site_caller', '$graph', 'EXECUTE')" t \
              "after a dump and restore, the site's third role lost EXECUTE on liveness or register_stage_graph"
        "$PG_BIN/dropdb" "$restored"
        q "GRANT EXECUTE ON FUNCTION $liveness TO orch_lease_actor; REVOKE EXECUTE ON FUNCTION $graph FROM orch_lease_actor;
           REVOKE EXECUTE ON FUNCTION $liveness, $graph FROM orch_lease_site_caller" >/dev/null
    fi

    # #29 item 15: a lease or boot from before 0.4.0 named no role, so any actor could end that lease with
    # its (sequential) token, or acquire under that boot. The update gives them to the role that ran it.
    q "DO \$\$BEGIN CREATE ROLE orch_upgrade_actor IN ROLE orch_lease_actor;
       EXCEPTION WHEN duplicate_object THEN NULL; END\$\$" >/dev/null
    # An actor reads its task table: since 0.5.0 an acquire says the task's stage, read with its privileges;
    # and it leases work items of the tables whose stage it may write (#27).
    q "GRANT SELECT, UPDATE (stage) ON tasks TO orch_upgrade_actor" >/dev/null
    check "SELECT count(*) FROM orch_lease.transition_lease WHERE holder_role IS NULL" 0 "a lease names no role"
    check "SELECT count(*) FROM orch_lease.boot WHERE registered_by IS NULL" 0 "a boot names no role"
    token=$(q "SELECT token FROM orch_lease.transition_lease WHERE work_item = '2'")
    check "SET ROLE orch_upgrade_actor; SELECT orch_lease.transition_lease_held('2', $token)" f \
          "an actor is told it holds a lease acquired before the update"
    for call in "transition_lease_release('2', $token)" "transition_lease_acquire('48', 'x', 1, 'boot-1')"; do
        if out=$(q "SET ROLE orch_upgrade_actor; SELECT orch_lease.$call" 2>&1) ||
           ! grep -q "another role" <<<"$out"; then
            fail "an actor's $call on what was made before the update answered: $out"
        fi
    done

    # A second table registered after the update leaves the first's leases with it: '21' of tasks is
    # held, '21' of jobs is free, and a call that names no table is refused.
    q "CREATE TABLE jobs (id bigint PRIMARY KEY, stage text NOT NULL); INSERT INTO jobs VALUES (21, 'queued'); SELECT orch_lease.register_task_table('jobs')" >/dev/null
    check "SELECT outcome FROM orch_lease.transition_lease_acquire('21', 'reaper', 3, 'boot-9', task_table => 'tasks')" held \
          "a lease made before the update is not held once a second table is registered"
    check "SELECT outcome FROM orch_lease.transition_lease_acquire('21', 'reaper', 3, 'boot-9', task_table => 'jobs')" acquired \
          "the same id in a second table is not a work item of its own"
    if out=$(q "SELECT orch_lease.transition_lease_held('21', 1)" 2>&1) || ! grep -q "several task tables" <<<"$out"; then
        fail "a call naming no table with two registered answered: $out"
    fi
    q "SELECT orch_lease.transition_lease_force_release('21', task_table => 'jobs'); SELECT orch_lease.unregister_task_table('jobs'); DROP TABLE jobs" >/dev/null
    q "$(cat tests/upgrade/schema.sql)" > "target/schema-from-$from.txt"
    diff -u target/schema-fresh.txt "target/schema-from-$from.txt" ||
        fail "the upgraded schema differs from a fresh $version install (above)"
    [ "$from" != 0.3.0 ] || q "DROP ROLE orch_lease_reaper_job" >/dev/null
    [ "$from" != 0.4.0 ] || q "DROP ROLE orch_lease_site_caller" >/dev/null
    echo "upgrade $from -> $version: data kept, schema identical to a fresh install ($(wc -l < target/schema-fresh.txt) facts)"
    passed=$((passed + 1))
done
# The schema facts see what they claim to: a column privilege, a sequence's settings, an owner, a type, a
# type's grant, a default privilege and an initial privilege changed on a fresh install each make its facts
# differ (each change is undone before the next).
SUITE="upgrade schema facts"
new_database orch_lease_facts_red
q "CREATE EXTENSION orch_lease"
q "DROP ROLE IF EXISTS orch_lease_facts_owner; CREATE ROLE orch_lease_facts_owner"
while IFS='|' read -r change undo; do
    q "$change"
    # A facts query that fails is no change seen: it stops the test (under pipefail it used to read as one).
    facts=$(q "$(cat tests/upgrade/schema.sql)") || fail "the schema facts query failed after: $change"
    if diff -q target/schema-fresh.txt - >/dev/null <<<"$facts"; then
        fail "the schema facts did not see: $change"
    fi
    q "$undo"
done <<'CHANGES'
GRANT SELECT (token) ON orch_lease.transition_lease TO PUBLIC|REVOKE SELECT (token) ON orch_lease.transition_lease FROM PUBLIC
ALTER SEQUENCE orch_lease.token_seq CACHE 7|ALTER SEQUENCE orch_lease.token_seq CACHE 1
ALTER TABLE orch_lease.boot OWNER TO orch_lease_facts_owner|ALTER TABLE orch_lease.boot OWNER TO postgres
CREATE TYPE orch_lease.stray AS ENUM ('a')|DROP TYPE orch_lease.stray
GRANT USAGE ON TYPE orch_lease.lease_grant TO orch_lease_facts_owner|REVOKE USAGE ON TYPE orch_lease.lease_grant FROM orch_lease_facts_owner
ALTER DEFAULT PRIVILEGES IN SCHEMA orch_lease GRANT SELECT ON TABLES TO orch_lease_facts_owner|ALTER DEFAULT PRIVILEGES IN SCHEMA orch_lease REVOKE SELECT ON TABLES FROM orch_lease_facts_owner
UPDATE pg_init_privs SET initprivs = array_append(initprivs, makeaclitem('orch_lease_facts_owner'::regrole, 'postgres'::regrole, 'EXECUTE', false)) WHERE objoid = 'orch_lease.transition_lease_reap(integer)'::regprocedure|UPDATE pg_init_privs SET initprivs = array_remove(initprivs, makeaclitem('orch_lease_facts_owner'::regrole, 'postgres'::regrole, 'EXECUTE', false)) WHERE objoid = 'orch_lease.transition_lease_reap(integer)'::regprocedure
CHANGES
q "$(cat tests/upgrade/schema.sql)" | diff -u target/schema-fresh.txt - || fail "undoing the changes did not restore the facts"
q "DROP ROLE orch_lease_facts_owner"
echo "upgrade schema facts: a column privilege, a sequence setting, an owner, a type, a type grant, a default privilege and an initial privilege each detected"
passed=$((passed + 1))

# A lease 0.4.0 cannot key (not an id of the task table) stops the update with what to do; done, it goes on.
SUITE=upgrade
new_database orch_lease_upgrade_refused
use_library target/releases/0.3.0/orch_lease.so
q "CREATE EXTENSION orch_lease VERSION '0.3.0'"
q "$(fixture_of 0.3.0)" >/dev/null
q "SELECT outcome FROM orch_lease.transition_lease_acquire('PR-7', 'monitor', 2, 'boot-1')" >/dev/null
use_library target/releases/current.so
if refusal=$(q "ALTER EXTENSION orch_lease UPDATE" 2>&1); then
    fail "a lease on a work item that is no task id did not stop the update"
fi
grep -q 'work item "PR-7"' <<<"$refusal" || fail "the refusal does not name the lease: $refusal"
check "SELECT extversion FROM pg_extension WHERE extname = 'orch_lease'" 0.3.0 "a refused update changed the version"
q "DELETE FROM orch_lease.transition_lease WHERE work_item = 'PR-7'"
q "ALTER EXTENSION orch_lease UPDATE"
echo "upgrade with a lease on 'PR-7': refused with what to do, then done once it was released"
passed=$((passed + 1))
# Red team F12 across the update: a stage graph 0.4.0 registered on an enum stage type (through a domain)
# gets its labels' places, the registered table's own, as register_stage_graph writes them; a swap of its
# terminal label then fails the CAS closed.
SUITE="upgrade from 0.4.0, enum stages"
new_database orch_lease_upgrade_enum
use_library target/releases/0.4.0/orch_lease.so
q "CREATE EXTENSION orch_lease VERSION '0.4.0'"
q "CREATE TYPE st AS ENUM ('queued', 'running', 'done'); CREATE DOMAIN st_d AS st;
   CREATE TABLE tasks (id bigint PRIMARY KEY, stage st_d NOT NULL); INSERT INTO tasks VALUES (1, 'done');
   SELECT orch_lease.register_task_table('tasks');
   SELECT orch_lease.register_stage_graph(ARRAY['queued -> running'], ARRAY['done'])" >/dev/null
use_library target/releases/current.so
q "ALTER EXTENSION orch_lease UPDATE"
places="SELECT string_agg(task_table || ':' || stage || '=' || rank, ' ' ORDER BY stage) FROM orch_lease.stage_label"
check "$places" "tasks:done=3 tasks:queued=1 tasks:running=2" "the update did not record the graph's labels' places"
q "SELECT orch_lease.register_stage_graph(ARRAY['queued -> running'], ARRAY['done'])" >/dev/null
check "$places" "tasks:done=3 tasks:queued=1 tasks:running=2" "the update's places differ from a registration's"
q "ALTER TYPE st RENAME VALUE 'done' TO 'finished'; ALTER TYPE st RENAME VALUE 'running' TO 'done'"
# || true: the error is the answer, checked next.
swap=$(q "SELECT outcome FROM orch_lease.update_task_stage_cas('1', 'finished', 'queued')" 2>&1 || true)
grep -q 'no longer has where it had it' <<<"$swap" || fail "after a swap of the terminal label, the CAS answered: $swap"
echo "upgrade from 0.4.0 with an enum stage type: the graph's labels' places recorded, a swap fails closed"
passed=$((passed + 1))
# The dump restored below goes to a cluster with none of this test's own roles: their grants go first.
PGDATABASE=orch_lease_upgraded_from_0_4_0 q "DROP OWNED BY orch_upgrade_actor"
"$PG_BIN/pg_dump" -Fc -d orch_lease_upgraded_from_0_4_0 > target/dump-upgraded.dump

# orch_lease's roles are the cluster's, made by the install and update scripts where missing. In a cluster
# that never had them (a new one, a dump restored into it, an install updated from a release that made
# none), every path must make them, with their attributes and memberships as a fresh install makes them,
# and the schema of a fresh install. Checked in a cluster of its own, with no role but initdb's; between
# paths the roles are dropped with the database that used them.
SUITE="upgrade in a cluster without the roles"
cluster_start
roles_made=0
roleless() {
    PGDATABASE=postgres check "SELECT count(*) FROM pg_roles WHERE oid >= 16384" 0 "the cluster has roles before $1"
    new_database "orch_lease_roleless"
}
compare_roles() {
    q "$(cat tests/upgrade/roles.sql)" > "target/roles-$1.txt"
    [ "$1" = fresh ] || diff -u target/roles-fresh.txt "target/roles-$1.txt" ||
        fail "the roles made by $1 differ from a fresh install's (above)"
    q "$(cat tests/upgrade/schema.sql)" | diff -u target/schema-fresh.txt - ||
        fail "the schema made by $1 in a cluster without the roles differs from a fresh install's (above)"
    PGDATABASE=postgres "$PG_BIN/dropdb" orch_lease_roleless
    PGDATABASE=postgres q "DROP ROLE orch_lease_admin; DROP ROLE orch_lease_actor"
    roles_made=$((roles_made + 1))
}
roleless "a fresh install"
q "CREATE EXTENSION orch_lease" || fail "a fresh install failed (above)"
grep -q '^member orch_lease_admin of orch_lease_actor ' <(q "$(cat tests/upgrade/roles.sql)") ||
    fail "a fresh install did not make orch_lease_admin a member of orch_lease_actor"
compare_roles fresh
for from in 0.1.0 0.2.0 0.3.0 0.4.0; do
    roleless "the update from $from"
    use_library "target/releases/$from/orch_lease.so"
    q "CREATE EXTENSION orch_lease VERSION '$from'" || fail "installing $from failed (above)"
    use_library target/releases/current.so
    q "ALTER EXTENSION orch_lease UPDATE" || fail "the update from $from failed (above)"
    compare_roles "update-from-$from"
done
roleless "the restore"
"$PG_BIN/pg_restore" --exit-on-error -d orch_lease_roleless target/dump-upgraded.dump ||
    fail "a dump of an updated install does not restore into a cluster without the roles"
check "SELECT count(*) > 0 FROM orch_lease.transition_lease" t "the restore brought no leases"
compare_roles restore
echo "upgrade in a cluster without the roles: $roles_made paths (a fresh install, an update from each release, a restore) made a fresh install's roles and schema"
passed=$((passed + roles_made))
echo "upgrade: $passed passed, 0 failed"
