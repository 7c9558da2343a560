# Shared by the scripts: toolchain versions, running as the postgres user when we are root, and a
# throwaway PostgreSQL cluster with its own data directory and port. Source it; do not run it.
# PostgreSQL 15 is Debian's and the default; scripts/matrix.sh points these at other majors.
PG_MAJOR=${PG_MAJOR:-15}
PGRX_VERSION=0.18.1
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/$PG_MAJOR/bin/pg_config}
PG_BIN=$(dirname "$PG_CONFIG")
ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

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
    cd "$ROOT_DIR"
    scripts/setup.sh
    trap cluster_stop EXIT
}

# Builds orch_lease with fat LTO and installs it into the system PostgreSQL.
install_release() {
    log "building and installing orch_lease (release)"
    cargo pgrx install --release --pg-config "$PG_CONFIG" $(pgrx_install_args) >/dev/null
}

# Release builds of orch_lease (installed) and of the harness (orch-race), and a throwaway cluster.
release_cluster() {
    install_release
    cargo build --quiet --release --manifest-path harness/Cargo.toml
    cluster_start "$@"
}

# Runs a pg_regress-style suite against the running cluster: suite_run DRIVER INPUTDIR KIND, where DRIVER is
# regress/pg_regress or isolation/pg_isolation_regress and the specs are every file of INPUTDIR/KIND.
suite_run() {
    local driver=$1 inputdir=$2 kind=$3 name
    name=$(basename "$inputdir")
    "$PG_BIN/createdb" "orch_lease_$name"
    mkdir -p "target/$name"
    local specs
    specs=$(cd "$inputdir/$kind" && ls | sed 's|\.[a-z]*$||')
    # shellcheck disable=SC2086 # one argument per spec
    "$(dirname "$("$PG_CONFIG" --pgxs)")/../test/$driver" \
        --use-existing --bindir="$PG_BIN" --host="$PGHOST" --port="$PGPORT" --user=postgres --dbname="orch_lease_$name" \
        --inputdir="$inputdir" --outputdir="target/$name" $specs
}

CLUSTER_DIR=""
# Starts a throwaway cluster in a fresh directory on a free port; exports PGHOST, PGPORT, PGUSER,
# PGDATABASE and ORCH_LEASE_DSN. Extra arguments are `-c name=value` server settings.
cluster_start() {
    CLUSTER_DIR=$(mktemp -d /tmp/orch_lease-cluster.XXXXXX)
    chmod 755 "$CLUSTER_DIR"
    is_root && chown postgres:postgres "$CLUSTER_DIR"
    local port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    as_pg "$PG_BIN/initdb" -D "$CLUSTER_DIR/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
    as_pg "$PG_BIN/pg_ctl" -D "$CLUSTER_DIR/data" -l "$CLUSTER_DIR/server.log" -w \
        -o "-p $port -k $CLUSTER_DIR -c listen_addresses=127.0.0.1 -c max_connections=200 $*" start >/dev/null
    export PGHOST=$CLUSTER_DIR PGPORT=$port PGUSER=postgres PGDATABASE=postgres
    export ORCH_LEASE_DSN="host=$CLUSTER_DIR port=$port user=postgres dbname=postgres"
    # How the soak crashes and restarts the server: an immediate stop, then a start with the same options.
    local pg_ctl="$PG_BIN/pg_ctl -D $CLUSTER_DIR/data -l $CLUSTER_DIR/server.log -m immediate -w restart"
    if is_root; then pg_ctl="runuser -u postgres -- $pg_ctl"; fi
    export ORCH_LEASE_RESTART_CMD="$pg_ctl >/dev/null"
    log "throwaway PostgreSQL $PG_MAJOR on port $port, data in $CLUSTER_DIR"
}

# Stops the cluster (immediately: it is thrown away) and removes its directory. Safe to call twice.
cluster_stop() {
    [ -n "$CLUSTER_DIR" ] && [ -d "$CLUSTER_DIR" ] || return 0
    as_pg "$PG_BIN/pg_ctl" -D "$CLUSTER_DIR/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$CLUSTER_DIR"
    CLUSTER_DIR=""
}
