#!/usr/bin/env bash
# `make demo`: installs orch_lease into a throwaway PostgreSQL cluster and replays the incident: five
# actor processes (monitor, webhook, reconciler, job reaper, deploy finalizer) race to advance the same
# tasks, first with a bare UPDATE (the old behaviour), then through orch_lease.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT_DIR"
scripts/setup.sh
trap cluster_stop EXIT

log "building and installing orch_lease"
cargo pgrx install --release --pg-config "$PG_CONFIG" $(pgrx_install_args) >/dev/null
cargo build --quiet --release --manifest-path harness/Cargo.toml
cluster_start
psql -X -q -c "CREATE EXTENSION orch_lease" -c "SELECT extversion AS orch_lease FROM pg_extension WHERE extname = 'orch_lease'"

race=harness/target/release/orch-race
log "round 1: a bare UPDATE tasks SET stage = \$new WHERE id = \$id"
$race race --mode naive --items 20 --effect-ms 20 --expect duplicates
log "round 2: transition_lease_acquire + commit_stage_cas"
$race race --mode lease --items 20 --effect-ms 20 --expect exactly-once
echo
psql -X -c "SELECT task_id, string_agg(actor || ' ' || effect, ', ' ORDER BY started_at) AS effects
              FROM demo_effect GROUP BY 1 ORDER BY length(task_id), task_id LIMIT 5"
