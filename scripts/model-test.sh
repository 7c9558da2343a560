#!/usr/bin/env bash
# The model of orch_lease (docs/model.md), against the cluster scripts/test.sh started:
#   1. the exhaustive checks (cargo test --release in model/): the 0.4.0 contract keeps every property
#      and reaches every outcome; each 0.3.0 rule it replaced is caught with a counterexample;
#   2. the conformance driver: random walks of the model executed against the real server (20,000 steps
#      over 4 seeds, in a database of its own), every answer, token, lease, stage and event compared;
#   3. the driver can fail: with a 0.3.0 rule in the model it must report a mismatch.
# Needs PGHOST, PGPORT, PGUSER and ORCH_LEASE_DSN (scripts/lib.sh cluster_start exports them). Seeds and
# steps can be changed with MODEL_SEEDS (comma list) and MODEL_STEPS (per seed).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${PGHOST:?} ${PGPORT:?} ${PGUSER:?} ${ORCH_LEASE_DSN:?}"
seeds=${MODEL_SEEDS:-1,2,3,4}
steps=${MODEL_STEPS:-5000}
database=orch_lease_model
manifest=model/Cargo.toml
passed=0
failed=0
log=$(mktemp /tmp/orch_lease-model.XXXXXX)
trap 'rm -f "$log"' EXIT

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

cargo build --quiet --release --manifest-path "$manifest" --bins

say "model 1/3: exhaustive checks"
# cargo's status is kept, and the exhaustive binary must print its own result line with every one of its
# tests passed: an OOM-killed or aborted run (no line, or a line from the lib and bin targets' empty
# harnesses only) fails here.
expected=$(grep -c '^#\[test\]' model/tests/exhaustive.rs)
status=0
cargo test --release --manifest-path "$manifest" -- --nocapture >"$log" 2>&1 || status=$?
# cargo's own summary lines indented, so that a caller counting `^test result:` lines does not count
# these twice: they are in this script's closing line.
sed 's/^test result:/  test result:/' "$log"
# The result line that follows `Running tests/exhaustive.rs` (cargo's own line for that binary).
exhaustive=$(awk '/Running tests\/exhaustive\.rs/ { on = 1; next } on && /^test result:/ { print; exit }' "$log")
if [ "$status" = 0 ] && [[ "$exhaustive" == "test result: ok. $expected passed; 0 failed; 0 ignored;"* ]]; then
    passed=$((passed + $(awk '/^test result:/ { n += $4 } END { print n + 0 }' "$log")))
else
    echo "model: the exhaustive checks did not pass: cargo test exited $status, tests/exhaustive.rs" \
         "answered \"${exhaustive:-no result line}\" (wanted ok. $expected passed; 0 failed)" >&2
    echo "model: $passed passed, $((failed + 1)) failed"
    exit 1
fi

say "model 2/3: conformance with the real server (database $database)"
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $database" -c "CREATE DATABASE $database"
dsn="$ORCH_LEASE_DSN dbname=$database"
IFS=, read -r -a seed_list <<<"$seeds"
for seed in "${seed_list[@]}"; do
    # Half the seeds with three actors on two tasks, half with two actors on three tasks.
    if (( seed % 2 )); then size=(--actors 3 --items 2); else size=(--actors 2 --items 3); fi
    if model/target/release/conform --dsn "$dsn" --steps "$steps" --seed "$seed" "${size[@]}"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
    fi
done

say "model 3/3: the driver reports a mismatch when the model follows a 0.3.0 rule"
if model/target/release/conform --dsn "$dsn" --steps 20000 --seed 1 \
    --rules lease-dropped-on-lock-timeout >"$log" 2>&1; then
    cat "$log"
    echo "conform: a model with the 0.3.0 rule (b) conformed: the driver cannot fail" >&2
    failed=$((failed + 1))
elif grep -q '^shortest failing walk found' "$log"; then
    sed -n '/^shortest failing walk found/,$p' "$log"
    passed=$((passed + 1))
else
    cat "$log"
    failed=$((failed + 1))
fi

echo "model: $passed passed, $failed failed"
[ "$failed" = 0 ]
