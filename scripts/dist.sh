#!/usr/bin/env bash
# `make dist`: the PGXN release, target/orch_lease-<version>.zip, a `git archive` of HEAD under the prefix
# orch_lease-<version>/. Checked: META.json (PGXN Meta Spec 1.0.0, Cargo.toml's version), every file of git
# and nothing else in it; then the zip is unpacked and built from source the documented way
# (`cargo pgrx package`, release) in target/dist/, with its own target directory (kept: a second run is quick).
# Upload the zip to PGXN (https://manager.pgxn.org) by hand.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT_DIR"
SUITE=dist
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
name=orch_lease-$version
zip=target/$name.zip

python3 scripts/pgxn-meta-check.py META.json Cargo.toml
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
    log "warning: uncommitted changes are not in $zip (git archive of HEAD)"
fi
mkdir -p target
rm -f "$zip"
git archive --format=zip --prefix="$name/" -o "$zip" HEAD

listed=$(python3 -c 'import sys, zipfile; print("\n".join(n for n in zipfile.ZipFile(sys.argv[1]).namelist() if not n.endswith("/")))' "$zip")
[ "$listed" = "$(git ls-tree -r --name-only HEAD | sed "s|^|$name/|")" ] || fail "$zip does not hold exactly the files of HEAD"
for file in META.json LICENSE README.md CHANGELOG.md Cargo.toml Cargo.lock orch_lease.control src/lib.rs; do
    grep -qx "$name/$file" <<<"$listed" || fail "$zip has no $file"
done

scripts/setup.sh
log "building $zip from source (cargo pgrx package, release)"
rm -rf target/dist/src
mkdir -p target/dist/src
python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$zip" target/dist/src
if ! (cd "target/dist/src/$name" &&
      CARGO_TARGET_DIR=$ROOT_DIR/target/dist/target cargo pgrx package --pg-config "$PG_CONFIG" \
          --out-dir "$ROOT_DIR/target/dist/out") > target/dist/build.log 2>&1; then
    tail -n 40 target/dist/build.log
    fail "$zip does not build from source (log: target/dist/build.log)"
fi
[ -f "target/dist/out$("$PG_CONFIG" --pkglibdir)/orch_lease.so" ] || fail "the build from $zip made no orch_lease.so"
grep -qx "default_version = '$version'" "target/dist/out$("$PG_CONFIG" --sharedir)/extension/orch_lease.control" ||
    fail "the build from $zip is not version $version"
echo "dist: $zip ($(wc -c < "$zip") bytes, $(wc -l <<<"$listed") files), builds from source"
