#!/usr/bin/env bash
# `make soak`: the long soak, whose figures go in docs/reliability.md. Sizes can be overridden:
#   SOAK_ACTORS=8 SOAK_ITEMS=5000 SOAK_RESTARTS=5 make soak
set -euo pipefail
source "$(dirname "$0")/lib.sh"
begin

release_cluster
race=harness/target/release/orch-race
log "lease mode, with faults"
$race soak --mode lease --actors "${SOAK_ACTORS:-8}" --items "${SOAK_ITEMS:-5000}" --effect-ms 10 \
    --restarts "${SOAK_RESTARTS:-5}" --budget-s 3000 --expect holds
log "naive mode (bare UPDATE), no faults: the same checks must find violations"
$race soak --mode naive --actors "${SOAK_ACTORS:-8}" --items 1000 --faults off --max-attempts 600 \
    --expect violations
