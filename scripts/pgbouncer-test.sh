#!/usr/bin/env bash
# orch_lease behind PgBouncer 1.18 (Debian's, installed when missing) in transaction pooling mode, with
# fewer server connections (2) than actors (8), on a throwaway cluster:
#   1. psycopg 3 as an application uses it by default (prepare_threshold 5): its named prepared statements
#      break once a transaction lands on another server connection — the test asserts the error;
#   2. psycopg 3 with prepare_threshold=None (unnamed statements only): the whole actor pattern — recover,
#      acquire, read, commit_stage_cas, release, an operator's force_release — works, and every applied
#      commit moved its task by exactly one stage (tests/pgbouncer/cycle.py);
#   3. the Rust example (the postgres crate: every query a named statement, prepared in one round trip
#      and bound in the next): four copies through the pooler, one at least must fail on it — asserted;
#   4. the Node.js example (node-postgres: unnamed statements): four copies through the pooler, every
#      task merged once, one effect each, no lease left;
#   5. session-bound leases (transition_lease_acquire_session) through the pooler: what goes wrong, shown;
#   6. an actor restarted behind the pooler: recover refuses it (55006: the session that registered its
#      previous boot is the pooler's, still connected), transition_lease_takeover gets in;
#   7. session-bound leases through PgBouncer in *session* pooling: no better (issue #34) — the client
#      disconnects, its server connection goes back to the pool with the lease, the next client gets `held`
#      and the reaper leaves it (its session is alive); a direct connection's lease goes when it does.
# Loads the orch_lease installed in the system PostgreSQL: holds /tmp/orch_lease.lock.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT_DIR"
SUITE=pgbouncer
lock_take
trap cluster_stop EXIT
python=$(python_client_venv)/python # psycopg 3, pinned in clients/python/requirements-dev.txt

cluster_start
q "CREATE EXTENSION orch_lease"
pgbouncer_start transaction 2
pooled="host=127.0.0.1 port=$PGBOUNCER_PORT user=postgres dbname=postgres"
passed=0

log "1. psycopg 3, default prepare_threshold, through the pooler"
status=0
answer=$("$python" tests/pgbouncer/cycle.py --dsn "$pooled" --prepare-threshold default) || status=$?
echo "$answer"
[ "$status" = 3 ] || fail "psycopg's named statements through a transaction pooler did not fail (exit $status)"
[[ "$answer" =~ ^error\ (26000|42P05) ]] || fail "not the prepared-statement error: $answer"
passed=$((passed + 1))

log "2. psycopg 3, prepare_threshold=None, through the pooler: the whole actor pattern"
"$python" tests/pgbouncer/cycle.py --dsn "$pooled" --prepare-threshold none ||
    fail "the actor pattern through the pooler (above)"
passed=$((passed + 1))

# examples_through_pooler LANG COMMAND…: four copies of a client example racing over 40 tasks of a fresh
# database example_LANG (PGDATABASE from then on), through the pooler; sets FAILED to how many copies
# failed; their output is in $CLUSTER_DIR.
examples_through_pooler() {
    local lang=$1 n pid pids=()
    FAILED=0
    shift
    new_database "example_$lang"
    q "CREATE EXTENSION orch_lease;
       CREATE TABLE example_task (id text PRIMARY KEY, stage text NOT NULL);
       CREATE TABLE example_effect (task_id text, actor text, at timestamptz DEFAULT clock_timestamp());
       INSERT INTO example_task SELECT 'task-' || i, 'queued' FROM generate_series(1, 40) i;
       SELECT orch_lease.register_task_table('example_task');" >/dev/null
    for n in 1 2 3 4; do
        # shellcheck disable=SC2046 # one argument per task
        "$@" --dsn "postgresql://postgres@127.0.0.1:$PGBOUNCER_PORT/example_$lang" --instance "$lang-$n" \
            $(seq -f 'task-%g' 1 40) >"$CLUSTER_DIR/$lang-$n.out" 2>&1 &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid" || FAILED=$((FAILED + 1)); done
    cat "$CLUSTER_DIR/$lang"-*.out
}

log "3. the Rust example (postgres crate: named statements) through the pooler"
cargo build --quiet --manifest-path examples/rust/Cargo.toml
examples_through_pooler rust examples/rust/target/debug/orch_lease_example
[ "$FAILED" -gt 0 ] && grep -qE "ERROR (26000|42P05): prepared statement" "$CLUSTER_DIR"/rust-*.out ||
    fail "the postgres crate's named statements through a transaction pooler did not fail ($FAILED copies failed)"
passed=$((passed + 1))

log "4. the Node.js example (node-postgres: unnamed statements) through the pooler"
(cd examples/node && npm ci --no-audit --no-fund --silent)
examples_through_pooler node node examples/node/actor.js
[ "$FAILED" = 0 ] || fail "$FAILED copies of the Node.js example failed through the pooler"
check "SELECT count(*) FROM example_task WHERE stage <> 'merged'" 0 "every task merged through the pooler"
check "SELECT count(*) || '/' || count(DISTINCT task_id) FROM example_effect" 40/40 "one effect per task through the pooler"
check "SELECT count(*) FROM orch_lease.transition_lease" 0 "no lease left through the pooler"
export PGDATABASE=postgres
passed=$((passed + 1))

log "5. a session-bound lease through the pooler"
q "INSERT INTO pool_task VALUES ('session-item', '0'), ('session-pooled', '0'), ('session-direct', '0')"  # tasks, not not_found
through_pooler() { psql -X -q -t -A -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PGBOUNCER_PORT" -c "$1"; }
# actor-a takes a session lease and disconnects (its process is gone); its "session" is PgBouncer's server
# connection, which stays: the lease stays live, and actor-b, through the same pooler, finds it held by a
# holder that no longer exists. Nothing on the server can tell a pooled session from a dedicated one.
a=$(through_pooler "SELECT pg_backend_pid() || ' ' || acquired FROM orch_lease.transition_lease_acquire_session('session-item', 'actor-a')")
b=$(through_pooler "SELECT pg_backend_pid() || ' ' || outcome || ' ' || holder FROM orch_lease.transition_lease_acquire_session('session-item', 'actor-b')")
echo "actor-a (backend, acquired): $a; then actor-b (backend, outcome, holder): $b"
[ "${a#* }" = true ] && [ "${b#* }" = "held actor-a" ] || fail "actor-a's session lease did not outlive actor-a"
check "SELECT orch_lease.session_alive(owner_boot_id) FROM orch_lease.transition_lease WHERE work_item = 'session-item'" t \
    "the pooler's server connection keeps actor-a's session alive"
passed=$((passed + 1))
log "6. an actor restarted behind the pooler: recover refused (55006), takeover gets in"
# Its first incarnation registers through the pooler and exits; the server connection that registered it
# is the pooler's and stays. The restart comes in through another server connection (postgres_again):
# recover sees the registering session still connected and refuses, as documented; takeover supersedes.
through_pooler "SELECT count(*) FROM orch_lease.transition_lease_recover('restarted-boot-1', 'restarted', 1)" >/dev/null
status=0
answer=$(psql -X -q -t -A -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -h 127.0.0.1 -p "$PGBOUNCER_PORT" -d postgres_again \
    -c "SELECT count(*) FROM orch_lease.transition_lease_recover('restarted-boot-2', 'restarted', 2)" 2>&1) || status=$?
echo "$answer" | head -n 1
[ "$status" != 0 ] && [[ "$answer" == *"55006"* ]] || fail "a restart behind the pooler was not refused with 55006: $answer"
psql -X -q -t -A -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PGBOUNCER_PORT" -d postgres_again \
    -c "SELECT count(*) FROM orch_lease.transition_lease_takeover('restarted-boot-2', 'restarted', 2)" >/dev/null
check "SELECT boot_id FROM orch_lease.boot WHERE instance = 'restarted' AND superseded_at IS NULL" restarted-boot-2 \
    "takeover made the restart the live boot"
passed=$((passed + 1))

log "7. a session-bound lease through PgBouncer in session pooling"
pid=$(cat "$CLUSTER_DIR/pgbouncer.pid")
kill "$pid"
while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
pgbouncer_start session 1
a=$(through_pooler "SELECT pg_backend_pid() || ' ' || acquired FROM orch_lease.transition_lease_acquire_session('session-pooled', 'actor-a')")
b=$(through_pooler "SELECT pg_backend_pid() || ' ' || outcome || ' ' || holder FROM orch_lease.transition_lease_acquire_session('session-pooled', 'actor-b')")
echo "session pooling: actor-a (backend, acquired): $a; then actor-b (backend, outcome, holder): $b"
[ "${a#* }" = true ] && [ "${b#* }" = "held actor-a" ] ||
    fail "actor-a's session lease did not outlive actor-a behind session pooling"
# (The reaper may take step 5's lease here: the transaction pooler that kept its session is gone.)
check "SELECT count(*) FROM orch_lease.transition_lease_reap(3600) WHERE work_item = 'session-pooled'" 0 \
      "the reaper left the pooled session's lease"
check "SELECT count(*) FROM orch_lease.transition_lease WHERE work_item = 'session-pooled'" 1 \
      "actor-a's lease is still there after the reaper ran"
# What works: a connection of its own. Its lease is stale once it disconnects, and the reaper takes it.
q "SELECT acquired FROM orch_lease.transition_lease_acquire_session('session-direct', 'actor-c')" >/dev/null
await_answer "SELECT liveness FROM orch_lease.transition_lease_status WHERE work_item = 'session-direct'" stale 50 0.1 >/dev/null
check "SELECT string_agg(work_item || ':' || kind, ' ') FROM orch_lease.transition_lease_reap(3600)" session-direct:stale \
      "the reaper takes a direct session's lease once it is gone"
passed=$((passed + 1))
echo "pgbouncer: $passed passed, 0 failed"
