#!/usr/bin/env bash
# `make package`: Debian packages of orch_lease, one per PostgreSQL major, into target/packages/:
#   postgresql-<major>-orch-lease_<version>_amd64.deb   for 15 (Debian 12's) and 14, 16, 17, 18
# each built by `cargo pgrx package` (release) against that major's pg_config (the relocatable builds of
# scripts/lib.sh for 14, 16, 17, 18), with every released install and upgrade script of sql/ (so
# ALTER EXTENSION orch_lease UPDATE works from any released version), Depends: postgresql-<major>, a
# copyright file, a Debian changelog and md5sums; then SHA256SUMS over the .debs and lintian on each
# (errors fail the build; its full output is target/packages/lintian.txt). Also the Python client's wheel
# and sdist, orch_lease-<version>-py3-none-any.whl and orch_lease-<version>.tar.gz (clients/python).
# Every package installs into the directories of Debian's (and apt.postgresql.org's) postgresql-<major>:
# /usr/lib/postgresql/<major>/lib and /usr/share/postgresql/<major>/extension.
#   scripts/package.sh [MAJOR…]          (default: 15 14 16 17 18; ORCH_LEASE_PACKAGE_MAJORS too)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$ROOT_DIR/scripts/deb.sh"
cd "$ROOT_DIR"
SUITE=package
majors=${*:-${ORCH_LEASE_PACKAGE_MAJORS:-15 $OTHER_MAJORS}}
for major in $majors; do deb_check_major "$major"; done
scripts/setup.sh
apt_ensure python3 dpkg-dev lintian xz-utils

others=()
for major in $majors; do [ "$major" = 15 ] || others+=("$major"); done
pgrx_init_all "${others[@]}"

out=target/packages
rm -rf "$out"
mkdir -p "$out"
for major in $majors; do
    deb_build "$ROOT_DIR" "$major" "$out" target/package-build
done
"$(python_client_venv)/python" -m build --no-isolation --outdir "$out" clients/python >/dev/null
(cd "$out" && sha256sum ./*.deb ./*.whl ./*.tar.gz | sed 's| \./| |' > SHA256SUMS)
lintian_check "$out"/*.deb > "$out/lintian.txt"
cat "$out/lintian.txt"
ls -l "$out"
echo "package: $(ls "$out"/*.deb | wc -l) packages in $out, lintian: no errors; the Python client: $(cd "$out" && echo *.whl *.tar.gz)"
