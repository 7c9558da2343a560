#!/usr/bin/env bash
# What the lease history costs: the acquire + commit cycle (bench/scripts/cycle_orch_lease.sql) with
# orch_lease.history = all (every grant and CAS recorded: two history rows per cycle) against takeovers
# (none on this path), each beside the raw-SQL floor that makes the same round trips (two) and the same
# durable writes: cycle_raw_history.sql (lease row, stage, two history rows) for all, cycle_raw.sql
# (lease row and stage) for takeovers. Each measured in this run; prints medians and ratios.
# BENCH_RUNS (3) × BENCH_SECONDS (5) per variant, at 1 and 4 clients. `make bench-history` runs it.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
bench_begin
runs=${BENCH_RUNS:-3} seconds=${BENCH_SECONDS:-5}
psql -X -q -v ON_ERROR_STOP=1 <<'SQL'
CREATE TABLE raw_lease (LIKE orch_lease.transition_lease INCLUDING ALL);
CREATE TABLE raw_event (LIKE orch_lease.lease_event INCLUDING ALL);
CREATE SEQUENCE raw_token;
SELECT orch_lease.register_task_table('bench_task');
SELECT count(*) FROM orch_lease.transition_lease_recover('bench-boot', 'bench', 1);
VACUUM ANALYZE;
SQL
tps() { # script clients history → median tps of $runs runs
    local script=$1 clients=$2 history=$3
    for _ in $(seq "$runs"); do
        PGOPTIONS="-c orch_lease.history=$history" "$PG_BIN/pgbench" -n -M prepared -T "$seconds" \
            -c "$clients" -j "$clients" -f "bench/scripts/$script" 2>/dev/null | awk '/^tps/ { print $3 }'
    done | median
}
printf '%-8s %12s %12s %14s %12s %16s %18s %14s\n' clients raw takeovers 'raw+history' all \
    'all÷takeovers' 'takeovers÷raw' 'all÷raw+history'
for clients in 1 4; do
    raw=$(tps cycle_raw.sql "$clients" all)
    takeovers=$(tps cycle_orch_lease.sql "$clients" takeovers)
    raw_history=$(tps cycle_raw_history.sql "$clients" all)
    all=$(tps cycle_orch_lease.sql "$clients" all)
    printf '%-8s %12.0f %12.0f %14.0f %12.0f %16.2f %18.2f %14.2f\n' "$clients" "$raw" "$takeovers" "$raw_history" "$all" \
        "$(awk -v a="$all" -v b="$takeovers" 'BEGIN { print a / b }')" \
        "$(awk -v a="$takeovers" -v b="$raw" 'BEGIN { print a / b }')" \
        "$(awk -v a="$all" -v b="$raw_history" 'BEGIN { print a / b }')"
done
