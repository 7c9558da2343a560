#!/usr/bin/env bash
# Failover, for real: a primary and a streaming standby on this machine (pg_basebackup, synchronous
# replication), actors acquiring and committing against the primary, the primary stopped hard mid-run,
# the standby promoted, the actors reconnecting and calling recover (harness/src/failover.rs checks what
# survived). `scripts/ha-test.sh` is the test (make test runs it); `scripts/ha-test.sh measure` runs the
# asynchronous and the synchronous standby once each with the standby's WAL receiver frozen for the last
# second before the crash — a lagging standby — and prints what each lost (docs/ha.md).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT_DIR"
cargo build --quiet --manifest-path harness/Cargo.toml
ORCH_RACE=$ROOT_DIR/harness/target/debug/orch-race

HA_DIR=""
stop_all() {
    [ -n "$HA_DIR" ] && [ -d "$HA_DIR" ] || return 0
    for node in primary standby; do
        as_pg "$PG_BIN/pg_ctl" -D "$HA_DIR/$node" -m immediate stop >/dev/null 2>&1 || true
    done
    rm -rf "$HA_DIR"
}
trap stop_all EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# run_failover sync|async [freeze]: one primary + standby pair, one failover, its report.
run_failover() {
    local replication=$1 freeze=${2:-} standby_names=""
    [ "$replication" = sync ] && standby_names=standby1
    stop_all
    HA_DIR=$(mktemp -d /tmp/orch_lease-ha.XXXXXX)
    chmod 755 "$HA_DIR"
    is_root && chown postgres:postgres "$HA_DIR"
    local primary=$(free_port) standby=$(free_port)
    as_pg "$PG_BIN/initdb" -D "$HA_DIR/primary" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
    as_pg "$PG_BIN/pg_ctl" -D "$HA_DIR/primary" -l "$HA_DIR/primary.log" -w start -o \
        "-p $primary -k $HA_DIR -c listen_addresses= -c wal_level=replica -c max_wal_senders=4" >/dev/null
    psql -X -q -h "$HA_DIR" -p "$primary" -U postgres -c "CREATE EXTENSION orch_lease"
    as_pg "$PG_BIN/pg_basebackup" -h "$HA_DIR" -p "$primary" -U postgres -D "$HA_DIR/standby" -X stream -R
    echo "primary_conninfo = 'host=$HA_DIR port=$primary user=postgres application_name=standby1'" |
        as_pg tee -a "$HA_DIR/standby/postgresql.auto.conf" >/dev/null
    as_pg "$PG_BIN/pg_ctl" -D "$HA_DIR/standby" -l "$HA_DIR/standby.log" -w start -o "-p $standby -k $HA_DIR -c listen_addresses=" >/dev/null
    # Synchronous from now on: a commit returns only once the standby has flushed it.
    psql -X -q -h "$HA_DIR" -p "$primary" -U postgres \
        -c "ALTER SYSTEM SET synchronous_standby_names = '$standby_names'" -c "SELECT pg_reload_conf()" >/dev/null
    local state=""
    for _ in $(seq 1 100); do
        state=$(psql -X -A -t -h "$HA_DIR" -p "$primary" -U postgres -c "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby1'")
        [ "$state" = "$replication" ] && break
        sleep 0.1
    done
    [ "$state" = "$replication" ] || { echo "failover: the standby never became $replication ($state)"; exit 1; }
    log "primary :$primary, $replication standby :$standby"

    local pg_ctl="$PG_BIN/pg_ctl"
    is_root && pg_ctl="runuser -u postgres -- $pg_ctl"
    export ORCH_LEASE_CRASH_CMD="$pg_ctl -D $HA_DIR/primary -m immediate stop >/dev/null"
    export ORCH_LEASE_PROMOTE_CMD="$pg_ctl -D $HA_DIR/standby -w promote >/dev/null"
    unset ORCH_LEASE_FREEZE_CMD ORCH_LEASE_THAW_CMD
    local expect=holds
    if [ -n "$freeze" ]; then
        local receiver="\$(psql -X -A -t -h $HA_DIR -p $standby -U postgres -c 'SELECT pid FROM pg_stat_wal_receiver')"
        export ORCH_LEASE_FREEZE_CMD="kill -STOP $receiver" ORCH_LEASE_THAW_CMD="kill -CONT \$(pgrep -f 'walreceiver')"
        expect=any
    fi
    rm -rf target/failover
    "$ORCH_RACE" failover --expect "$expect" --dir target/failover \
        --primary-dsn "host=$HA_DIR port=$primary user=postgres dbname=postgres" \
        --dsn "host=$HA_DIR,$HA_DIR port=$primary,$standby user=postgres dbname=postgres target_session_attrs=read-write connect_timeout=2"
}

if [ "${1:-test}" = measure ]; then
    run_failover async freeze
    run_failover sync freeze
else
    run_failover sync
    echo "failover: 1 passed, 0 failed"
fi
