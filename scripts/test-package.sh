#!/usr/bin/env bash
# `make test-package` (CI runs it after make package): the .debs of target/packages, installed and tested
# the way a DBA gets them, with no cargo involved.
#   1. the release files: META.json against the PGXN Meta Spec, LICENSE, no build output in git, the toolchain
#      check of scripts/setup.sh (scripts/release-files-test.sh)
#   2. the 0.4.0 package, built once from commit 2e7cc04 (0.4.0 as released) and cached under target/
#   3. PostgreSQL 15: the source-built orch_lease files are removed from its directories; the 0.4.0 package is
#      installed with apt-get and a database uses it; the current package is installed over it with apt-get;
#      ALTER EXTENSION orch_lease UPDATE keeps that database's lease; the pg_regress and isolation suites run;
#      the package is purged and nothing of orch_lease is left; the current tree is installed again
#   4. PostgreSQL 14, 16, 17, 18: each package's files unpacked into the relocatable build, the pg_regress
#      suite and an update from 0.1.0 there; then the build's own orch_lease files put back
# Whatever installs or removes files in PostgreSQL's directories holds /tmp/orch_lease.lock (lock_take).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$ROOT_DIR/scripts/deb.sh"
cd "$ROOT_DIR"
SUITE=test-package
scripts/setup.sh --test
version=$(cargo_version Cargo.toml)
packages=target/packages
OLD_VERSION=0.4.0
OLD_COMMIT=2e7cc04 # 0.4.0 as released
old_dir=target/package-$OLD_VERSION
old_deb=$old_dir/postgresql-15-orch-lease_${OLD_VERSION}_amd64.deb
pkg15=postgresql-15-orch-lease
deb15=$packages/${pkg15}_${version}_amd64.deb
PG15_DIRS=(/usr/lib/postgresql/15/lib /usr/share/postgresql/15/extension)

[ -f "$deb15" ] || fail "no $deb15: run make package first"
(cd "$packages" && sha256sum --quiet -c SHA256SUMS) || fail "SHA256SUMS does not match the packages"
[ "$(grep -c '\.deb$' "$packages/SHA256SUMS")" = "$(ls "$packages"/*.deb | wc -l)" ] ||
    fail "SHA256SUMS does not list every package"

log "1/4 release files"
scripts/release-files-test.sh

log "2/4 the $OLD_VERSION package (commit $OLD_COMMIT)"
if [ -f "$old_deb" ]; then
    echo "test-package: $old_deb is cached"
else
    rm -rf "$old_dir"
    mkdir -p "$old_dir/src"
    git archive "$OLD_COMMIT" | tar -x -C "$old_dir/src"
    [ "$(cargo_version "$old_dir/src/Cargo.toml")" = "$OLD_VERSION" ] || fail "commit $OLD_COMMIT is not $OLD_VERSION"
    CARGO_TARGET_DIR=$ROOT_DIR/$old_dir/target deb_build "$ROOT_DIR/$old_dir/src" 15 "$old_dir" "$old_dir/build"
fi

# A cargo, rustc and cargo-pgrx that fail, first in PATH while the packages are tested: nothing is built there.
no_cargo=$ROOT_DIR/target/no-cargo
mkdir -p "$no_cargo"
for tool in cargo rustc cargo-pgrx; do
    printf '#!/bin/sh\necho "test-package: %s must not run while the packages are tested" >&2\nexit 97\n' "$tool" \
        > "$no_cargo/$tool"
    chmod +x "$no_cargo/$tool"
done
SOURCE_PATH=$PATH

# The orch_lease files in the directories DIR….
# || true: a directory that does not exist (a major not installed) has no orch_lease files.
orch_lease_files() { find "$@" -maxdepth 1 -name 'orch_lease*' 2>/dev/null || true; }
# Removes the orch_lease files of the directories DIR….
remove_orch_lease_files() {
    local file
    orch_lease_files "$@" | while read -r file; do privileged rm -f "$file"; done
}

apt_install() { privileged env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --allow-downgrades "$@" >/dev/null; }

# The end of the PostgreSQL 15 part, also when it fails: the package purged, the current tree installed again
# (the released install scripts beside it, as scripts/upgrade-test.sh leaves them), the lock given back.
pg15_locked=0
pg15_restore() {
    [ "$pg15_locked" = 1 ] || return 0
    export PATH=$SOURCE_PATH
    cluster_stop
    if dpkg-query -W -f='${Status}' "$pkg15" 2>/dev/null | grep -q installed; then
        privileged env DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq "$pkg15" >/dev/null
    fi
    log "installing orch_lease from the current tree into PostgreSQL 15 again"
    # shellcheck disable=SC2046 # no argument, or one
    cargo pgrx install --release --no-default-features --features pg15 --pg-config "$PG_CONFIG" \
        $(pgrx_install_args) >/dev/null
    privileged cp sql/orch_lease--*.sql "$("$PG_CONFIG" --sharedir)/extension/"
    pg15_locked=0
    lock_give
}
trap 'pg15_restore; cluster_stop' EXIT

log "3/4 PostgreSQL 15: the packages, installed with apt-get"
lock_take
pg15_locked=1
export PATH=$no_cargo:$PATH
if dpkg-query -W -f='${Status}' "$pkg15" 2>/dev/null | grep -q installed; then
    privileged env DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq "$pkg15" >/dev/null
fi
remove_orch_lease_files "${PG15_DIRS[@]}"
[ -z "$(orch_lease_files "${PG15_DIRS[@]}")" ] || fail "source-built orch_lease files are left in PostgreSQL 15's directories"

apt_install "$ROOT_DIR/$old_deb"
check_installed() {
    [ "$(dpkg-query -W -f='${Status} ${Version}' "$pkg15")" = "install ok installed $1" ] ||
        fail "$pkg15 $1 is not installed: $(dpkg-query -W -f='${Status} ${Version}' "$pkg15")"
}
check_installed "$OLD_VERSION"
cluster_start
SUITE="test-package: upgrade from the $OLD_VERSION package"
new_database orch_lease_from_package
check "CREATE EXTENSION orch_lease; SELECT extversion FROM pg_extension WHERE extname = 'orch_lease'" "$OLD_VERSION" \
      "CREATE EXTENSION with the $OLD_VERSION package"
q "CREATE TABLE tasks (id bigint PRIMARY KEY, stage text NOT NULL);
   INSERT INTO tasks VALUES (1, 'queued'), (2, 'queued');
   SELECT orch_lease.register_task_table('tasks', 'id', 'stage');" >/dev/null
q "SELECT count(*) FROM orch_lease.transition_lease_recover('boot-1', 'orchestrator', 4242)" >/dev/null
token=$(q "SELECT token FROM orch_lease.transition_lease_acquire('1', 'monitor', 4242, 'boot-1')")
[ -n "$token" ] || fail "the $OLD_VERSION library granted no token"

apt_install "$ROOT_DIR/$deb15"
check_installed "$version"
if stale=$(q "SELECT outcome FROM orch_lease.transition_lease_acquire('2', 'o', 1, 'b')" 2>&1) ||
   ! grep -q "Run ALTER EXTENSION orch_lease UPDATE" <<<"$stale"; then
    fail "before the update, a call with the new library answered: $stale"
fi
check "ALTER EXTENSION orch_lease UPDATE; SELECT extversion FROM pg_extension WHERE extname = 'orch_lease'" "$version" \
      "ALTER EXTENSION orch_lease UPDATE"
check "SELECT owner || ':' || token FROM orch_lease.transition_lease WHERE work_item = '1'" "monitor:$token" \
      "the $OLD_VERSION lease did not survive the update"
check "SELECT outcome FROM orch_lease.commit_stage_cas('1', $token, 'queued', 'merged')" applied \
      "the lease made with the $OLD_VERSION package does not commit after the update"
check "SELECT stage FROM tasks WHERE id = 1" merged "the commit did not write the stage"
for from in 0.1.0 0.2.0; do
    new_database "orch_lease_from_${from//./_}"
    check "CREATE EXTENSION orch_lease VERSION '$from'; ALTER EXTENSION orch_lease UPDATE;
           SELECT extversion FROM pg_extension WHERE extname = 'orch_lease'" "$version" "update from $from"
done
echo "test-package: $pkg15 $OLD_VERSION -> $version with apt-get, ALTER EXTENSION orch_lease UPDATE kept the lease; 0.1.0, 0.2.0 update too"

SUITE=test-package
results=$(mktemp /tmp/orch_lease-test-package.XXXXXX)
export PGDATABASE=postgres
regress_suite 2>&1 | tee -a "$results"
isolation_suite 2>&1 | tee -a "$results"
cluster_stop

privileged env DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq "$pkg15" >/dev/null
dpkg-query -W -f='${Status}' "$pkg15" 2>/dev/null | grep -q "install ok installed" && fail "$pkg15 is still installed"
left=$(orch_lease_files "${PG15_DIRS[@]}")
[ -z "$left" ] || fail "the purged package left files behind: $left"
[ ! -e "/usr/share/doc/$pkg15" ] || fail "the purged package left /usr/share/doc/$pkg15"
echo "test-package: $pkg15 purged, no orch_lease file left in ${PG15_DIRS[*]}"
pg15_restore

log "4/4 PostgreSQL $OTHER_MAJORS: each package unpacked into the relocatable build"
for major in $OTHER_MAJORS; do
    deb=$ROOT_DIR/$packages/postgresql-$major-orch-lease_${version}_amd64.deb
    [ -f "$deb" ] || fail "no $deb"
    (
        export PG_MAJOR=$major PG_CONFIG=$PG_BUILDS/$major/bin/pg_config
        source scripts/lib.sh
        SUITE="test-package $major"
        libdir=$("$PG_CONFIG" --pkglibdir) extdir=$("$PG_CONFIG" --sharedir)/extension
        unpacked=$(mktemp -d /tmp/orch_lease-deb.XXXXXX) kept=$(mktemp -d /tmp/orch_lease-kept.XXXXXX)
        put_back() {
            cluster_stop
            remove_orch_lease_files "$libdir" "$extdir"
            cp -p "$kept"/lib/* "$libdir/" 2>/dev/null || true
            cp -p "$kept"/ext/* "$extdir/" 2>/dev/null || true
            rm -rf "$unpacked" "$kept"
            lock_give
        }
        lock_take
        trap put_back EXIT
        mkdir -p "$kept/lib" "$kept/ext"
        orch_lease_files "$libdir" | xargs -r cp -p -t "$kept/lib"
        orch_lease_files "$extdir" | xargs -r cp -p -t "$kept/ext"
        remove_orch_lease_files "$libdir" "$extdir"
        dpkg-deb -x "$deb" "$unpacked"
        cp "$unpacked/usr/lib/postgresql/$major/lib/orch_lease.so" "$libdir/"
        cp "$unpacked/usr/share/postgresql/$major/extension/"* "$extdir/"
        export PATH=$no_cargo:$PATH
        cluster_start
        new_database orch_lease_update
        check "CREATE EXTENSION orch_lease VERSION '0.1.0'; ALTER EXTENSION orch_lease UPDATE;
               SELECT extversion FROM pg_extension WHERE extname = 'orch_lease'" "$version" "update from 0.1.0"
        export PGDATABASE=postgres
        regress_suite
    ) 2>&1 | tee -a "$results"
done

passed=$(count_passed "$results")
rm -f "$results"
echo "test-package: $passed pg_regress and isolation tests passed against the packages, 0 failed"
