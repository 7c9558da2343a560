#!/usr/bin/env bash
# Installs what building and installing orch_lease needs, and only what is missing: Debian's PostgreSQL 15
# with server headers, clang for bindgen, a pinned cargo-pgrx, and `cargo pgrx init` against the system
# PostgreSQL. `scripts/setup.sh --test` also installs what the tests and the demo need (pg_cron, Node.js,
# Python and its venv, sudo). It does not install Rust: it stops first, saying so, when cargo or rustc is missing or older
# than $RUST_MIN. Safe to run any number of times.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
SUITE=setup

# Rust first: without it nothing else is worth installing, and a too-old rustc fails later with a compiler
# error that does not say why.
rust_help="Install Rust with rustup (https://rustup.rs: curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh),
then open a new shell or run: source \"\$HOME/.cargo/env\". Debian 12's own rustc (1.63, apt package rustc) is too
old for pgrx $PGRX_VERSION."
for tool in cargo rustc; do
    command -v "$tool" >/dev/null ||
        fail "$tool is not on PATH: orch_lease needs Rust >= $RUST_MIN (cargo and rustc).
$rust_help"
done
for tool in cargo rustc; do
    version=$("$tool" --version | awk '{ print $2 }')
    version_at_least "$version" "$RUST_MIN" ||
        fail "$tool $version ($(command -v "$tool")) is too old: orch_lease needs Rust >= $RUST_MIN.
$rust_help Or, with rustup: rustup update stable"
done

packages=("postgresql-$PG_MAJOR" "postgresql-server-dev-$PG_MAJOR" libclang-dev clang pkg-config
          libssl-dev build-essential) # libssl-dev and pkg-config: cargo install cargo-pgrx
if [ "${1:-}" = --test ]; then
    packages+=("postgresql-$PG_MAJOR-cron" python3 python3-venv) # venv: the Python client, query-exporter
    is_root && packages+=(sudo) # cargo pgrx test --runas uses sudo
    command -v npm >/dev/null || packages+=(nodejs npm) # the Node.js example
fi
apt_ensure "${packages[@]}"

if ! cargo pgrx --version 2>/dev/null | grep -qF "$PGRX_VERSION"; then
    log "cargo: installing cargo-pgrx $PGRX_VERSION (a few minutes)"
    cargo install --locked cargo-pgrx --version "$PGRX_VERSION"
fi

if ! grep -qs "^pg$PG_MAJOR = \"$PG_CONFIG\"" "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
    log "pgrx: init against $PG_CONFIG"
    cargo pgrx init "--pg$PG_MAJOR" "$PG_CONFIG"
fi
