#!/usr/bin/env python3
"""make bench: orch_lease against the raw-SQL floor, a PL/pgSQL twin and advisory locks, measured side by
side in one run on one throwaway cluster. Prints the ratios and writes docs/benchmarks.md with a plot.

Environment: ORCH_LEASE_DSN, PGHOST, PGPORT (set by scripts/bench.sh); BENCH_RUNS (3), BENCH_SECONDS (5).
"""
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import psycopg  # noqa: E402

HERE = Path(__file__).resolve().parent
DOCS = HERE.parent / "docs"
DSN = os.environ["ORCH_LEASE_DSN"]
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
CLIENTS = [1, 4, 8, 16, 32]
TASKS = 100_000
# Each cycle makes two round trips (acquire, then commit), like orch_lease's; orch_lease runs with
# orch_lease.history = all (the default): two history rows per cycle, like the twin and the floor with history.
CYCLES = {"orch_lease": "cycle_orch_lease.sql", "raw floor + history": "cycle_raw_history.sql",
          "raw floor": "cycle_raw.sql", "PL/pgSQL twin": "cycle_twin.sql", "advisory lock": "cycle_advisory.sql"}


def connect():
    return psycopg.connect(DSN, autocommit=True)


def prepare():
    with connect() as db:
        db.execute("CREATE EXTENSION IF NOT EXISTS orch_lease")
        db.execute("""
            DROP TABLE IF EXISTS bench_task, raw_lease, raw_event, hot_guard;
            DROP SEQUENCE IF EXISTS raw_token;
            CREATE TABLE bench_task (id bigint PRIMARY KEY, stage text NOT NULL);
            INSERT INTO bench_task SELECT i, 'queued' FROM generate_series(0, %s) i;
            CREATE SEQUENCE raw_token;
            CREATE TABLE raw_lease (LIKE orch_lease.transition_lease INCLUDING ALL);
            CREATE TABLE raw_event (LIKE orch_lease.lease_event INCLUDING ALL);
            CREATE TABLE hot_guard (holders int, max_seen int, grants bigint);
            INSERT INTO hot_guard VALUES (0, 0, 0);
            SELECT orch_lease.register_task_table('bench_task');
        """ % TASKS)
        db.execute("VACUUM ANALYZE bench_task")
        db.execute((HERE / "twin.sql").read_text())
        db.execute("SELECT count(*) FROM orch_lease.transition_lease_recover('bench-boot', 'bench', 1)")


def pgbench(script, clients, synchronous_commit="on", seconds=SECONDS):
    """Transactions per second of one pgbench run (each script run counts as one transaction)."""
    env = dict(os.environ, PGOPTIONS=f"-c synchronous_commit={synchronous_commit}")
    out = subprocess.run(
        ["pgbench", "-n", "-M", "prepared", "-c", str(clients), "-j", str(min(clients, 2)),
         "-T", str(seconds), "-f", str(HERE / "scripts" / script), "postgres"],
        env=env, capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if line.startswith("tps =") or line.startswith("tps = "):
            return float(line.split()[2])
    raise RuntimeError(out)


def median_of(runs):
    return statistics.median(runs), min(runs), max(runs)


def measure(script, clients, synchronous_commit="on"):
    return median_of([pgbench(script, clients, synchronous_commit) for _ in range(RUNS)])


def timed(db, sql):
    started = time.perf_counter()
    db.execute(sql)
    return (time.perf_counter() - started) * 1000


def stale_leases(db, n):
    db.execute("TRUNCATE orch_lease.transition_lease")
    db.execute("DELETE FROM orch_lease.boot WHERE instance = 'recover-bench'")
    db.execute("SELECT count(*) FROM orch_lease.transition_lease_recover('old-boot', 'recover-bench', 1)")
    db.execute("""INSERT INTO orch_lease.transition_lease (work_item, token, owner, owner_pid, owner_boot_id)
                  SELECT 'r-' || i, nextval('orch_lease.token_seq'), 'bench', 1, 'old-boot'
                    FROM generate_series(1, %s) i""" % n)
    db.execute("VACUUM ANALYZE orch_lease.transition_lease")


def recover_bench():
    """recover() of n stale leases against a bare DELETE of the same rows (medians of RUNS, in ms)."""
    rows = []
    with connect() as db:
        for n in (1_000, 10_000, 100_000):
            recover, delete = [], []
            for run in range(RUNS):
                stale_leases(db, n)
                recover.append(timed(db, f"SELECT count(*) FROM orch_lease.transition_lease_recover("
                                         f"'new-boot-{n}-{run}', 'recover-bench', 2)"))
                stale_leases(db, n)
                delete.append(timed(db, "DELETE FROM orch_lease.transition_lease WHERE owner_boot_id = 'old-boot'"))
            rows.append((n, statistics.median(recover), statistics.median(delete)))
        db.execute("TRUNCATE orch_lease.transition_lease")
    return rows


def scale_bench():
    """acquire + release at 8 clients with 1k, 100k and 1M other leases held, then with 1M events."""
    rows = []
    with connect() as db:
        for n in (1_000, 100_000, 1_000_000):
            db.execute("TRUNCATE orch_lease.transition_lease")
            db.execute("""INSERT INTO orch_lease.transition_lease (work_item, token, owner, owner_pid, owner_boot_id)
                          SELECT 'fill-' || i, nextval('orch_lease.token_seq'), 'filler', 1, 'filler-boot'
                            FROM generate_series(1, %s) i""" % n)
            db.execute("VACUUM ANALYZE orch_lease.transition_lease")
            rows.append((f"{n:,} leases held", measure("acquire_release.sql", 8)))
        db.execute("""INSERT INTO orch_lease.lease_event (event, work_item, old_owner, old_token, reason)
                      SELECT 'forced', 'fill-' || i, 'filler', i, 'bench' FROM generate_series(1, 1000000) i""")
        db.execute("VACUUM ANALYZE orch_lease.lease_event")
        rows.append(("1,000,000 leases + 1,000,000 events", measure("acquire_release.sql", 8)))
        db.execute("TRUNCATE orch_lease.transition_lease, orch_lease.lease_event")
    return rows


def rss_kb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])


def memory_bench():
    """Backend resident memory before and after 1M calls of each function in one session, in
    transactions of 1,000 calls (a session lives across transactions; one transaction of a million
    calls would measure PostgreSQL's own per-transaction bookkeeping instead)."""
    calls = {
        "transition_lease_acquire (held)":
            "orch_lease.transition_lease_acquire('mem-held', 'other', 1, 'bench-boot')",
        "transition_lease_release (stale token)": "orch_lease.transition_lease_release('mem-held', -g)",
        "transition_lease_force_release (nothing held)": "orch_lease.transition_lease_force_release('mem-none')",
        "update_task_stage_cas (stage_mismatch)":
            "orch_lease.update_task_stage_cas((g % 1000 + 1)::text, 'done', 'queued')",
        "commit_stage_cas (lease_lost)": "orch_lease.commit_stage_cas('1', -g, 'queued', 'queued')",
        "transition_lease_recover (idempotent)": "orch_lease.transition_lease_recover('bench-boot', 'bench')",
    }
    loop = "DO $$ BEGIN FOR g IN 1..{n} LOOP PERFORM {call}; IF g % 1000 = 0 THEN COMMIT; END IF; END LOOP; END $$"
    rows = []
    with connect() as db:
        db.execute("SELECT orch_lease.transition_lease_acquire('mem-held', 'holder', 1, 'bench-boot')")
        pid = db.execute("SELECT pg_backend_pid()").fetchone()[0]
        for name, call in calls.items():
            db.execute(loop.format(n=10_000, call=call))
            before = rss_kb(pid)
            db.execute(loop.format(n=1_000_000, call=call))
            rows.append((name, before, rss_kb(pid)))
        db.execute("TRUNCATE orch_lease.transition_lease")
    return rows


def hot_bench():
    rows = []
    with connect() as db:
        for clients in CLIENTS:
            db.execute("UPDATE hot_guard SET holders = 0, max_seen = 0, grants = 0")
            started = time.perf_counter()
            tps = pgbench("hot_item.sql", clients)
            elapsed = time.perf_counter() - started
            grants, max_seen = db.execute("SELECT grants, max_seen FROM hot_guard").fetchone()
            grants_per_s = grants / SECONDS
            rows.append((clients, tps, grants_per_s, tps - grants_per_s, max(max_seen - 1, 0), elapsed))
        db.execute("TRUNCATE orch_lease.transition_lease")
    return rows


def main():
    prepare()
    print(f"{RUNS} runs of {SECONDS} s per point; clients {CLIENTS}; {os.cpu_count()} cores")
    ceiling = {c: measure("select1.sql", c) for c in CLIENTS}
    cycle = {}
    for sync in ("on", "off"):
        for name, script in CYCLES.items():
            for clients in CLIENTS:
                cycle[(sync, name, clients)] = measure(script, clients, sync)
                print(f"cycle sync={sync:<3} {name:<14} {clients:>2} clients: {cycle[(sync, name, clients)][0]:9.0f} tps",
                      flush=True)
    cas = {(name, c): measure(script, c) for name, script in
           (("orch_lease", "cas_orch_lease.sql"), ("bare UPDATE", "cas_raw.sql")) for c in CLIENTS}
    hot = hot_bench()
    recover = recover_bench()
    scale = scale_bench()
    memory = memory_bench()
    library = subprocess.run(["pg_config", "--pkglibdir"], capture_output=True, text=True).stdout.strip()
    so_bytes = os.path.getsize(os.path.join(library, "orch_lease.so"))
    write_report(ceiling, cycle, cas, hot, recover, scale, memory, so_bytes)


def ratio(a, b):
    return a / b if b else float("nan")


def write_report(ceiling, cycle, cas, hot, recover, scale, memory, so_bytes):
    DOCS.joinpath("img").mkdir(parents=True, exist_ok=True)
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=False)
    for axis, sync in zip(axes, ("on", "off")):
        for name in CYCLES:
            medians = [cycle[(sync, name, c)][0] for c in CLIENTS]
            lows = [cycle[(sync, name, c)][0] - cycle[(sync, name, c)][1] for c in CLIENTS]
            highs = [cycle[(sync, name, c)][2] - cycle[(sync, name, c)][0] for c in CLIENTS]
            axis.errorbar(CLIENTS, medians, yerr=[lows, highs], marker="o", capsize=3, label=name)
        axis.set_xscale("log", base=2)
        axis.set_xticks(CLIENTS, [str(c) for c in CLIENTS])
        axis.set_xlabel("clients")
        axis.set_ylabel("transition cycles per second")
        axis.set_title(f"full transition cycle, synchronous_commit = {sync}")
        axis.grid(alpha=0.3)
    axes[0].legend()
    figure.tight_layout()
    figure.savefig(DOCS / "img" / "bench-cycle.png", dpi=100)

    cores = os.cpu_count()
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`bench/run.py`); every figure below comes from one run on one throwaway",
        f"cluster, side by side. Machine: {cores} cores, {platform.machine()}, PostgreSQL 15 (Debian), orch_lease",
        f"release build. Each point is the median of {RUNS} pgbench runs of {SECONDS} s (`-M prepared`), with",
        "min–max. Tuned cluster: `shared_buffers=512MB`, `max_connections=200`, `checkpoint_timeout=30min`,",
        "`max_wal_size=4GB`. Ratios are orch_lease ÷ the baseline at the same client count: above 1 is faster.",
        "",
        "![Full transition cycle](img/bench-cycle.png)",
        "",
        "## 1. Full transition cycle on distinct items",
        "",
        "One cycle, on a random item among 100,000, two round trips (two statements, each its own transaction)",
        "on every side but the advisory lock's. What each side does per cycle:",
        "",
        "| side | round trips | durable writes per cycle |",
        "|---|---:|---|",
        "| **orch_lease** (`cycle_orch_lease.sql`, `orch_lease.history = all`) | 2 | acquire: lease row inserted, history row; commit: lease row deleted, stage updated, history row |",
        "| **raw floor + history** (`cycle_raw_history.sql`) | 2 | `INSERT … ON CONFLICT DO NOTHING RETURNING token` + a history row; then one statement: the stage updated where it is still the expected one, the lease row deleted by token, a history row |",
        "| **raw floor** (`cycle_raw.sql`) | 2 | the same without the history rows (compare with orch_lease at `history = takeovers`: `make bench-history`) |",
        "| **PL/pgSQL twin** (`bench/twin.sql`) | 2 | the same as orch_lease: lease row, stage, a history row per grant and CAS; static SQL, planned once per session |",
        "| **advisory lock** (`cycle_advisory.sql`) | 3 | the stage only: no durable lease, no history (not the same guarantee) |",
        "",
    ]
    for sync in ("on", "off"):
        lines += [f"synchronous_commit = {sync}:", "",
                  "| clients | SELECT 1 ceiling | orch_lease | raw + history | raw | twin | advisory "
                  "| ÷ raw + history | ÷ twin | ÷ advisory | of ceiling |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for c in CLIENTS:
            ours, raw_history, raw, twin, adv = (cycle[(sync, n, c)] for n in CYCLES)
            fmt = lambda m: f"{m[0]:,.0f} ({m[1]:,.0f}–{m[2]:,.0f})"
            lines.append(f"| {c} | {ceiling[c][0]:,.0f} | {fmt(ours)} | {fmt(raw_history)} | {fmt(raw)} | {fmt(twin)} | "
                         f"{fmt(adv)} | {ratio(ours[0], raw_history[0]):.2f} | {ratio(ours[0], twin[0]):.2f} | "
                         f"{ratio(ours[0], adv[0]):.2f} | {ratio(ours[0], ceiling[c][0]):.3f} |")
        lines.append("")
    lines += ["## 2. Hot item: every client contends on one item", "",
              "Each script run asks for the lease on the same item; a grant bumps a guard row's holder count,",
              "records the maximum ever seen, and commits. Overlapping grants = maximum holders − 1.", "",
              "| clients | acquire attempts/s | grants/s | refusals/s | overlapping grants |",
              "|---:|---:|---:|---:|---:|"]
    for c, tps, grants, refusals, overlaps, _ in hot:
        lines.append(f"| {c} | {tps:,.0f} | {grants:,.0f} | {refusals:,.0f} | {overlaps} |")
    lines += ["", "## 3. CAS alone against the bare conditional UPDATE", "",
              "One round trip each; `update_task_stage_cas` also writes a history row (`history = all`), the bare",
              "UPDATE writes the stage only.", "",
              "| clients | update_task_stage_cas | bare `UPDATE … WHERE stage = $expected` | ratio |",
              "|---:|---:|---:|---:|"]
    for c in CLIENTS:
        ours, bare = cas[("orch_lease", c)], cas[("bare UPDATE", c)]
        lines.append(f"| {c} | {ours[0]:,.0f} | {bare[0]:,.0f} | {ratio(ours[0], bare[0]):.2f} |")
    lines += ["", "## 4. recover() of stale leases against a bare DELETE of the same rows", "",
              "recover also supersedes the old boot, logs one `reclaimed` event per lease, announces each with",
              "NOTIFY and returns every row; the DELETE does none of that.", "",
              "| stale leases | recover (ms) | bare DELETE (ms) | recover ÷ DELETE |", "|---:|---:|---:|---:|"]
    for n, rec, dele in recover:
        lines.append(f"| {n:,} | {rec:,.1f} | {dele:,.1f} | {ratio(rec, dele):.2f} |")
    lines += ["", "## 5. Scale: acquire + release at 8 clients with the lease table full", "",
              "| lease table | cycles/s | ÷ first row |", "|---|---:|---:|"]
    for label, m in scale:
        lines.append(f"| {label} | {m[0]:,.0f} ({m[1]:,.0f}–{m[2]:,.0f}) | {ratio(m[0], scale[0][1][0]):.2f} |")
    lines += ["", "## 6. Memory: backend resident set before and after 1,000,000 calls in one session", "",
              "| function (path) | RSS before (kB) | RSS after (kB) | growth |", "|---|---:|---:|---:|"]
    for name, before, after in memory:
        lines.append(f"| {name} | {before:,} | {after:,} | {ratio(after, before):.3f}× |")
    lines += ["", f"Shared library size: {so_bytes / 1e6:.1f} MB (`orch_lease.so`, release, fat LTO).", ""]
    report = DOCS / "benchmarks.md"
    old = report.read_text() if report.exists() else ""
    analysis = old.split(ANALYSIS_MARKER, 1)[1] if ANALYSIS_MARKER in old else ""
    report.write_text("\n".join(lines) + "\n" + ANALYSIS_MARKER + analysis)
    print("\n".join(lines))


# What is written by hand below this marker in docs/benchmarks.md (the analysis) survives a new run.
ANALYSIS_MARKER = "<!-- analysis -->\n"

if __name__ == "__main__":
    main()
