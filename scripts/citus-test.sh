#!/usr/bin/env bash
# orch_lease on a real Citus cluster (docs/scale-out.md), from scripts/test.sh: Citus 13.2.2 built once
# from ../shared/vendor into /var/cache (for tests only: never shipped with or linked into orch_lease), a
# coordinator and two workers on free loopback ports, the steps of docs/scale-out.md, then through the
# coordinator the contract on items of both workers, the incident race, the soak with a worker restarted
# mid-run, and the cycle rate on two workers and on a fresh one-worker cluster. About a minute once Citus
# is built (about 3 minutes more the first time).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT_DIR"
SUITE=citus
CITUS_VERSION=13.2.2
VENDOR=${ORCH_LEASE_VENDOR:-$ROOT_DIR/../shared/vendor}
CITUS_BUILD=${CITUS_BUILD:-/var/cache/orch_lease-citus/$CITUS_VERSION} # outside the clone, kept between runs

# Builds Citus from the vendored tarball and its patch into $CITUS_BUILD, once: a stamp names the inputs.
citus_build() {
    local inputs
    [ -f "$VENDOR/citus-$CITUS_VERSION.tar.gz" ] ||
        fail "no citus-$CITUS_VERSION.tar.gz in $VENDOR: set ORCH_LEASE_VENDOR to the folder holding it and its patch"
    inputs=$(cat "$VENDOR/citus-$CITUS_VERSION.tar.gz" "$VENDOR/citus-$CITUS_VERSION-pg15-minor.patch" "$PG_CONFIG" |
        sha256sum | cut -d' ' -f1)
    [ "$(cat "$CITUS_BUILD/.built" 2>/dev/null)" = "$inputs" ] && return 0
    apt_ensure libzstd-dev liblz4-dev libkrb5-dev
    log "building Citus $CITUS_VERSION in $CITUS_BUILD (about 3 minutes on 2 cores)"
    rm -rf "$CITUS_BUILD"
    mkdir -p "$CITUS_BUILD"
    tar -xzf "$VENDOR/citus-$CITUS_VERSION.tar.gz" -C "$CITUS_BUILD" --strip-components=1
    if ! (cd "$CITUS_BUILD" && patch -s -p1 < "$VENDOR/citus-$CITUS_VERSION-pg15-minor.patch" &&
        ./configure --without-libcurl PG_CONFIG="$PG_CONFIG" && make -j2) > "$CITUS_BUILD.log" 2>&1; then
        tail -n 30 "$CITUS_BUILD.log"
        fail "building Citus failed (above; the whole log is $CITUS_BUILD.log)"
    fi
    echo "$inputs" > "$CITUS_BUILD/.built"
}

# Installs that build into PostgreSQL's directories (under the lock), unless the same citus.so is there.
citus_install() {
    cmp -s "$CITUS_BUILD/src/backend/distributed/citus.so" "$("$PG_CONFIG" --pkglibdir)/citus.so" && return 0
    log "installing Citus $CITUS_VERSION into PostgreSQL $PG_MAJOR"
    make -s -C "$CITUS_BUILD" install > "$CITUS_BUILD.log" 2>&1 || fail "installing Citus failed ($CITUS_BUILD.log)"
}

# Every node: Citus preloaded, connections between nodes over loopback without TLS (the throwaway servers
# have none).
CITUS_SETTINGS=(-c shared_preload_libraries=citus -c "citus.node_conninfo=sslmode=disable" -c max_prepared_transactions=100)

# node_start NAME: another server of the cluster, in $CLUSTER_DIR/NAME on a free port (cluster_stop stops
# it too); prints its port.
node_start() {
    local data=$CLUSTER_DIR/$1 port
    port=$(free_port)
    as_pg "$PG_BIN/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
    server_start "$data" "$port" "${SERVER_SETTINGS[@]}" "${CITUS_SETTINGS[@]}"
    echo "$port"
}

# on PORT SQL: what SQL answers on the node listening on PORT.
on() { PGPORT=$1 q "$2"; }

# item_on PORT: the first of task-1 … task-20 whose shard the worker on PORT holds.
item_on() {
    q "SELECT 'task-' || g FROM generate_series(1, 20) g
         JOIN pg_dist_placement p ON p.shardid = get_shard_id_for_distribution_column('tasks', 'task-' || g)
         JOIN pg_dist_node n USING (groupid)
        WHERE n.nodeport = $1 AND 'task-' || g NOT IN (SELECT work_item FROM orch_lease.lease_event)
        ORDER BY g LIMIT 1"
}

# grant ITEM OWNER BOOT [SCOPE]: an acquire through the coordinator, as "outcome token".
grant() {
    q "SELECT outcome || ' ' || coalesce(token::text, '-')
         FROM orch_lease.transition_lease_acquire('$1', '$2', 1, '$3', ${4:-NULL})"
}

# everywhere STATEMENT: ALTER SYSTEM … on every node (each in its own session: ALTER SYSTEM runs in no
# transaction block), then a reload; a per-item call reads its settings on the worker it runs on.
everywhere() {
    local port
    for port in "$COORDINATOR" "${WORKERS[@]}"; do
        # orch_lease's settings are known once its library is loaded in the session
        PGPORT=$port psql -X -q -v ON_ERROR_STOP=1 -c "LOAD 'orch_lease'" -c "$1" -c "SELECT pg_reload_conf()" >/dev/null
    done
    sleep 0.5 # backends take the new settings at their next statement once signalled
}

# listen PORT FILE: a listener on channel orch_lease on the node on PORT for 4 s, writing what it hears.
listen() {
    PGPORT=$1 psql -X -q -c "LISTEN orch_lease" -c "SELECT pg_sleep(4)" > "$2" 2>&1 &
}

# citus_cluster N: a fresh coordinator and N workers, then the steps of docs/scale-out.md on the
# coordinator (what they print compared with tests/snippets/citus-N.out). Sets COORDINATOR and WORKERS.
citus_cluster() {
    local port
    cluster_stop
    cluster_start "${CITUS_SETTINGS[@]}"
    COORDINATOR=$PGPORT
    WORKERS=()
    for n in $(seq "$1"); do WORKERS+=("$(node_start "worker$n")"); done
    for port in "$COORDINATOR" "${WORKERS[@]}"; do on "$port" "CREATE EXTENSION citus"; done
    q "SELECT citus_set_coordinator_host('127.0.0.1', $COORDINATOR)" >/dev/null
    for port in "${WORKERS[@]}"; do q "SELECT citus_add_node('127.0.0.1', $port)" >/dev/null; done
    log "Citus: coordinator :$COORDINATOR, workers :${WORKERS[*]}; the steps of docs/scale-out.md"
    mkdir -p target
    run_snippets docs/scale-out.md "citus-$1"
}

# cycle_rate: acquire + release cycles per second through the coordinator (2 clients for 5 s, each on
# items of its own, history on): a correctness run on this machine, not a scaling claim. Prints the rate
# alone (a failed check says so on stderr).
cycle_rate() {
    q "SELECT count(*) FROM orch_lease.transition_lease_recover('bench-boot', 'bench')" >/dev/null
    # Items of their own for each client, rows of tasks (an id with no row is not_found), named with
    # their table: the soak and the race registered tables of their own.
    q "SELECT orch_lease.register_task_table('tasks');
       INSERT INTO tasks SELECT 'bench-' || i, 'queued' FROM generate_series(0, 1999) i ON CONFLICT DO NOTHING" >/dev/null
    cat > target/citus-cycle.sql <<'SQL'
\set k :client_id * 1000 + random(0, 999)
SELECT token FROM orch_lease.transition_lease_acquire('bench-:k', 'bench', 1, 'bench-boot', task_table => 'tasks') \gset
SELECT orch_lease.transition_lease_release('bench-:k', :token, task_table => 'tasks');
SQL
    "$PG_BIN/pgbench" -n -c 2 -j 2 -T 5 -f target/citus-cycle.sql | awk '/^tps/ { printf "%d", $3 }'
    check "SELECT count(*) FROM orch_lease.transition_lease WHERE owner = 'bench'" 0 "every cycle released its lease" >&2
    check "SELECT count(DISTINCT work_item) > 2 FROM orch_lease.lease_event WHERE actor = 'bench'" t "the cycles used many items" >&2
}

citus_build
cargo build --quiet --manifest-path harness/Cargo.toml
ORCH_RACE=$ROOT_DIR/harness/target/debug/orch-race
lock_take # held to the end: the servers load the Citus and orch_lease libraries installed here
citus_install
install_debug
trap cluster_stop EXIT
citus_cluster 2
WORKER1=${WORKERS[0]}
WORKER2=${WORKERS[1]}

log "the contract through the coordinator, on both workers"
check "SELECT count(*) FROM orch_lease.transition_lease_recover('boot-1', 'orchestrator', 1)" 0 "a first recover"
for worker in "$WORKER1" "$WORKER2"; do
    group=$(q "SELECT groupid FROM pg_dist_node WHERE nodeport = $worker")
    item=$(item_on "$worker")
    read -r outcome token <<< "$(grant "$item" monitor boot-1)"
    assert "acquire of $item on :$worker: $outcome" [ "$outcome" = acquired ]
    assert "token $token of $item is not from worker :$worker's range" [ $((token >> 48)) = "$group" ]
    check "SELECT outcome FROM orch_lease.transition_lease_acquire('$item', 'webhook', 1, 'boot-1')" held "a second acquire is refused"
    check "SELECT orch_lease.transition_lease_held('$item', $token)" t "held with its token"
    check "SELECT orch_lease.transition_lease_liveness('$item')" live "its liveness"
    check "SELECT outcome FROM orch_lease.commit_stage_cas('$item', $token, 'queued', 'merged')" applied "the commit"
    check "SELECT stage FROM tasks WHERE id = '$item'" merged "the stage written on the worker"
    check "SELECT orch_lease.transition_lease_liveness('$item')" none "the commit ended the lease"
    check "SELECT outcome FROM orch_lease.update_task_stage_cas('$item', 'queued', 'done')" stage_mismatch "a CAS from a stale stage"
    check "SELECT outcome FROM orch_lease.commit_stage_cas('$item', $token, 'merged', 'done')" not_held "a commit under a lease it already ended"
    item=$(item_on "$worker")
    read -r outcome token <<< "$(grant "$item" monitor boot-1)"
    check "SELECT orch_lease.transition_lease_release('$item', $token)" t "a release"
    check "SELECT orch_lease.transition_lease_release('$item', $token)" f "a second release"
    read -r outcome next <<< "$(grant "$item" monitor boot-1)"
    assert "the next grant of $item: $outcome $next after $token" matches "$outcome $((next > token))" "acquired 1"
    check "SELECT count(*) FROM orch_lease.transition_lease_status WHERE work_item = '$item' AND liveness = 'live'" 1 "the status view"
done
check "SELECT outcome FROM orch_lease.update_task_stage_cas('no-such-task', 'queued', 'merged')" not_found "a CAS on a missing task"

# busy: another acquire of the item in flight on its worker (its per-item gate, a transaction-level lock
# keyed by the table, as the worker knows it, and the item)
item=$(item_on "$WORKER1")
PGPORT=$WORKER1 psql -X -q -c "BEGIN" \
    -c "SELECT pg_advisory_xact_lock(1869767528, hashtext((SELECT relid::oid::text FROM orch_lease.task_table) || ':$item'))" \
    -c "SELECT pg_sleep(3)" -c "COMMIT" >/dev/null &
sleep 1
check "SELECT outcome FROM orch_lease.transition_lease_acquire('$item', 'webhook', 1, 'boot-1')" busy "an acquire in flight"
wait

# retry: at REPEATABLE READ, a holder in the snapshot released since (the transaction block runs on the
# coordinator, its statements on the item's worker in one distributed transaction)
item=$(item_on "$WORKER2")
read -r outcome token <<< "$(grant "$item" monitor boot-1)"
answer=$(psql -X -q -t -A -v ON_ERROR_STOP=1 <<SQL
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT count(*) FROM orch_lease.transition_lease WHERE work_item = '$item';
\! psql -X -q -c "SELECT orch_lease.transition_lease_release('$item', $token)" >/dev/null
SELECT outcome FROM orch_lease.transition_lease_acquire('$item', 'webhook', 1, 'boot-1');
COMMIT;
SQL
)
assert "a holder released after the snapshot: $answer" [ "$(echo "$answer" | tail -n 1)" = retry ]

# superseded, recover (its NOTIFY on the coordinator, where it runs), reclaimed (its NOTIFY on the worker)
held=$(q "SELECT count(*) FROM orch_lease.transition_lease WHERE owner_boot_id = 'boot-1'")
listen "$COORDINATOR" target/citus-listen-coordinator.txt
sleep 0.5
check "SELECT count(*) FROM orch_lease.transition_lease_recover('boot-2', 'orchestrator', 2)" "$held" "recover ends the leases of the superseded boot"
check "SELECT outcome FROM orch_lease.transition_lease_acquire('task-20', 'monitor', 1, 'boot-1')" superseded "a zombie's acquire"
check "SELECT count(*) FROM orch_lease.transition_lease_recover('boot-3', 'crashy', 3)" 0 "another instance"
item=$(item_on "$WORKER2")
read -r outcome token <<< "$(grant "$item" crashy boot-3)"
q "UPDATE orch_lease.boot SET superseded_at = now(), superseded_by = 'gone' WHERE boot_id = 'boot-3'" >/dev/null
listen "$WORKER2" target/citus-listen-worker2.txt
listen "$WORKER1" target/citus-listen-worker1.txt
sleep 0.5
read -r outcome next <<< "$(grant "$item" monitor boot-2)"
assert "a dead holder's lease: $outcome $next after $token" matches "$outcome $((next > token))" "reclaimed 1"
other=$(item_on "$WORKER1")
read -r outcome token <<< "$(grant "$other" monitor boot-2)"
check "SELECT orch_lease.transition_lease_force_release('$other', $token, 'on call')" t "a force release"
wait
assert "no NOTIFY of the reclaim on its worker" grep -q "\"work_item\":\"$item\"" target/citus-listen-worker2.txt
assert "no NOTIFY of the force release on its worker" grep -q "\"work_item\":\"$other\"" target/citus-listen-worker1.txt
assert "the other worker announced a takeover it did not make" not grep -q "\"work_item\":\"$other\"" target/citus-listen-worker2.txt
assert "no NOTIFY of recover on the coordinator" grep -q '"outcome":"recovered"' target/citus-listen-coordinator.txt

# the reaper, from the coordinator: a dead holder's lease (stale) and one past the ceiling
check "SELECT count(*) FROM orch_lease.transition_lease_recover('boot-4', 'doomed', 4)" 0 "a doomed instance"
item=$(item_on "$WORKER1")
read -r outcome token <<< "$(grant "$item" doomed boot-4)"
q "UPDATE orch_lease.boot SET superseded_at = now(), superseded_by = 'gone' WHERE boot_id = 'boot-4'" >/dev/null
check "SELECT string_agg(work_item || ':' || kind, ' ') FROM orch_lease.transition_lease_reap(3600)" "$item:stale" "the reaper takes the dead holder's lease"
sleep 1.1
check "SELECT count(*) > 0 FROM orch_lease.transition_lease_reap(1) WHERE kind = 'ceiling'" t "the reaper cuts leases over the ceiling"

# the kill-switch and scopes, set on every node
item=$(item_on "$WORKER2")
everywhere "ALTER SYSTEM SET orch_lease.enabled = off"
check "SELECT outcome FROM orch_lease.transition_lease_acquire('$item', 'x', 1, 'boot-2')" disabled "the kill-switch"
everywhere "ALTER SYSTEM RESET orch_lease.enabled"
everywhere "ALTER SYSTEM SET orch_lease.scopes = 'deploy'"
check "SELECT outcome FROM orch_lease.transition_lease_acquire('$item', 'x', 1, 'boot-2', 'build')" out_of_scope "a scope not covered"
everywhere "ALTER SYSTEM RESET orch_lease.scopes"
check "SELECT outcome FROM orch_lease.transition_lease_acquire('$item', 'x', 1, 'boot-2', 'build')" acquired "every scope again"
# The database's kill-switch is a table of each node's own: set_enabled on every node (docs/scale-out.md).
for port in "$COORDINATOR" "${WORKERS[@]}"; do
    on "$port" "SELECT orch_lease.set_enabled(false, 'INC-1, node $port')" >/dev/null
done
item=$(item_on "$WORKER1")
check "SELECT outcome FROM orch_lease.transition_lease_acquire('$item', 'x', 1, 'boot-2')" disabled "set_enabled on every node"
for port in "$COORDINATOR" "${WORKERS[@]}"; do
    on "$port" "SELECT orch_lease.set_enabled(true, 'INC-1 over, node $port')" >/dev/null
done
check "SELECT outcome FROM orch_lease.transition_lease_acquire('$item', 'x', 1, 'boot-2')" acquired "back on, on every node"
check "SELECT count(*) FROM orch_lease.lease_event WHERE event = 'switched'" 6 "each node's switches in the history"

# the metrics and the history, read on the coordinator from every worker
# (counters summed over every node, as docs/scale-out.md shows: each node counts the calls it runs)
check "SELECT string_agg(label || '=' || (value > 0), ' ' ORDER BY label)
         FROM (SELECT m.label, sum(m.value) AS value
                 FROM run_command_on_all_nodes(\$\$SELECT json_agg(m) FROM orch_lease.transition_lease_metrics() m\$\$) r,
                      json_to_recordset(r.result::json) AS m (metric text, label text, value double precision)
                WHERE m.metric = 'orch_lease_reclaims_total' GROUP BY m.label) c" \
      "ceiling=true manual=true stale=true" "the takeover counters"
check "SELECT count(*) FROM (SELECT new_token, lag(new_token) OVER (PARTITION BY work_item ORDER BY at, event_id) AS previous
         FROM orch_lease.lease_event WHERE new_token IS NOT NULL) g WHERE new_token <= previous" 0 "tokens grow per item"
check "SELECT count(*) = count(DISTINCT new_token) FROM orch_lease.lease_event WHERE new_token IS NOT NULL" t "tokens are unique"
check "SELECT count(*) = count(DISTINCT event_id) FROM orch_lease.lease_event" t \
      "event ids are unique over the nodes (each numbers its events in its own range)"
# the hourly prune, through the coordinator over every shard: the history emptied, the counters unchanged
reclaims="SELECT sum(m.value) FROM run_command_on_all_nodes(\$\$SELECT json_agg(m) FROM orch_lease.transition_lease_metrics() m\$\$) r,
            json_to_recordset(r.result::json) AS m (metric text, label text, value double precision)
          WHERE m.metric = 'orch_lease_reclaims_total'"
before=$(q "$reclaims")
check "SELECT orch_lease.transition_lease_prune('0 seconds') > 0" t "prune removes the history"
check "SELECT count(*) FROM orch_lease.lease_event" 0 "prune leaves history behind"
check "$reclaims" "$before" "prune changed the counters"

# Two task tables (#27): jobs, distributed by id and colocated with tasks, registered beside it. The same
# id in both is two work items, leased at once on the worker that holds that id, each commit writing its
# own table's row; a call naming no table is refused. Then jobs goes (the checks below name no table).
q "CREATE TABLE jobs (id text PRIMARY KEY, stage text NOT NULL);
   SELECT create_distributed_table('jobs', 'id', colocate_with => 'tasks');
   INSERT INTO jobs SELECT 'task-' || i, 'queued' FROM generate_series(1, 20) i;
   SELECT orch_lease.register_task_table('jobs')" >/dev/null
item=$(q "SELECT 'task-' || g FROM generate_series(1, 20) g
            JOIN pg_dist_placement p ON p.shardid = get_shard_id_for_distribution_column('tasks', 'task-' || g)
            JOIN pg_dist_node n USING (groupid)
           WHERE n.nodeport = $WORKER2 AND 'task-' || g NOT IN (SELECT work_item FROM orch_lease.transition_lease)
           ORDER BY g LIMIT 1")
stage=$(q "SELECT stage FROM tasks WHERE id = '$item'")
for table in tasks jobs; do
    check "SELECT outcome FROM orch_lease.transition_lease_acquire('$item', 'team-$table', 1, 'boot-2', task_table => '$table')" \
          acquired "$item of $table, leased while the other table's is"
done
# || true: psql must fail here (no table named); what it answered is the check, on the next line.
answer=$(psql -X -q -v VERBOSITY=sqlstate -c "SELECT orch_lease.transition_lease_held('$item', 1)" 2>&1 || true)
assert "a call naming no table with two registered: $answer" [ "$answer" = "ERROR:  42P08" ]
token=$(q "SELECT token FROM orch_lease.transition_lease WHERE work_item = '$item' AND owner = 'team-jobs'")
assert "the token $token of ($item, jobs) is not from its worker's range" \
       [ $((token >> 48)) = "$(q "SELECT groupid FROM pg_dist_node WHERE nodeport = $WORKER2")" ]
check "SELECT outcome FROM orch_lease.commit_stage_cas('$item', $token, 'queued', 'running', task_table => 'jobs')" \
      applied "the commit on jobs"
check "SELECT (SELECT stage FROM tasks WHERE id = '$item') || ' ' || (SELECT stage FROM jobs WHERE id = '$item')" \
      "$stage running" "the commit on jobs wrote only jobs' row"
check "SELECT orch_lease.transition_lease_force_release('$item', task_table => 'tasks')" t "tasks' lease, ended by its table"
check "SELECT count(*) FROM orch_lease.transition_lease WHERE work_item = '$item'" 0 "both leases ended"
q "SELECT orch_lease.unregister_task_table('jobs'); DROP TABLE jobs" >/dev/null

# Bad input raised on a worker reaches the caller with its SQLSTATE and nothing written
for worker in "$WORKER1" "$WORKER2"; do
    item=$(item_on "$worker")
    # || true: psql must fail here (bad input); what it answered is the check, on the next line.
    answer=$(psql -X -q -v VERBOSITY=sqlstate -c "SELECT orch_lease.transition_lease_acquire('$item', 'x', 0, 'boot-2')" 2>&1 || true)
    assert "a pid of 0 for $item on :$worker: $answer" [ "$answer" = "ERROR:  22023" ]
    check "SELECT orch_lease.transition_lease_liveness('$item')" none "nothing granted to bad input"
done

# Limits (docs/scale-out.md): an acquire inside a transaction block runs on the coordinator, which draws no
# token; a session-bound lease names a backend of the worker, not the caller's session.
# || true: psql must fail here (the limit); what it answered is the check, on the next line.
answer=$(psql -X -q -t -A -c "BEGIN" -c "SELECT outcome FROM orch_lease.transition_lease_acquire('task-19', 'x', 1, 'boot-2')" 2>&1 || true)
assert "an acquire in a transaction block: $answer" matches "$answer" '*reached maximum value of sequence "token_seq"*'
echo "citus: $CHECKED contract checks passed through the coordinator"

# The harness's tables, distributed like the tasks (create_tasks runs this before registering its table).
export ORCH_LEASE_TASK_LAYOUT="SET citus.enable_unsafe_triggers = on;
    ALTER TABLE {prefix}_history DROP CONSTRAINT {prefix}_history_pkey;
    SELECT create_distributed_table('{prefix}_task', 'id', colocate_with => 'tasks');
    SELECT create_distributed_table('{prefix}_history', 'task_id', colocate_with => 'tasks');"

log "the incident race through the coordinator: bare UPDATEs must duplicate, orch_lease must not"
assert "the naive race did not duplicate (above)" \
    "$ORCH_RACE" race --mode naive --items 20 --expect duplicates --dsn "$ORCH_LEASE_DSN"
assert "the lease race was not exactly once (above)" \
    "$ORCH_RACE" race --mode lease --items 20 --expect exactly-once --dsn "$ORCH_LEASE_DSN"

log "the soak through the coordinator, worker 1 restarted mid-run (immediate stop)"
ORCH_LEASE_RESTART_CMD="$(pg_ctl_command -D "$CLUSTER_DIR/worker1" -l "$CLUSTER_DIR/worker1.log" -m immediate -w restart) >/dev/null"
export ORCH_LEASE_RESTART_CMD
assert "the soak through the coordinator broke an invariant (above)" \
    "$ORCH_RACE" soak --mode lease --actors 4 --items 80 --effect-ms 3 --restarts 1 --budget-s 300 \
    --expect holds --dsn "$ORCH_LEASE_DSN"
log "the cycle rate on two workers, then on one"
rate_two=$(cycle_rate)
citus_cluster 1
rate_one=$(cycle_rate)
assert "no cycle completed on two workers ($rate_two)" [ "$rate_two" -gt 0 ]
assert "no cycle completed on one worker ($rate_one)" [ "$rate_one" -gt 0 ]
echo "citus: acquire + release cycles/s through the coordinator (2 clients): one worker $rate_one, two workers $rate_two"
echo "citus: $CHECKED passed, 0 failed"
