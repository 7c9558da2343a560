#!/usr/bin/env bash
# Failover, for real: a primary and a streaming standby on this machine (pg_basebackup, synchronous
# replication), actors acquiring and committing against the primary, the primary stopped hard mid-run,
# the standby promoted, the actors reconnecting and calling recover (harness/src/failover.rs checks what
# survived). `scripts/ha-test.sh` is the test (make test runs it; make test-ha installs orch_lease first),
# three failovers:
#   sync           a synchronous standby: nothing acknowledged may be lost
#   sync, frozen   the same, with the standby's WAL receiver frozen (SIGSTOP) for the last second before
#                  the crash and killed (SIGKILL: what it never wrote is gone) before the promotion:
#                  commits wait for the standby, so still nothing acknowledged may be lost
#   async, frozen  the same fault on an asynchronous standby: the checker must report lost grants and
#                  lost commits (the red run: it proves the checker sees a loss when there is one)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT_DIR"
SUITE=failover
cargo build --quiet --manifest-path harness/Cargo.toml
ORCH_RACE=$ROOT_DIR/harness/target/debug/orch-race
trap cluster_stop EXIT

# run_failover sync|async [freeze]: one primary + standby pair, one failover, its report.
run_failover() {
    local replication=$1 freeze=${2:-} standby_names=""
    [ "$replication" = sync ] && standby_names=standby1
    cluster_stop
    cluster_start -c wal_level=replica -c max_wal_senders=4 # the primary, in $CLUSTER_DIR/data
    local primary=$PGPORT standby standby_data=$CLUSTER_DIR/standby
    standby=$(free_port)
    q "CREATE EXTENSION orch_lease"
    as_pg "$PG_BIN/pg_basebackup" -h "$CLUSTER_DIR" -p "$primary" -U postgres -D "$standby_data" -X stream -R
    echo "primary_conninfo = 'host=$CLUSTER_DIR port=$primary user=postgres application_name=standby1'" |
        as_pg tee -a "$standby_data/postgresql.auto.conf" >/dev/null
    # Retry the WAL source every 100 ms, not 5 s: a promotion right after the crash is not held up.
    server_start "$standby_data" "$standby" "${SERVER_SETTINGS[@]}" -c wal_retrieve_retry_interval=100ms
    # Synchronous from now on: a commit returns only once the standby has flushed it.
    q "ALTER SYSTEM SET synchronous_standby_names = '$standby_names'"
    q "SELECT pg_reload_conf()" >/dev/null
    local state
    state=$(await_answer "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby1'" \
                         "$replication" 100 0.1)
    [ "$state" = "$replication" ] || fail "the standby never became $replication ($state)"
    log "primary :$primary, $replication standby :$standby"

    ORCH_LEASE_CRASH_CMD="$(pg_ctl_command -D "$CLUSTER_DIR/data" -m immediate stop) >/dev/null"
    ORCH_LEASE_PROMOTE_CMD="$(pg_ctl_command -D "$standby_data" -w promote) >/dev/null"
    export ORCH_LEASE_CRASH_CMD ORCH_LEASE_PROMOTE_CMD
    unset ORCH_LEASE_FREEZE_CMD ORCH_LEASE_CUT_CMD
    local expect=holds
    if [ -n "$freeze" ]; then
        # This standby's WAL receiver: the child of its postmaster (the first line of postmaster.pid).
        # Killed while frozen, it writes nothing more of what reached its socket; its postmaster restarts
        # recovery from what is on disk, and the promotion follows once the standby answers again.
        local receiver="\$(pgrep -P \$(head -n 1 $standby_data/postmaster.pid) -f walreceiver)"
        export ORCH_LEASE_FREEZE_CMD="kill -STOP $receiver"
        export ORCH_LEASE_CUT_CMD="kill -KILL $receiver && sleep 0.5 && for _ in \$(seq 300); do $PG_BIN/pg_isready -q -h $CLUSTER_DIR -p $standby && break; sleep 0.1; done"
        [ "$replication" = async ] && expect=lost-work
    fi
    rm -rf target/failover
    "$ORCH_RACE" failover --expect "$expect" --dir target/failover --after-s 6 --primary-dsn "$ORCH_LEASE_DSN" \
        --dsn "host=$CLUSTER_DIR,$CLUSTER_DIR port=$primary,$standby user=postgres dbname=postgres target_session_attrs=read-write connect_timeout=2"
}

# Each run_failover stops the script on a failure: the count is of those that ran to the end.
passed=0
for run in "sync" "sync freeze" "async freeze"; do
    # shellcheck disable=SC2086 # two words: replication and freeze
    run_failover $run
    passed=$((passed + 1))
done
echo "failover: $passed passed, 0 failed"
