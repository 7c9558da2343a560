#!/usr/bin/env bash
# `make bench` (not part of `make test`): a tuned throwaway cluster, pgbench custom scripts, ratios against
# baselines measured in the same run, and docs/benchmarks.md with its plot. BENCH_RUNS and BENCH_SECONDS
# size it (defaults 3 and 5: about 30 minutes on 2 cores); BENCH_CLIENTS (1,4,8,16,32) and
# BENCH_HISTORY_MAX (10000000) reduce it. It installs into PostgreSQL's directories and measures the
# library it put there, so it holds the lock on them throughout.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
begin

venv=target/bench/venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q -r bench/requirements.txt
lock_take
bench_cluster
PATH="$PG_BIN:$PATH" "$venv/bin/python" bench/run.py
bench/pgbouncer.sh # what PgBouncer (transaction pooling) costs on the cycle: its own cluster, figures in docs/ha.md
