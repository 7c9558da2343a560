#!/usr/bin/env bash
# The client examples, each run for real against the running throwaway cluster (from scripts/test.sh):
# in a database of its own, three copies of the example actor race over the same 12 tasks while its
# listener waits for alerts, and a lease left by a "previous incarnation" of the first copy waits to be
# recovered. Asserts: every task merged once, one effect per task, no lease left, the recover seen by
# the actor and announced to the listener.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT_DIR"
work=target/examples
mkdir -p "$work"

log "examples: installing their client libraries (the orch-lease package on psycopg 3, node-postgres, postgres crate)"
[ -x "$work/venv/bin/python" ] || python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q "./clients/python[binary]" # the example runs on the package
(cd examples/node && npm ci --no-audit --no-fund --silent)
cargo build --quiet --manifest-path examples/rust/Cargo.toml

declare -A actor=(
    [python]="$work/venv/bin/python examples/python/actor.py --dsn"
    [node]="node examples/node/actor.js --dsn"
    [rust]="examples/rust/target/debug/orch_lease_example --dsn"
)
# What a newcomer meets (node and rust; python's client has its own test): two copies with the default
# instance take two slots of this host; a task id missing from the table answers not_found; an effect
# that fails stops the actor; in every case no lease is left behind. Then a copy given a running copy's
# instance name is refused (55006), changing nothing.
first_contact() {
    psql -X -q -v ON_ERROR_STOP=1 -f examples/setup.sql >/dev/null
    q "CREATE FUNCTION effect_fails() RETURNS trigger LANGUAGE plpgsql AS
         \$\$ BEGIN RAISE EXCEPTION 'the merge failed' USING ERRCODE = 'P0001'; END \$\$;
       CREATE TRIGGER effect_fails BEFORE INSERT ON example_effect FOR EACH ROW
         WHEN (NEW.task_id = 'task-12') EXECUTE FUNCTION effect_fails();"
    local n pids=()
    for n in 1 2; do
        # shellcheck disable=SC2046 # one argument per task
        ${actor[$1]} "$dsn" task-99 $(seq -f 'task-%g' 1 11) > "$work/$1-default-$n.out" 2>&1 &
        pids+=($!)
    done
    for n in "${pids[@]}"; do wait "$n"; done
    cat "$work/$1"-default-*.out
    check "SELECT count(DISTINCT instance) FROM orch_lease.boot WHERE instance LIKE '$1-actor-%' AND superseded_at IS NULL" 2 \
          "two copies with the default instance took two slots"
    grep -q "not_found=1" "$work/$1"-default-*.out || fail "the missing task not answered not_found"
    check "SELECT count(*) || '/' || count(DISTINCT task_id) FROM example_effect" 11/11 "one effect per task"
    if ${actor[$1]} "$dsn" task-12 > "$work/$1-failing.out" 2>&1; then fail "a failing effect did not stop the actor"; fi
    grep -q "the merge failed" "$work/$1-failing.out" || fail "the effect's error not shown"
    check "SELECT count(*) FROM orch_lease.transition_lease" 0 "no lease left by not_found or a failing effect"

    # a process still connected under an instance name, and a second one started with that name
    q "DROP TRIGGER effect_fails ON example_effect; UPDATE example_task SET stage = 'queued'"
    psql -X -q -c "SELECT count(*) FROM orch_lease.transition_lease_recover('$1-held-boot', '$1-twin')" \
         -c "SELECT pg_sleep(3)" >/dev/null &
    local holder=$!
    sleep 1
    local status=0
    ${actor[$1]} "$dsn" --instance "$1-twin" task-1 > "$work/$1-twin.out" 2>&1 || status=$?
    [ "$status" = 2 ] || fail "a twin was not refused with exit status 2 (the examples' one code for a name in use): $status"
    grep -q "55006" "$work/$1-twin.out" || fail "the twin's refusal does not say 55006"
    wait "$holder"
    passed=$((passed + 1))
}

# A DSN without a user, run where $USER is unset (a container, cron, a systemd unit): node-postgres took
# its user from $USER only, and connected as "undefined". The Node example falls back to the OS user, as
# libpq does; here that user is a role of the cluster, and the boot it registers must be that role's.
without_user() {
    local os_user status=0
    os_user=$(id -un)
    q "DO \$\$ BEGIN CREATE ROLE \"$os_user\" LOGIN SUPERUSER; EXCEPTION WHEN duplicate_object THEN NULL; END \$\$" >/dev/null
    env -u USER -u PGUSER -u PGPASSWORD ${actor[node]} "postgresql://127.0.0.1:$PGPORT/example_node" \
        --instance node-no-user task-1 > "$work/node-no-user.out" 2>&1 || status=$?
    cat "$work/node-no-user.out"
    [ "$status" = 0 ] || fail "the Node example with \$USER unset and no user in its DSN failed: $status"
    check "SELECT string_agg(registered_by, ',') FROM orch_lease.boot WHERE instance = 'node-no-user'" "$os_user" \
          "with \$USER unset the Node example connected as the OS user"
    passed=$((passed + 1))
}

passed=0
for lang in python node rust; do
    SUITE="example $lang"
    new_database "example_$lang"
    dsn="postgresql://postgres@127.0.0.1:$PGPORT/example_$lang"
    # the setup the README gives, exactly
    psql -X -q -v ON_ERROR_STOP=1 -f examples/setup.sql >/dev/null
    q "-- the previous incarnation of $lang-worker-1 died holding task-1
       SELECT count(*) FROM orch_lease.transition_lease_recover('$lang-old-boot', '$lang-worker-1', 1);
       SELECT orch_lease.transition_lease_acquire('task-1', '$lang-worker-1', 1, '$lang-old-boot');" >/dev/null

    ${actor[$lang]} "$dsn" --listen 4 > "$work/$lang-listener.out" &
    listener=$!
    for _ in $(seq 50); do grep -q listening "$work/$lang-listener.out" 2>/dev/null && break; sleep 0.1; done
    # Any login may NOTIFY the channel: a payload that is not JSON must not end the listener, which must
    # still print the reclaim announced after it.
    q "NOTIFY orch_lease, 'not json'; NOTIFY orch_lease, '{\"version\": 2}'" >/dev/null
    pids=()
    for n in 1 2 3; do
        # shellcheck disable=SC2046 # one argument per task
        ${actor[$lang]} "$dsn" --instance "$lang-worker-$n" $(seq -f 'task-%g' 1 12) > "$work/$lang-worker-$n.out" &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid"; done
    wait "$listener"

    cat "$work/$lang"-*.out
    check "SELECT count(*) FROM example_task WHERE stage <> 'merged'" 0 "every task merged"
    check "SELECT count(*) || '/' || count(DISTINCT task_id) FROM example_effect" 12/12 "one effect per task"
    check "SELECT count(*) FROM orch_lease.transition_lease" 0 "no lease left"
    check "SELECT count(*) FROM orch_lease.lease_event WHERE event = 'reclaimed' AND work_item = 'task-1'" 1 \
          "the dead incarnation's lease reclaimed"
    grep -q "recovered lease on task-1" "$work/$lang-worker-1.out" || fail "recover not reported"
    grep -q "reclaimed" "$work/$lang-listener.out" || fail "alert not received (after a payload that is not JSON)"
    passed=$((passed + 1))
    [ "$lang" = python ] || first_contact "$lang"
    [ "$lang" != node ] || without_user
done
echo "examples: $passed passed, 0 failed"
