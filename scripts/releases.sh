#!/usr/bin/env bash
# Builds the library of each released version from git history, for the upgrade test: the fixture of a
# version is written through that version's own functions, which only its own library serves (the current
# one refuses an older schema until ALTER EXTENSION … UPDATE). Each library lands in
# target/releases/<version>/orch_lease.so; one shared build directory keeps the dependencies compiled once,
# and a library already built is not built again. Usage: scripts/releases.sh [VERSION …]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT_DIR"

# The commit whose code each version was released with (the commit before its install script was frozen).
declare -A RELEASED=([0.1.0]=15c1d5e [0.2.0]=6de9efd [0.3.0]=c68ee90 [0.4.0]=2e7cc04)

versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=("${!RELEASED[@]}")
for version in "${versions[@]}"; do
    out=target/releases/$version
    [ -f "$out/orch_lease.so" ] && continue
    log "building orch_lease $version (commit ${RELEASED[$version]}) for the upgrade test"
    src=target/releases/src-$version
    rm -rf "$src" && mkdir -p "$src" "$out"
    git archive "${RELEASED[$version]}" | tar -x -C "$src"
    (cd "$src" && CARGO_TARGET_DIR="$ROOT_DIR/target/releases/build" \
        cargo pgrx package --debug --pg-config "$PG_CONFIG" --out-dir "$ROOT_DIR/$out/package") \
        >"$out/build.log" 2>&1 || { cat "$out/build.log"; exit 1; }
    cp "$(find "$out/package" -name orch_lease.so | head -n 1)" "$out/orch_lease.so"
    rm -rf "$src" "$out/package"
done
