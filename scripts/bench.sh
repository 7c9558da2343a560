#!/usr/bin/env bash
# `make bench` (not part of `make test`): a tuned throwaway cluster, pgbench custom scripts, ratios against
# baselines measured in the same run, and docs/benchmarks.md with its plot. BENCH_RUNS and BENCH_SECONDS
# size it (defaults 3 and 5: about 25 minutes on 2 cores).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
begin

venv=target/bench/venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q -r bench/requirements.txt
bench_cluster
PATH="$PG_BIN:$PATH" "$venv/bin/python" bench/run.py
bench/pgbouncer.sh # what PgBouncer (transaction pooling) costs on the cycle: its own cluster, figures in docs/ha.md
