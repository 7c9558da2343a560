#!/usr/bin/env bash
# The Python client (clients/python) for real: mypy --strict over the package, its tests and the Python
# example, then its pytest suite against a throwaway cluster with the installed orch_lease (every outcome,
# two processes racing, a SIGKILLed process recovered by its successor, the listeners receiving forced
# releases and reconnecting, the alert bridge POSTing to a local HTTP server, the Python example run as a
# newcomer would, an actor on a caller's connection and on a psycopg_pool pool, try_lease's Refused
# outcomes and mypy refusing an unchecked one). From scripts/test.sh after install_debug; by hand:
#   flock /tmp/orch_lease.lock bash -c '. scripts/lib.sh && install_debug && scripts/python-client-test.sh'
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT_DIR"

cmp -s LICENSE clients/python/LICENSE || { echo "python-client: clients/python/LICENSE differs from LICENSE"; exit 1; }
bin=$(python_client_venv)
"$bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps --no-build-isolation ./clients/python
(cd clients/python && "$bin/mypy" --strict --cache-dir ../../target/python-client/mypy-cache src tests ../../examples/python)

trap cluster_stop EXIT
cluster_start
PATH=$bin:$PATH "$bin/pytest" -q -p no:cacheprovider clients/python/tests 2>&1 | tee target/python-client/pytest.out
passed=$(grep -Eo '[0-9]+ passed' target/python-client/pytest.out | tail -n1 | cut -d' ' -f1)
echo "python-client: ${passed:-0} passed, 0 failed"
