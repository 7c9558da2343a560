#!/usr/bin/env bash
# The files every adopter looks for (make test-package runs this): META.json against the PGXN Meta Spec 1.0.0
# and Cargo.toml's version, LICENSE (Apache-2.0), CHANGELOG.md, SECURITY.md and CONTRIBUTING.md; no build
# output or cache tracked in git; and scripts/setup.sh stopping with a clear message when Rust is missing
# or too old.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT_DIR"
SUITE=release-files
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)

python3 scripts/pgxn-meta-check.py --self-test META.json Cargo.toml

grep -q 'Apache License' LICENSE && grep -q 'Version 2.0, January 2004' LICENSE &&
    grep -q 'END OF TERMS AND CONDITIONS' LICENSE && [ "$(wc -l < LICENSE)" -ge 170 ] ||
    fail "LICENSE is not the full Apache License 2.0 text"
grep -q '^license = "Apache-2.0"$' Cargo.toml || fail "Cargo.toml's license is not Apache-2.0"
grep -q "^## \[$version\] - " CHANGELOG.md || fail "CHANGELOG.md has no entry for $version"
grep -q "${version%.*}.x" SECURITY.md || fail "SECURITY.md does not name ${version%.*}.x as supported"
grep -q 'docs/security.md' SECURITY.md || fail "SECURITY.md does not point to docs/security.md"
for topic in 'cargo pgrx schema' 'model/' 'make test' 'make package'; do
    grep -qF "$topic" CONTRIBUTING.md || fail "CONTRIBUTING.md does not mention $topic"
done

# Build output, caches and packages do not belong in git.
# || true: grep exits 1 when nothing matches, the passing case; the next line is the check.
tracked=$(git ls-files | grep -E '(^|/)(target|node_modules|__pycache__)/|\.(pyc|pyo|o|so|a|rlib|deb|zip|whl|tar\.gz)$' || true)
[ -z "$tracked" ] || fail "compiled or cache files are tracked in git: $tracked"

# setup.sh names a missing or too-old toolchain before it installs anything.
fake=$(mktemp -d)
trap 'rm -rf "$fake"' EXIT
mkdir "$fake/none" "$fake/old"
for tool in cargo rustc; do
    printf '#!/bin/sh\necho "%s 1.63.0 (Debian 12)"\n' "$tool" > "$fake/old/$tool"
    chmod +x "$fake/old/$tool"
done
if said=$(PATH="$fake/old:/usr/sbin:/usr/bin:/sbin:/bin" scripts/setup.sh 2>&1); then
    fail "setup.sh went on with Rust 1.63"
fi
grep -q "cargo 1.63.0 .* is too old: orch_lease needs Rust >= $RUST_MIN" <<<"$said" || fail "setup.sh with Rust 1.63 said: $said"
grep -q rustup <<<"$said" || fail "setup.sh does not say how to install Rust: $said"
if ! command -v /usr/bin/cargo >/dev/null && ! command -v /bin/cargo >/dev/null; then
    if said=$(PATH="$fake/none:/usr/sbin:/usr/bin:/sbin:/bin" scripts/setup.sh 2>&1); then
        fail "setup.sh went on without cargo"
    fi
    grep -q "cargo is not on PATH: orch_lease needs Rust >= $RUST_MIN" <<<"$said" || fail "setup.sh without cargo said: $said"
fi
echo "release files: META.json, LICENSE, CHANGELOG.md, SECURITY.md, CONTRIBUTING.md, git clean of build output, setup's toolchain check"
