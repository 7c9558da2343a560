#!/usr/bin/env bash
# `make demo`: installs orch_lease into a throwaway PostgreSQL cluster and replays the incident: five
# actor processes (monitor, webhook, reconciler, job reaper, deploy finalizer) race to advance the same
# tasks and jobs (two task tables, the same ids) with the kill-switch off (the old behaviour), then on;
# then one actor crashes holding a lease and its restart recovers it while a listener receives the
# alert. See harness/src/demo.rs.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
begin

release_cluster
psql -X -q -c "CREATE EXTENSION orch_lease" -c "SELECT extversion AS orch_lease FROM pg_extension WHERE extname = 'orch_lease'"

harness/target/release/orch-race demo
