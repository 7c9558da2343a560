#!/usr/bin/env bash
# `make test`: every test, against real PostgreSQL servers. Installs what is missing first.
#   1. in-process #[pg_test]s (cargo pgrx test: its own temporary server)
#   2. pg_regress specs that read as documentation of the SQL contract
#   3. isolation specs: every interleaving of racing sessions, at each isolation level
#   4. the upgrade path (and the security tests of 0.3.0's holes, red on 0.3.0's build), the runbook's
#      and the operations page's psql snippets, the Prometheus exporter queries and alert rules,
#      failovers (by hand, and
#      five under Patroni + etcd), PgBouncer in transaction pooling,
#      a Citus cluster
#   5. real-connection tests: the contract under concurrency, hostile input, security, the role matrix,
#      the five-process incident race and a soak with injected faults
#   6. the Python client (clients/python: mypy --strict, its pytest suite), the client examples (Python,
#      Node.js, Rust), each racing three copies of itself, and the demo
set -euo pipefail
source "$(dirname "$0")/lib.sh"
begin
results=$(mktemp /tmp/orch_lease-test.XXXXXX)

log "1/6 in-process tests (cargo pgrx test)"
in_process_tests 2>&1 | tee -a "$results"

install_debug
# The servers run with RUST_BACKTRACE=1, as many do: no error may carry Rust internals (passthrough.rs).
export RUST_BACKTRACE=1
cluster_start -c max_prepared_transactions=10 # tests/regressions/prepared-slot.sh prepares one
log "2/6 pg_regress"
regress_suite 2>&1 | tee -a "$results"

log "3/6 isolation specs"
isolation_suite 2>&1 | tee -a "$results"
# Red-team regressions that need what a harness test cannot do: a prepared transaction left behind, a
# procedure that commits between calls.
regressions=0
for regression in tests/regressions/*.sh; do
    PSQL="$PG_BIN/psql" bash "$regression"
    regressions=$((regressions + 1))
done
echo "regressions: $regressions passed" | tee -a "$results"

log "4/6 the upgrade path (each release -> current), the runbook's and the operations page's psql snippets, Prometheus, failovers, PgBouncer, Citus"
scripts/upgrade-test.sh 2>&1 | tee -a "$results"
scripts/package-args-test.sh 2>&1 | tee -a "$results" # package.sh refuses a bad major before any rm -rf
scripts/security-0.3.0-test.sh 2>&1 | tee -a "$results" # the 0.3.0 holes' tests, red on 0.3.0's own build
scripts/runbook-test.sh 2>&1 | tee -a "$results"
scripts/cron-test.sh 2>&1 | tee -a "$results" # its own cluster, with pg_cron preloaded
scripts/prometheus-test.sh 2>&1 | tee -a "$results" # the real postgres_exporter and Prometheus: queries, alerts, dashboard
scripts/ha-test.sh 2>&1 | tee -a "$results"   # a primary and a synchronous standby, one failover
scripts/logical-move-test.sh 2>&1 | tee -a "$results" # a publisher and a subscriber: no token goes backwards
scripts/patroni-test.sh 2>&1 | tee -a "$results"   # etcd + three Patroni nodes, five failovers under load
scripts/pgbouncer-test.sh 2>&1 | tee -a "$results" # drivers and the actor pattern through a transaction pooler
scripts/citus-test.sh 2>&1 | tee -a "$results" # Citus: a coordinator and two workers (docs/scale-out.md)

log "5/6 real-connection tests, and the protocol model (exhaustive, then replayed against the server)"
cargo test --manifest-path harness/Cargo.toml 2>&1 | tee -a "$results"
scripts/model-test.sh 2>&1 | tee -a "$results"

log "6/6 the Python client, client examples and the demo"
scripts/python-client-test.sh 2>&1 | tee -a "$results" # its own cluster
scripts/python-dist.sh 2>&1 | tee -a "$results" # its sdist and wheel, twine check
scripts/examples.sh 2>&1 | tee -a "$results"
harness/target/debug/orch-race demo # asserts its own outcome

# One closing line for the whole run (every step above already stopped the script on a failure).
passed=$(count_passed "$results")
rm -f "$results"
echo "orch_lease: $passed passed, 0 failed"
