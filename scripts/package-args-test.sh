#!/usr/bin/env bash
# scripts/package.sh and deb_build (scripts/deb.sh) refuse a PostgreSQL major that is not one of theirs
# before they remove anything: the work directory they empty with rm -rf is built from it, and
# `scripts/package.sh ../..` emptied the repository (issue #34). Runs on a scratch copy of the scripts, so a
# regression deletes only that copy. Needs nothing installed; about a second.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
SUITE=package-args
scratch=$(mktemp -d /tmp/orch_lease-package-args.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/copy/target/package-build"
cp -r "$ROOT_DIR/scripts" "$ROOT_DIR/Cargo.toml" "$scratch/copy/"
touch "$scratch/copy/sentinel" "$scratch/sentinel"
passed=0
for major in ../.. .. "15 ../.." 13 "16/../.." "-1"; do
    status=0
    answer=$("$scratch/copy/scripts/package.sh" "$major" 2>&1) || status=$?
    [ "$status" != 0 ] && [[ "$answer" == *"no package for PostgreSQL major"* ]] ||
        fail "scripts/package.sh '$major' was not refused (exit $status): $answer"
    status=0
    answer=$(cd "$scratch/copy" && bash -c 'source scripts/lib.sh && source scripts/deb.sh &&
                 deb_build "$PWD" "$1" target/packages target/package-build' _ "$major" 2>&1) || status=$?
    [ "$status" != 0 ] && [[ "$answer" == *"no package for PostgreSQL major"* ]] ||
        fail "deb_build with major '$major' was not refused (exit $status): $answer"
    [ -e "$scratch/copy/sentinel" ] && [ -e "$scratch/sentinel" ] && [ -d "$scratch/copy/target/package-build" ] ||
        fail "major '$major' deleted files"
    passed=$((passed + 1))
done
echo "package-args: $passed passed, 0 failed"
