#!/usr/bin/env bash
# What PgBouncer costs on the acquire + commit cycle (bench/scripts/cycle_orch_lease.sql): pgbench against
# the server directly and through PgBouncer 1.18 in transaction pooling mode with 4 server connections,
# both with the extended protocol's unnamed statements (`-M extended`: what a driver sends that works
# behind a transaction pooler; `-M prepared` does not). Prints medians of BENCH_RUNS (3) runs of
# BENCH_SECONDS (5) s at 1, 4 and 16 clients, and the ratio pooled ÷ direct. `make bench` runs it.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
bench_begin
runs=${BENCH_RUNS:-3} seconds=${BENCH_SECONDS:-5}
psql -X -q -v ON_ERROR_STOP=1 <<'SQL'
SELECT orch_lease.register_task_table('bench_task');
SELECT count(*) FROM orch_lease.transition_lease_recover('bench-boot', 'bench', 1);
VACUUM ANALYZE;
SQL
pgbouncer_start transaction 4
tps() { # port clients → median tps of $runs runs
    for _ in $(seq "$runs"); do
        "$PG_BIN/pgbench" -n -M extended -h 127.0.0.1 -p "$1" -T "$seconds" -c "$2" -j "$(( $2 < 2 ? $2 : 2 ))" \
            -f bench/scripts/cycle_orch_lease.sql 2>/dev/null | awk '/^tps/ { print $3 }'
    done | median
}
printf '%-8s %12s %12s %16s\n' clients direct pgbouncer 'pgbouncer÷direct'
for clients in 1 4 16; do
    direct=$(tps "$PGPORT" "$clients")
    pooled=$(tps "$PGBOUNCER_PORT" "$clients")
    printf '%-8s %12.0f %12.0f %16.2f\n' "$clients" "$direct" "$pooled" "$(awk -v a="$pooled" -v b="$direct" 'BEGIN { print a / b }')"
done
