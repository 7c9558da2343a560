#!/usr/bin/env bash
# Failover on the real thing: one etcd and a Patroni cluster of three PostgreSQL 15 nodes (Debian's
# packages, installed when missing), synchronous_mode and synchronous_mode_strict, orch_lease created by
# Patroni's post_bootstrap. Six failover actors (harness/src/failover.rs) work through one multi-host DSN
# with target_session_attrs=read-write, reconnecting and calling recover with a new boot id, while five
# faults follow one another:
#   switchover       patronictl switchover to the synchronous standby
#   kill-postmaster  SIGKILL of the leader's postmaster (primary_start_timeout 0: Patroni fails over
#                    instead of restarting it; the old leader comes back through pg_rewind)
#   freeze-patroni   SIGSTOP of the leader's Patroni: its leader key expires while its PostgreSQL keeps
#                    serving; once the standby is promoted the old leader must acknowledge nothing (strict
#                    synchronous mode holds its commits); SIGCONT then makes it step down and rejoin
#   kill-replica     SIGKILL of the synchronous standby's Patroni and postmaster; Patroni restarted later,
#                    the node rejoins
#   restart-etcd     etcd stopped for a few seconds and started again (same data)
# Before each fault a transaction is left open holding a lease on the leader. After each, once the
# cluster is whole again, `orch-race failover-check` asserts on the leader: every acknowledged grant and
# commit present, no token granted twice, tokens after the failover above those before it, no
# acknowledgement from the old leader after the new one answered, the in-flight lease absent, the actors
# back at work. Everything on 127.0.0.1 with free ports, data in one temporary directory, every process
# stopped by the trap. Loads the orch_lease installed in the system PostgreSQL: holds /tmp/orch_lease.lock.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT_DIR"
SUITE=patroni
apt_ensure patroni etcd-server etcd-client curl jq
cargo build --quiet --manifest-path harness/Cargo.toml
ORCH_RACE=$ROOT_DIR/harness/target/debug/orch-race
lock_take

WORK=$(mktemp -d /tmp/orch_lease-patroni.XXXXXX)
chmod 755 "$WORK"
is_root && chown postgres:postgres "$WORK"
NODES=(1 2 3)
declare -A PG_PORT REST_PORT
ACTORS=()

# Everything this script started, whatever state the run left it in.
stop_all() {
    local status=$? pid n
    [ "$status" = 0 ] || tail -n 15 "$WORK"/*.log 2>/dev/null || true
    for pid in "${ACTORS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for n in "${NODES[@]}"; do
        pid=$(cat "$WORK/pg$n.patroni.pid" 2>/dev/null) || continue
        kill -CONT "$pid" 2>/dev/null || true
        kill -KILL "$pid" 2>/dev/null || true
    done
    for n in "${NODES[@]}"; do
        [ -f "$WORK/pg$n/postmaster.pid" ] &&
            as_pg "$PG_BIN/pg_ctl" -D "$WORK/pg$n" -m immediate stop >/dev/null 2>&1 || true
    done
    pid=$(cat "$WORK/etcd.pid" 2>/dev/null) && kill -KILL "$pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap stop_all EXIT

# as_pg_daemon NAME COMMAND…: COMMAND in the background as the postgres user, its pid in $WORK/NAME.pid,
# its output in $WORK/NAME.log. setpriv execs it in place, so the pid is the program's own (what the
# faults signal); runuser would stay in between as its parent, and stop itself when its child is stopped.
as_pg_daemon() {
    local name=$1 as_postgres=()
    shift
    is_root && as_postgres=(setpriv --reuid=postgres --regid=postgres --init-groups env HOME="$WORK")
    # Without the lock's descriptor (scripts/lib.sh, without_lock), exec'd in place.
    (
        close_lock_fds
        exec "${as_postgres[@]}" "$@"
    ) >"$WORK/$name.log" 2>&1 &
    echo $! >"$WORK/$name.pid"
}

ETCD_CLIENT=$(free_port)
ETCD_PEER=$(free_port)
etcd_start() {
    as_pg_daemon etcd etcd --name etcd1 --data-dir "$WORK/etcd" \
        --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT" --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT" \
        --listen-peer-urls "http://127.0.0.1:$ETCD_PEER" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER" \
        --initial-cluster "etcd1=http://127.0.0.1:$ETCD_PEER" --enable-v2=true
    for _ in $(seq 100); do
        ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$ETCD_CLIENT" endpoint health >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    fail "etcd did not become healthy"
}

# The tested configuration (docs/ha.md shows it): short ttl, loop_wait and retry_timeout so that a
# failover takes seconds; a crashed primary fails over instead of restarting (primary_start_timeout 0).
# etcd's v2 API: with the v3 one, Patroni 3.0.2's watch cache of the keys once went stale after a
# failover, and the new leader could not name a synchronous standby ("Synchronous replication key
# updated by someone else", every loop, for minutes; docs/ha.md).
write_config() {
    local n=$1
    cat >"$WORK/pg$n.yml" <<EOF
scope: orch_lease
name: pg$n
restapi:
  listen: 127.0.0.1:${REST_PORT[$n]}
  connect_address: 127.0.0.1:${REST_PORT[$n]}
etcd:
  host: 127.0.0.1:$ETCD_CLIENT
bootstrap:
  dcs:
    ttl: 10
    loop_wait: 1
    retry_timeout: 3
    primary_start_timeout: 0
    synchronous_mode: true
    synchronous_mode_strict: true
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        synchronous_commit: "on"
        max_connections: 200
        wal_keep_size: 256MB
  initdb:
    - encoding: UTF8
    - locale: C.UTF-8
    - data-checksums
  post_bootstrap: $PG_BIN/psql -X -q -v ON_ERROR_STOP=1 -c "CREATE EXTENSION orch_lease"
postgresql:
  listen: 127.0.0.1:${PG_PORT[$n]}
  connect_address: 127.0.0.1:${PG_PORT[$n]}
  data_dir: $WORK/pg$n
  bin_dir: $PG_BIN
  pgpass: $WORK/pgpass$n
  parameters:
    unix_socket_directories: $WORK
  pg_hba:
    - local all all trust
    - host all all 127.0.0.1/32 trust
    - host replication all 127.0.0.1/32 trust
  authentication:
    superuser: {username: postgres}
    replication: {username: postgres}
    rewind: {username: postgres}
EOF
}

patroni_start() { as_pg_daemon "pg$1.patroni" patroni "$WORK/pg$1.yml"; }

# The cluster as Patroni's REST API describes it, from the first node that answers within a second (a
# frozen Patroni does not).
cluster_state() {
    local n
    for n in "${NODES[@]}"; do
        curl -sf --max-time 1 "http://127.0.0.1:${REST_PORT[$n]}/cluster" && return 0
    done
    echo '{"members": []}'
}

# The node number of the member with ROLE (leader, sync_standby), or nothing.
member() { cluster_state | jq -r --arg role "$1" '.members[] | select(.role == $role) | .name[2:]' | head -n 1; }

# The leader, once it is not OLD (any, without OLD) and its PostgreSQL accepts writes.
await_leader() {
    local old=${1:-} leader deadline=$((SECONDS + 60))
    while [ "$SECONDS" -lt "$deadline" ]; do
        leader=$(member leader)
        if [ -n "$leader" ] && [ "$leader" != "$old" ] &&
            [ "$(psql -X -q -t -A -h 127.0.0.1 -p "${PG_PORT[$leader]}" -U postgres -d postgres \
                 -c 'SELECT NOT pg_is_in_recovery()' 2>/dev/null)" = t ]; then
            echo "$leader"
            return 0
        fi
        sleep 0.1
    done
    fail "no writable leader other than '$old' within 60 s: $(cluster_state)"
}

# Three members running: a leader, a synchronous standby and a replica, and the leader's PostgreSQL
# streaming to both (a killed Patroni's member key outlives it by the ttl: Patroni's word is not enough).
await_whole() {
    local state leader deadline=$((SECONDS + 90))
    while [ "$SECONDS" -lt "$deadline" ]; do
        state=$(cluster_state | jq -r '[.members[] | select(.state == "running") | .role] | sort | join(" ")')
        leader=$(member leader)
        [ "$state" = "leader replica sync_standby" ] &&
            [ "$(psql -X -q -t -A -h 127.0.0.1 -p "${PG_PORT[$leader]}" -U postgres -d postgres -c \
                "SELECT count(*) FILTER (WHERE state = 'streaming') || ' ' || count(*) FILTER (WHERE sync_state = 'sync')
                   FROM pg_stat_replication" 2>/dev/null)" = "2 1" ] && return 0
        sleep 0.1
    done
    fail "the cluster did not become whole again within 90 s: $(cluster_state)"
}

# --- the cluster ----------------------------------------------------------------------------------
etcd_start
for n in "${NODES[@]}"; do
    PG_PORT[$n]=$(free_port)
    REST_PORT[$n]=$(free_port)
    write_config "$n"
done
patroni_start 1 # bootstraps the cluster (and orch_lease); the others clone it
await_leader >/dev/null
patroni_start 2
patroni_start 3
await_whole
DSN="host=127.0.0.1,127.0.0.1,127.0.0.1 port=${PG_PORT[1]},${PG_PORT[2]},${PG_PORT[3]} user=postgres dbname=postgres target_session_attrs=read-write connect_timeout=2"
leader=$(await_leader)
log "Patroni: leader pg$leader, synchronous standby pg$(member sync_standby); etcd :$ETCD_CLIENT"
export PGHOST=127.0.0.1 PGUSER=postgres PGDATABASE=postgres
PGPORT=${PG_PORT[$leader]} check "SELECT extversion FROM pg_extension WHERE extname = 'orch_lease'" \
    "$(sed -n "s/^version = \"\(.*\)\"/\1/p" Cargo.toml | head -n 1)" "post_bootstrap created orch_lease"

# --- the actors -----------------------------------------------------------------------------------
ACKS=target/patroni
rm -rf "$ACKS"
mkdir -p "$ACKS"
PGPORT=${PG_PORT[$leader]} q "CREATE TABLE ha_task (id text PRIMARY KEY, stage text NOT NULL);
    INSERT INTO ha_task SELECT 'ha-' || i, 'v0' FROM generate_series(1, 40) i;
    -- the faults' in-flight leases: rows of the task table (an id with no row is not_found), no actor's
    INSERT INTO ha_task SELECT 'in-flight-' || i, 'v0' FROM generate_series(1, 10) i;
    SELECT orch_lease.register_task_table('ha_task');" >/dev/null
for n in 0 1 2 3 4 5; do
    "$ORCH_RACE" failover-actor --dsn "$DSN" --role "actor-$n" --items 40 --dir "$ACKS" --seconds 3600 &
    ACTORS+=($!)
done
started=$(date +%s%N)
sleep 3

# Every failover actor still at work: they run until this script stops them, so one that exited did so
# on its own — a panic on an error that is not a lost connection (harness/src/failover.rs) — and fails
# the run with its status.
actors_working() {
    local pid state status
    for pid in "${ACTORS[@]}"; do
        state=$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null) || state=""
        if [ -z "$state" ] || [ "$state" = Z ]; then
            status=0
            wait "$pid" || status=$?
            fail "a failover actor (pid $pid) exited with status $status while the faults ran (its output above)"
        fi
    done
}

# --- the faults -----------------------------------------------------------------------------------
postmaster_pid() { head -n 1 "$WORK/pg$1/postmaster.pid"; }
patroni_pid() { cat "$WORK/pg$1.patroni.pid"; }

# fault NAME: injects it into the cluster as it is now, waits for a writable leader (another one when the
# fault moves it) and for the cluster to be whole again, lets the actors work, then checks.
FAULTS=0
fault() {
    local name=$1 old new sync injected
    old=$(await_leader)
    sync=$(member sync_standby)
    FAULTS=$((FAULTS + 1))
    # A transaction left open across the fault, holding a lease: it never committed, so it must be absent.
    local in_flight="in-flight-$FAULTS"
    coproc IN_FLIGHT { psql -X -q -t -A -h 127.0.0.1 -p "${PG_PORT[$old]}" -U postgres -d postgres; }
    echo "BEGIN; SELECT acquired FROM orch_lease.transition_lease_acquire('$in_flight', 'in-flight', 1, 'in-flight-boot');" >&"${IN_FLIGHT[1]}"
    local acquired
    # || true: a timeout leaves $acquired empty, and the check on the next line fails with a message.
    read -r -t 10 acquired <&"${IN_FLIGHT[0]}" || true
    if [ "$acquired" != t ]; then
        kill "$IN_FLIGHT_PID" 2>/dev/null # its psql would keep the script from ending
        fail "$name: the in-flight lease was not acquired ($acquired)"
    fi
    injected=$(date +%s%N)
    case $name in
    switchover)
        as_pg patronictl -c "$WORK/pg1.yml" switchover --leader "pg$old" --candidate "pg$sync" --force >/dev/null
        new=$(await_leader "$old") ;;
    kill-postmaster)
        kill -KILL "$(postmaster_pid "$old")"
        new=$(await_leader "$old") ;;
    freeze-patroni)
        kill -STOP "$(patroni_pid "$old")"
        new=$(await_leader "$old")
        sleep 1 # the old leader, still frozen, keeps its sessions: none may be acknowledged now
        kill -CONT "$(patroni_pid "$old")" ;;
    kill-replica)
        kill -KILL "$(patroni_pid "$sync")" "$(postmaster_pid "$sync")"
        wait "$(patroni_pid "$sync")" || true
        sleep 3
        patroni_start "$sync"
        new=$(await_leader) ;;
    restart-etcd)
        kill -TERM "$(cat "$WORK/etcd.pid")"
        wait "$(cat "$WORK/etcd.pid")" || true
        sleep 3
        etcd_start
        new=$(await_leader) ;;
    esac
    local promoted=$(($(date +%s%N) - injected))
    kill "$IN_FLIGHT_PID" 2>/dev/null || true
    await_whole
    local whole=$(($(date +%s%N) - injected))
    sleep 3
    log "$name: leader pg$old -> pg$new, writable after $((promoted / 1000000)) ms, whole after $((whole / 1000000)) ms"
    "$ORCH_RACE" failover-check --name "$name" --dsn "$DSN" --dir "$ACKS" --injected "$injected" \
        --old-port "${PG_PORT[$old]}" --new-port "${PG_PORT[$new]}" --in-flight "$in_flight" ||
        fail "$name: the check failed (above)"
    actors_working
}

fault switchover
fault kill-postmaster
fault freeze-patroni
fault kill-replica
fault restart-etcd
# The checker is not blind (red runs against the live cluster): a lease that did commit named as the
# in-flight one, and the leader now named as the old leader of a failover to a node that led earlier in
# the run (the leader now acknowledged plenty after that), must each fail the check, for that reason.
leader=$(await_leader)
red=$("$ORCH_RACE" failover-check --name red-in-flight --dsn "$DSN" --dir "$ACKS" --injected "$started" \
    --old-port "${PG_PORT[$leader]}" --new-port "${PG_PORT[$leader]}" --in-flight ha-1 2>/dev/null) &&
    fail "the check passed a committed lease named as in flight"
[[ "$red" == *"in-flight lease present: true"* ]] || fail "the check did not see the committed lease: $red"
seen=""
for n in "${NODES[@]}"; do
    [ "$n" = "$leader" ] && continue
    red=$("$ORCH_RACE" failover-check --name red-old-leader --dsn "$DSN" --dir "$ACKS" --injected "$started" \
        --old-port "${PG_PORT[$leader]}" --new-port "${PG_PORT[$n]}" 2>/dev/null) &&
        fail "the check passed acknowledgements of pg$leader named as the old leader of pg$n"
    [[ "$red" =~ "after the promotion: "[1-9] ]] && seen=yes
done
[ -n "$seen" ] || fail "the check never counted the acknowledgements of a leader named as the old one"
echo "failover: the two red checks failed as they must"
# || true: grep -c prints 0 and exits 1 when no node was rewound; a figure for the log, not a check.
rewinds=$(cat "$WORK"/pg*.patroni.log | grep -c "pg_rewind exit code=0" || true)
log "former leaders brought back by pg_rewind: $rewinds"
actors_working
echo "failover: $FAULTS passed, 0 failed"
