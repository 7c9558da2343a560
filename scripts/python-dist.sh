#!/usr/bin/env bash
# `make python-dist`: the Python client's sdist and wheel in target/python-dist, checked with `twine check`
# (the metadata and the README render as PyPI would show them). No upload: publishing is a maintainer's
# step, from a clean checkout of the release tag, with a PyPI API token for the project `orch-lease`:
#   target/python-client/venv/bin/twine upload target/python-dist/*
# (TWINE_USERNAME=__token__, TWINE_PASSWORD=<the token>; try it first with --repository testpypi).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT_DIR"
bin=$(python_client_venv)
out=target/python-dist
rm -rf "$out"
"$bin/python" -m build --no-isolation --outdir "$out" clients/python >/dev/null
"$bin/twine" check --strict "$out"/*
ls "$out"
built=$(find "$out" -maxdepth 1 \( -name '*.whl' -o -name '*.tar.gz' \) | wc -l)
[ "$built" = 2 ] || { echo "python-dist: expected a wheel and an sdist, found $built files"; exit 1; }
# The client speaks the extension's contract: its version is the extension's, in the package's metadata
# (the wheel's name) and in orch_lease.__version__ alike.
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
[ -f "$out/orch_lease-$version-py3-none-any.whl" ] \
    || { echo "python-dist: the wheel is not version $version, the extension's: $(ls "$out")"; exit 1; }
grep -qx "__version__ = \"$version\"" clients/python/src/orch_lease/__init__.py \
    || { echo "python-dist: orch_lease.__version__ is not $version, the extension's"; exit 1; }
echo "python-dist: $built passed (a wheel and an sdist, twine check), 0 failed"
