#!/usr/bin/env bash
# Installs what building and testing orch_lease needs, and only what is missing: Debian's PostgreSQL 15
# with server headers, clang for bindgen, a pinned cargo-pgrx, and `cargo pgrx init` against the
# system PostgreSQL. Safe to run any number of times.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

packages=("postgresql-$PG_MAJOR" "postgresql-server-dev-$PG_MAJOR" "postgresql-$PG_MAJOR-cron" libclang-dev clang
          pkg-config libssl-dev build-essential python3)
is_root && packages+=(sudo) # cargo pgrx test --runas uses sudo
command -v npm >/dev/null || packages+=(nodejs npm) # the Node.js example
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "apt: installing ${missing[*]}"
    privileged apt-get update -qq
    privileged env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! cargo pgrx --version 2>/dev/null | grep -qF "$PGRX_VERSION"; then
    log "cargo: installing cargo-pgrx $PGRX_VERSION (a few minutes)"
    cargo install --locked cargo-pgrx --version "$PGRX_VERSION"
fi

if ! grep -qs "^pg$PG_MAJOR = \"$PG_CONFIG\"" "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
    log "pgrx: init against $PG_CONFIG"
    cargo pgrx init "--pg$PG_MAJOR" "$PG_CONFIG"
fi
