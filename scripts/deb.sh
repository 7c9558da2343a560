# shellcheck shell=bash
# Building and checking the Debian packages of orch_lease (scripts/package.sh, scripts/test-package.sh).
# Source it after scripts/lib.sh; do not run it.

# Who the packages and META.json name as maintainer.
DEB_MAINTAINER="orch_lease maintainers <maintainers@users.noreply.r-seed-f4abfeb4.example>"

# The version of the crate whose Cargo.toml is FILE.
cargo_version() { sed -n 's/^version = "\(.*\)"$/\1/p' "$1" | head -n1; }

# deb_check_major MAJOR: stops unless MAJOR is a PostgreSQL major the packages are built for (15 and
# $OTHER_MAJORS). Paths that get rm -rf are built from it: check it before anything else.
deb_check_major() {
    [[ "$1" =~ ^[0-9]+$ && " 15 $OTHER_MAJORS " == *" $1 "* ]] ||
        fail "no package for PostgreSQL major '$1': the majors are 15 $OTHER_MAJORS"
}

# deb_build SOURCE MAJOR OUTDIR WORKDIR: `cargo pgrx package` (release) of the orch_lease source tree SOURCE
# against PostgreSQL MAJOR, staged in WORKDIR/MAJOR, packed as OUTDIR/postgresql-MAJOR-orch-lease_VERSION_amd64.deb.
# CARGO_TARGET_DIR, when set, is the build's target directory.
deb_build() {
    local src=$1 major=$2 out=$3 work
    deb_check_major "$major"
    work=$(realpath -m "$4/$major")
    local pg_config=/usr/lib/postgresql/15/bin/pg_config
    [ "$major" = 15 ] || pg_config=$PG_BUILDS/$major/bin/pg_config
    local version pkg raw=$work/raw root=$work/root
    version=$(cargo_version "$src/Cargo.toml")
    pkg=postgresql-$major-orch-lease
    rm -rf "$work"
    mkdir -p "$raw" "$root/DEBIAN"
    log "PostgreSQL $major: cargo pgrx package (release, fat LTO) of orch_lease $version"
    if ! (cd "$src" && cargo pgrx package --pg-config "$pg_config" --no-default-features --features "pg$major" \
              --out-dir "$raw") > "$work.log" 2>&1; then
        tail -n 40 "$work.log"
        fail "cargo pgrx package failed for PostgreSQL $major (log: $work.log)"
    fi

    # Where Debian's postgresql-MAJOR (and apt.postgresql.org's) keeps its extensions, whatever pg_config built it.
    local libdir=usr/lib/postgresql/$major/lib extdir=usr/share/postgresql/$major/extension
    local built_lib built_ext
    built_lib=$raw$("$pg_config" --pkglibdir)
    built_ext=$raw$("$pg_config" --sharedir)/extension
    [ "$(find "$raw" -type f | wc -l)" = "$(find "$built_lib" "$built_ext" -maxdepth 1 -type f -name 'orch_lease*' | wc -l)" ] ||
        fail "cargo pgrx package wrote files outside $built_lib and $built_ext: $(find "$raw" -type f)"
    mkdir -p "$root/$libdir" "$root/$extdir"
    install -m 644 "$built_lib/orch_lease.so" "$root/$libdir/"
    strip --strip-unneeded --remove-section=.comment --remove-section=.note "$root/$libdir/orch_lease.so"
    install -m 644 "$built_ext"/orch_lease* "$root/$extdir/"
    # pgrx copies the upgrade scripts of sql/ but not the released install scripts: every one of them.
    install -m 644 "$src"/sql/orch_lease--*.sql "$root/$extdir/"
    deb_check_scripts "$root/$extdir" "$version"

    local doc=$root/usr/share/doc/$pkg
    mkdir -p "$doc"
    deb_copyright > "$doc/copyright"
    deb_changelog "$pkg" "$version" "$major" | gzip -9n > "$doc/changelog.gz"

    local shlibs
    shlibs=$(deb_shlibs "$root/$libdir/orch_lease.so")
    [ -n "$shlibs" ] || fail "dpkg-shlibdeps found no library dependencies of orch_lease.so"
    (cd "$root" && find usr -type f -print0 | LC_ALL=C sort -z | xargs -0 md5sum) > "$root/DEBIAN/md5sums"
    cat > "$root/DEBIAN/control" <<CONTROL
Package: $pkg
Version: $version
Architecture: amd64
Maintainer: $DEB_MAINTAINER
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Depends: postgresql-$major, $shlibs
Section: database
Priority: optional
Description: transition leases and stage compare-and-swap for PostgreSQL $major
 orch_lease gives workflow orchestrators owner-exclusion and atomic stage
 writes inside PostgreSQL: a durable transition lease per work item, owned
 by a boot incarnation rather than a heartbeat, and an expected-stage
 compare-and-swap, both called through plain SQL from any language.
 .
 This package is built for PostgreSQL $major. After installing it, run
 CREATE EXTENSION orch_lease (as a superuser) in each database that uses it;
 ALTER EXTENSION orch_lease UPDATE upgrades from any earlier release.
CONTROL
    find "$root" -type d -exec chmod 755 {} +
    find "$root" -type f -exec chmod 644 {} +
    mkdir -p "$out"
    dpkg-deb --root-owner-group -Zxz --build "$root" "$out/${pkg}_${version}_amd64.deb" >/dev/null
    log "built $out/${pkg}_${version}_amd64.deb"
}

# deb_check_scripts EXTDIR VERSION: the control file's default version is VERSION, and from every released
# install script in EXTDIR a chain of upgrade scripts leads to VERSION.
deb_check_scripts() {
    local extdir=$1 version=$2 script from next steps
    grep -qx "default_version = '$version'" "$extdir/orch_lease.control" ||
        fail "orch_lease.control: default_version is not '$version': $(grep default_version "$extdir/orch_lease.control")"
    [ -f "$extdir/orch_lease--$version.sql" ] || fail "no install script orch_lease--$version.sql"
    for script in "$extdir"/orch_lease--*.sql; do
        from=$(basename "$script" .sql)
        from=${from#orch_lease--}
        [[ $from == *--* ]] && continue
        steps=0
        while [ "$from" != "$version" ]; do
            next=$(find "$extdir" -name "orch_lease--$from--*.sql" -printf '%f\n')
            [ "$(wc -w <<<"$next")" = 1 ] || fail "not one upgrade script from $from: '$next'"
            next=${next#"orch_lease--$from--"}
            from=${next%.sql}
            steps=$((steps + 1))
            [ "$steps" -lt 50 ] || fail "the upgrade scripts loop"
        done
    done
}

# The shared-library dependencies of the ELF file FILE, as dpkg-shlibdeps writes them (libc6 (>= …), …).
deb_shlibs() {
    local tmp
    tmp=$(mktemp -d)
    mkdir "$tmp/debian"
    printf 'Source: orch-lease\n\nPackage: orch-lease\nArchitecture: any\n' > "$tmp/debian/control"
    (cd "$tmp" && dpkg-shlibdeps -O "-e$1" 2>/dev/null) | sed -n 's/^shlibs:Depends=//p'
    rm -rf "$tmp"
}

# The machine-readable copyright file (DEP-5).
deb_copyright() {
    cat <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: orch_lease
Upstream-Contact: $DEB_MAINTAINER

Files: *
Copyright: 2026 orch_lease maintainers
License: Apache-2.0
Comment: orch_lease.so also contains the Rust crates it is built with (pgrx and
 its dependencies, listed in Cargo.lock of the source), each under the MIT
 license, the Apache License 2.0, or both.

License: Apache-2.0
 Licensed under the Apache License, Version 2.0 (the "License");
 you may not use this file except in compliance with the License.
 You may obtain a copy of the License at
 .
 http://www.apache.org/licenses/LICENSE-2.0
 .
 Unless required by applicable law or agreed to in writing, software
 distributed under the License is distributed on an "AS IS" BASIS,
 WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
 See the License for the specific language governing permissions and
 limitations under the License.
 .
 On Debian systems, the complete text of the Apache License, Version 2.0
 can be found in "/usr/share/common-licenses/Apache-2.0".
COPYRIGHT
}

# deb_changelog PACKAGE VERSION MAJOR: the Debian changelog: one entry, this package of VERSION (the packages
# are new; what changed in each release is CHANGELOG.md's), dated as CHANGELOG.md dates VERSION.
deb_changelog() {
    local pkg=$1 version=$2 major=$3 date
    date=$(sed -n "s/^## \[$version\] - \([0-9-]*\|unreleased\)$/\1/p" "$ROOT_DIR/CHANGELOG.md")
    # A version not released yet is dated by the commit it is built from (the same date for every build of it).
    [ "$date" != unreleased ] || date=$(git -C "$ROOT_DIR" log -1 --format=%cs)
    [ -n "$date" ] || fail "CHANGELOG.md has no entry for $version, dated or unreleased" >&2
    cat <<ENTRY
$pkg ($version) unstable; urgency=medium

  * orch_lease $version for PostgreSQL $major, with the install scripts of every
    earlier release and the upgrade scripts from each of them. What changed in
    each release, and the upgrade notes to read before ALTER EXTENSION
    orch_lease UPDATE: CHANGELOG.md of the source.

 -- $DEB_MAINTAINER  $(LC_ALL=C TZ=UTC date -R -d "$date 12:00")
ENTRY
}

# lintian_check DEB…: lintian on each package; prints what it says and fails on any error.
lintian_check() {
    local output status=0
    output=$(lintian --tag-display-limit 0 --display-info "$@" 2>&1) || status=$?
    # || true: grep -v exits 1 when nothing is left, which is lintian saying nothing; lintian's status is kept above.
    output=$(grep -v 'running with root privileges' <<<"$output" || true)
    echo "${output:-lintian: nothing to report}"
    if grep -q '^E: ' <<<"$output"; then
        echo "$output" >&2
        fail "lintian reports errors (above)" >&2
    fi
    [ "$status" = 0 ] || fail "lintian failed (exit $status) without reporting an error" >&2
}
