#!/usr/bin/env bash
# `make test`: every test, against real PostgreSQL servers. Installs what is missing first.
#   1. in-process #[pg_test]s (cargo pgrx test: its own temporary server)
#   2. pg_regress specs that read as documentation of the SQL contract
#   3. isolation specs: every interleaving of racing sessions, at each isolation level
#   4. real-connection tests: the contract under concurrency, hostile input, the five-process incident
#      race and a soak with injected faults
#   5. the client examples (Python, Node.js, Rust), each racing three copies of itself, and the demo
set -euo pipefail
source "$(dirname "$0")/lib.sh"
begin
results=$(mktemp /tmp/orch_lease-test.XXXXXX)

log "1/5 in-process tests (cargo pgrx test)"
# One at a time: the tests share one database, and a parallel test holding a lease would be a
# real contender (busy) for another.
RUST_TEST_THREADS=1 cargo pgrx test pg$PG_MAJOR $(pgrx_test_args) 2>&1 | tee -a "$results"

log "installing orch_lease into PostgreSQL $PG_MAJOR"
cargo pgrx install --pg-config "$PG_CONFIG" $(pgrx_install_args) >/dev/null

cluster_start
log "2/5 pg_regress"
suite_run regress/pg_regress tests/pg_regress sql 2>&1 | tee -a "$results"

log "3/5 isolation specs"
suite_run isolation/pg_isolation_regress tests/isolation specs 2>&1 | tee -a "$results"

log "3/5 the upgrade path (each release -> current), the runbook's and the operations page's psql snippets"
scripts/upgrade-test.sh 2>&1 | tee -a "$results"
scripts/runbook-test.sh 2>&1 | tee -a "$results"
scripts/cron-test.sh 2>&1 | tee -a "$results" # its own cluster, with pg_cron preloaded
scripts/ha-test.sh 2>&1 | tee -a "$results"   # a primary and a synchronous standby, one failover

log "4/5 real-connection tests"
cargo test --manifest-path harness/Cargo.toml 2>&1 | tee -a "$results"

log "5/5 client examples and the demo"
scripts/examples.sh 2>&1 | tee -a "$results"
harness/target/debug/orch-race demo # asserts its own outcome

# One closing line for the whole run (every step above already stopped the script on a failure).
passed=$(awk '/^test result: ok\./ { n += $4 } /^#? *All [0-9]+ tests passed/ { n += $(NF-2) } /^(examples|upgrade|runbook|cron|failover): [0-9]+ passed/ { n += $2 } END { print n + 0 }' "$results")
rm -f "$results"
echo "orch_lease: $passed passed, 0 failed"
