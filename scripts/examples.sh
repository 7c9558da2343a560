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
passed=0
for lang in python node rust; do
    SUITE="example $lang"
    new_database "example_$lang"
    dsn="postgresql://postgres@127.0.0.1:$PGPORT/example_$lang"
    q "CREATE EXTENSION orch_lease;
       CREATE TABLE example_task (id text PRIMARY KEY, stage text NOT NULL);
       CREATE TABLE example_effect (task_id text, actor text, at timestamptz DEFAULT clock_timestamp());
       INSERT INTO example_task SELECT 'task-' || i, 'queued' FROM generate_series(1, 12) i;
       SELECT orch_lease.register_task_table('example_task');
       -- the previous incarnation of $lang-worker-1 died holding task-1
       SELECT count(*) FROM orch_lease.transition_lease_recover('$lang-old-boot', '$lang-worker-1', 1);
       SELECT orch_lease.transition_lease_acquire('task-1', '$lang-worker-1', 1, '$lang-old-boot');" >/dev/null

    ${actor[$lang]} "$dsn" --listen 4 > "$work/$lang-listener.out" &
    listener=$!
    for _ in $(seq 50); do grep -q listening "$work/$lang-listener.out" 2>/dev/null && break; sleep 0.1; done
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
    grep -q "reclaimed" "$work/$lang-listener.out" || fail "alert not received"
    passed=$((passed + 1))
done
echo "examples: $passed passed, 0 failed"
