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
CLIENTS = [int(c) for c in os.environ.get("BENCH_CLIENTS", "1,4,8,16,32").split(",")]
TASKS = 100_000
# The cycle of issue #15: three round trips on every side (read the stage, acquire, commit). orch_lease
# runs with its default settings (orch_lease.history = changes: two history rows per cycle); the raw floor
# makes the same three round trips in hand-written SQL without a history, and with the same two history
# rows (the floor of anything that keeps orch_lease's history); the twin writes its history.
CYCLES = {"orch_lease": "cycle_orch_lease.sql", "raw floor": "cycle_raw.sql",
          "raw floor + history": "cycle_raw_history.sql", "PL/pgSQL twin": "cycle_twin.sql"}
# orch_lease's own cycle since 0.5.0: two round trips (the grant says the stage), measured beside the
# three-round-trip floors above, which are what an actor hand-writes without it.
TWO_TRIPS = {"orch_lease, 2 trips": "cycle_orch_lease.sql"}
# The two-round-trip cycle (acquire, then commit) of the earlier runs, beside its floors: the same scripts
# without the stage read.
CYCLES2 = {"orch_lease, 2 trips": "cycle_orch_lease.sql", "raw floor + history, 2 trips": "cycle_raw_history.sql",
           "raw floor, 2 trips": "cycle_raw.sql", "advisory lock": "cycle_advisory.sql"}
HISTORY_SIZES = [10_000, 100_000, 1_000_000, int(os.environ.get("BENCH_HISTORY_MAX", "10000000"))]


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
            ALTER TABLE raw_lease ALTER COLUMN task_table SET DEFAULT 'bench_task'::regclass;
            CREATE TABLE raw_event (LIKE orch_lease.lease_event INCLUDING ALL);
            CREATE TABLE hot_guard (holders int, max_seen int, grants bigint);
            INSERT INTO hot_guard VALUES (0, 0, 0);
            SELECT orch_lease.register_task_table('bench_task');
        """ % TASKS)
        db.execute("VACUUM ANALYZE bench_task")
        db.execute((HERE / "twin.sql").read_text())
        db.execute("SELECT count(*) FROM orch_lease.transition_lease_recover('bench-boot', 'bench', 1)")


def three_trips(script):
    """Issue #15's cycle: bench/scripts/`script` (acquire, then commit) after a read of the item's stage,
    written to target/bench/ once."""
    first, rest = (HERE / "scripts" / script).read_text().split("\n", 1)
    path = HERE.parent / "target" / "bench" / "cycle3" / script
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{first}\nSELECT stage FROM bench_task WHERE id = :item;\n{rest}")
    return path


def cycle_scripts(sync):
    """The cycles measured at synchronous_commit `sync`, by name: issue #15's three-trip ones, and with
    sync off the two-trip ones of earlier runs."""
    three = {name: three_trips(script) for name, script in CYCLES.items()}
    return {**three, **TWO_TRIPS, **(CYCLES2 if sync == "off" else {})}


def pgbench_run(script, clients, synchronous_commit="on", seconds=SECONDS, options=""):
    """(transactions per second, transactions) of one pgbench run (each script run is one transaction).
    `script` names a file of bench/scripts, or is a path."""
    env = dict(os.environ, PGOPTIONS=f"-c synchronous_commit={synchronous_commit} {options}")
    out = subprocess.run(
        ["pgbench", "-n", "-M", "prepared", "-c", str(clients), "-j", str(min(clients, 2)),
         "-T", str(seconds), "-f", str(HERE / "scripts" / script), "postgres"],
        env=env, capture_output=True, text=True, check=True).stdout
    tps = done = None
    for line in out.splitlines():
        if line.startswith("tps ="):
            tps = float(line.split()[2])
        if line.startswith("number of transactions actually processed:"):
            done = int(line.split(":")[1].split("/")[0])
    if tps is None or done is None:
        raise RuntimeError(out)
    return tps, done


def pgbench(script, clients, synchronous_commit="on", seconds=SECONDS):
    """Transactions per second of one pgbench run."""
    return pgbench_run(script, clients, synchronous_commit, seconds)[0]


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
    """recover() of n stale leases against a bare DELETE of the same rows, and against that DELETE
    writing the same history rows in the same statement (medians of RUNS, in ms)."""
    rows = []
    with connect() as db:
        for n in (1_000, 10_000, 100_000):
            recover, delete, logged = [], [], []
            for run in range(RUNS):
                stale_leases(db, n)
                recover.append(timed(db, f"SELECT count(*) FROM orch_lease.transition_lease_recover("
                                         f"'new-boot-{n}-{run}', 'recover-bench', 2)"))
                stale_leases(db, n)
                delete.append(timed(db, "DELETE FROM orch_lease.transition_lease WHERE owner_boot_id = 'old-boot'"))
                stale_leases(db, n)
                logged.append(timed(db, """
                    WITH gone AS (DELETE FROM orch_lease.transition_lease WHERE owner_boot_id = 'old-boot' RETURNING *)
                    INSERT INTO orch_lease.lease_event (event, outcome, work_item, old_owner, old_token, old_boot_id,
                                                        reason, by_role)
                    SELECT 'reclaimed', 'recovered', work_item, owner, token, owner_boot_id, 'recover', current_user
                      FROM gone"""))
            rows.append((n, statistics.median(recover), statistics.median(delete), statistics.median(logged)))
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
        db.execute("""INSERT INTO orch_lease.lease_event (event, outcome, work_item, old_owner, old_token, reason)
                      SELECT 'forced', 'forced', 'fill-' || i, 'filler', i, 'bench' FROM generate_series(1, 1000000) i""")
        db.execute("VACUUM ANALYZE orch_lease.lease_event")
        rows.append(("1,000,000 leases + 1,000,000 events", measure("acquire_release.sql", 8)))
        db.execute("TRUNCATE orch_lease.transition_lease, orch_lease.lease_event")
    return rows


def rss_kb(pid):
    """(resident set, its private part) in kB: VmRSS also counts the shared buffers the backend has
    touched, which grow with the tables it writes; RssAnon is the backend's own memory."""
    fields = {line.split(":")[0]: int(line.split()[1])
              for line in Path(f"/proc/{pid}/status").read_text().splitlines()
              if line.startswith(("VmRSS:", "RssAnon:"))}
    return fields["VmRSS"], fields["RssAnon"]


def memory_bench():
    """Backend resident memory before and after 1M calls of each function in one session, in
    transactions of 1,000 calls (a session lives across transactions; one transaction of a million
    calls would measure PostgreSQL's own per-transaction bookkeeping instead)."""
    calls = {
        "transition_lease_acquire (held)":
            "orch_lease.transition_lease_acquire('-2', 'other', 1, 'bench-boot')",
        "transition_lease_release (stale token)": "orch_lease.transition_lease_release('-2', -g)",
        "transition_lease_force_release (nothing held)": "orch_lease.transition_lease_force_release('-3')",
        "update_task_stage_cas (stage_mismatch)":
            "orch_lease.update_task_stage_cas((g % 1000 + 1)::text, 'done', 'queued')",
        "commit_stage_cas (lease_lost)": "orch_lease.commit_stage_cas('1', -g, 'queued', 'queued')",
        "transition_lease_recover (idempotent)": "orch_lease.transition_lease_recover('bench-boot', 'bench')",
    }
    loop = "DO $$ BEGIN FOR g IN 1..{n} LOOP PERFORM {call}; IF g % 1000 = 0 THEN COMMIT; END IF; END LOOP; END $$"
    rows = []
    with connect() as db:
        db.execute("SELECT orch_lease.transition_lease_acquire('-2', 'holder', 1, 'bench-boot')")
        pid = db.execute("SELECT pg_backend_pid()").fetchone()[0]
        for name, call in calls.items():
            db.execute(loop.format(n=10_000, call=call))
            before = rss_kb(pid)
            db.execute(loop.format(n=1_000_000, call=call))
            rows.append((name, before, rss_kb(pid)))
        db.execute("TRUNCATE orch_lease.transition_lease")
    return rows


def wal_lsn(db):
    return db.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]


def wal_bytes(db, since):
    return db.execute("SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), %s)", (since,)).fetchone()[0]


def hot_bench():
    """Every client on one item, with the default history and with history = all (0.3.0's default,
    which recorded every refusal): attempts, grants, refusals and the WAL written per attempt."""
    rows = []
    with connect() as db:
        for history in ("changes", "all"):
            for clients in CLIENTS:
                db.execute("UPDATE hot_guard SET holders = 0, max_seen = 0, grants = 0")
                db.execute("CHECKPOINT")  # full-page images after a checkpoint would weigh on the first run only
                since = wal_lsn(db)
                tps, attempts = pgbench_run("hot_item.sql", clients, options=f"-c orch_lease.history={history}")
                wal = wal_bytes(db, since)
                grants, max_seen = db.execute("SELECT grants, max_seen FROM hot_guard").fetchone()
                rows.append((history, clients, tps, grants / SECONDS, (attempts - grants) / SECONDS,
                             max(max_seen - 1, 0), float(wal) / attempts))
        db.execute("TRUNCATE orch_lease.transition_lease")
    return rows


def refusal_bench():
    """Refusals alone: 4 clients ask for an item another owner holds (`held`), with the default history
    and with history = all. WAL bytes per refusal and refusals per second."""
    rows = []
    with connect() as db:
        db.execute("TRUNCATE orch_lease.transition_lease")
        db.execute("SELECT orch_lease.transition_lease_acquire('0', 'holder', 1, 'bench-boot')")
        for history in ("changes", "all"):
            db.execute("CHECKPOINT")
            since = wal_lsn(db)
            tps, refusals = pgbench_run("refusal.sql", 4, options=f"-c orch_lease.history={history}")
            rows.append((history, tps, float(wal_bytes(db, since)) / refusals))
        db.execute("TRUNCATE orch_lease.transition_lease")
    return rows


def scrape_bench():
    """transition_lease_metrics() (median of 9 calls, ms) with 10,000 to BENCH_HISTORY_MAX history rows,
    beside the count over the whole history that 0.3.0's metrics made on every scrape."""
    rows = []
    with connect() as db:
        db.execute("TRUNCATE orch_lease.lease_event")
        have = 0
        for size in HISTORY_SIZES:
            db.execute("""INSERT INTO orch_lease.lease_event (event, outcome, work_item, old_owner, old_token, reason)
                          SELECT 'forced', 'forced', 'fill-' || i, 'filler', i, 'bench'
                            FROM generate_series(%s::bigint, %s::bigint) i""", (have + 1, size))
            have = size
            db.execute("VACUUM ANALYZE orch_lease.lease_event")
            scrape = statistics.median(timed(db, "SELECT * FROM orch_lease.transition_lease_metrics()")
                                       for _ in range(9))
            full = statistics.median(timed(db, "SELECT event, outcome, count(*) FROM orch_lease.lease_event "
                                               "GROUP BY event, outcome") for _ in range(3))
            rows.append((size, scrape, full))
        db.execute("TRUNCATE orch_lease.lease_event")
    return rows


def warm_up():
    """One short run of every cycle script after a checkpoint, so that no side is the first to pay for the
    setup's writes (full-page images, dirty buffers, cold caches)."""
    with connect() as db:
        db.execute("CHECKPOINT")
    for script in cycle_scripts("off").values():
        pgbench(script, 4, seconds=1)


def main():
    prepare()
    warm_up()
    print(f"{RUNS} runs of {SECONDS} s per point; clients {CLIENTS}; {os.cpu_count()} cores")
    ceiling = {c: measure("select1.sql", c) for c in CLIENTS}
    cycle = {}
    for sync in ("on", "off"):
        for name, script in cycle_scripts(sync).items():
            for clients in CLIENTS:
                cycle[(sync, name, clients)] = measure(script, clients, sync)
                print(f"cycle sync={sync:<3} {name:<14} {clients:>2} clients: {cycle[(sync, name, clients)][0]:9.0f} tps",
                      flush=True)
    cas = {(name, c): measure(script, c) for name, script in
           (("orch_lease", "cas_orch_lease.sql"), ("bare UPDATE", "cas_raw.sql")) for c in CLIENTS}
    hot = hot_bench()
    refusals = refusal_bench()
    recover = recover_bench()
    scrape = scrape_bench()
    scale = scale_bench()
    memory = memory_bench()
    library = subprocess.run(["pg_config", "--pkglibdir"], capture_output=True, text=True).stdout.strip()
    so_bytes = os.path.getsize(os.path.join(library, "orch_lease.so"))
    with connect() as db:
        version = db.execute("SELECT extversion FROM pg_extension WHERE extname = 'orch_lease'").fetchone()[0]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    write_report(ceiling, cycle, cas, hot, refusals, recover, scrape, scale, memory, so_bytes,
                 f"{version} (commit {commit})")


def ratio(a, b):
    return a / b if b else float("nan")


def write_report(ceiling, cycle, cas, hot, refusals, recover, scrape, scale, memory, so_bytes, version):
    DOCS.joinpath("img").mkdir(parents=True, exist_ok=True)
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=False)
    for axis, sync in zip(axes, ("on", "off")):
        for name in [*CYCLES, *TWO_TRIPS]:
            medians = [cycle[(sync, name, c)][0] for c in CLIENTS]
            lows = [cycle[(sync, name, c)][0] - cycle[(sync, name, c)][1] for c in CLIENTS]
            highs = [cycle[(sync, name, c)][2] - cycle[(sync, name, c)][0] for c in CLIENTS]
            axis.errorbar(CLIENTS, medians, yerr=[lows, highs], marker="o", capsize=3, label=name)
        axis.set_xscale("log", base=2)
        axis.set_xticks(CLIENTS, [str(c) for c in CLIENTS])
        axis.set_xlabel("clients")
        axis.set_ylabel("transition cycles per second")
        axis.set_title(f"transition cycle, synchronous_commit = {sync}")
        axis.grid(alpha=0.3)
    axes[0].legend()
    figure.tight_layout()
    figure.savefig(DOCS / "img" / "bench-cycle.png", dpi=100)

    cores = os.cpu_count()
    fmt = lambda m: f"{m[0]:,.0f} ({m[1]:,.0f}–{m[2]:,.0f})"
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`bench/run.py`); every figure below comes from one run on one throwaway",
        f"cluster, side by side, of orch_lease {version}. Machine: {cores} cores (shared with other work),",
        f"{platform.machine()}, PostgreSQL 15 (Debian), orch_lease release build. Each point is the median of",
        f"{RUNS} pgbench runs of {SECONDS} s (`-M prepared`), with min–max. Tuned cluster: `shared_buffers=512MB`,",
        "`max_connections=200`, `checkpoint_timeout=30min`, `max_wal_size=4GB`. Ratios are orch_lease ÷ the",
        "baseline at the same client count: above 1 is faster. orch_lease runs with its default settings.",
        "",
        "![Full transition cycle](img/bench-cycle.png)",
        "",
        "## 1. Full transition cycle on distinct items",
        "",
        "One cycle, on a random item among 100,000: three round trips on every side (issue #15's cycle), each",
        "statement its own transaction. What each side does per cycle:",
        "",
        "| side | round trips | durable writes per cycle |",
        "|---|---:|---|",
        "| **orch_lease** (`cycle_orch_lease.sql`, default `orch_lease.history = changes`) | 3 | read the stage; acquire: lease row inserted, history row, count; commit: lease row deleted, stage updated, history row, count |",
        "| **raw floor** (`cycle_raw.sql`) | 3 | read the stage; `INSERT … ON CONFLICT DO NOTHING RETURNING token`; one statement that updates the stage where it is still the expected one and deletes the lease row by token. No history |",
        "| **raw floor + history** (`cycle_raw_history.sql`) | 3 | the raw floor, its second and third statements also inserting the history row of the grant and of the CAS (a copy of `lease_event` with its indexes): what keeping orch_lease's history costs at least |",
        "| **PL/pgSQL twin** (`bench/twin.sql`, `cycle_twin.sql`) | 3 | read the stage; the same writes as orch_lease with a history row per grant and CAS; static SQL, planned once per session |",
        "| **orch_lease, 2 trips** (`cycle_orch_lease.sql` as it is, 0.5.0) | 2 | acquire, which says the stage read after the grant; commit from that stage: orch_lease's own cycle |",
        "",
    ]
    for sync in ("on", "off"):
        lines += [f"synchronous_commit = {sync}:", "",
                  "| clients | SELECT 1 ceiling | orch_lease | raw floor | raw + history | twin | ÷ raw floor | "
                  "÷ raw + history | ÷ twin | raw + history ÷ raw | orch_lease, 2 trips | 2 trips ÷ raw floor |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for c in CLIENTS:
            ours, raw, raw_history, twin = (cycle[(sync, n, c)] for n in CYCLES)
            two = cycle[(sync, "orch_lease, 2 trips", c)]
            lines.append(f"| {c} | {ceiling[c][0]:,.0f} | {fmt(ours)} | {fmt(raw)} | {fmt(raw_history)} | "
                         f"{fmt(twin)} | {ratio(ours[0], raw[0]):.2f} | {ratio(ours[0], raw_history[0]):.2f} | "
                         f"{ratio(ours[0], twin[0]):.2f} | {ratio(raw_history[0], raw[0]):.2f} | {fmt(two)} | "
                         f"{ratio(two[0], raw[0]):.2f} |")
        lines.append("")
    lines += ["### The two-round-trip cycle (acquire, then commit) beside two-round-trip floors (synchronous_commit off)", "",
              "orch_lease's own cycle, beside floors that also skip the stage read: with a history row per",
              "grant and CAS (`cycle_raw_history.sql`), without (`cycle_raw.sql`), and a session advisory lock",
              "(`cycle_advisory.sql`: the stage only, no durable lease, not the same guarantee).", ""]
    lines += ["| clients | orch_lease | raw + history | raw | advisory | ÷ raw + history | ÷ raw | ÷ advisory |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in CLIENTS:
        ours, raw_history, raw, adv = (cycle[("off", n, c)] for n in CYCLES2)
        lines.append(f"| {c} | {fmt(ours)} | {fmt(raw_history)} | {fmt(raw)} | {fmt(adv)} | "
                     f"{ratio(ours[0], raw_history[0]):.2f} | {ratio(ours[0], raw[0]):.2f} | "
                     f"{ratio(ours[0], adv[0]):.2f} |")
    lines.append("")
    lines += ["## 2. Hot item: every client contends on one item", "",
              "Each script run asks for the lease on the same item; a grant bumps a guard row's holder count,",
              "records the maximum ever seen, and commits. Overlapping grants = maximum holders − 1. WAL is",
              "`pg_current_wal_insert_lsn()` before and after the run, divided by the attempts (grants and",
              "refusals); `all` is `orch_lease.history = all`, 0.3.0's default, which records every refusal.", "",
              "| history | clients | acquire attempts/s | grants/s | refusals/s | overlapping grants | WAL bytes per attempt |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for history, c, tps, grants, refused, overlaps, wal in hot:
        lines.append(f"| {history} | {c} | {tps:,.0f} | {grants:,.0f} | {refused:,.0f} | {overlaps} | {wal:,.0f} |")
    lines += ["", "Refusals alone: 4 clients ask for an item another owner holds (every answer `held`).", "",
              "| history | refusals/s | WAL bytes per refusal |", "|---|---:|---:|"]
    for history, tps, wal in refusals:
        lines.append(f"| {history} | {tps:,.0f} | {wal:,.0f} |")
    lines += ["", "## 3. CAS alone against the bare conditional UPDATE", "",
              "One round trip each; `update_task_stage_cas` also writes a history row and a count, the bare",
              "UPDATE writes the stage only.", "",
              "| clients | update_task_stage_cas | bare `UPDATE … WHERE stage = $expected` | ratio |",
              "|---:|---:|---:|---:|"]
    for c in CLIENTS:
        ours, bare = cas[("orch_lease", c)], cas[("bare UPDATE", c)]
        lines.append(f"| {c} | {ours[0]:,.0f} | {bare[0]:,.0f} | {ratio(ours[0], bare[0]):.2f} |")
    lines += ["", "## 4. recover() of stale leases against a bare DELETE of the same rows", "",
              "recover also supersedes the old boot, logs one `reclaimed` event per lease, announces them",
              "(payload format version 2: the statement's events in as few NOTIFYs as hold them) and returns",
              "every row; the DELETE does none of that. The last columns are that DELETE writing one history row",
              "per lease in the same statement (no count, no announcement, nothing returned): the floor of any",
              "recover that keeps the history.", "",
              "| stale leases | recover (ms) | bare DELETE (ms) | recover ÷ DELETE | DELETE + history rows (ms) | recover ÷ that |",
              "|---:|---:|---:|---:|---:|---:|"]
    for n, rec, dele, logged in recover:
        lines.append(f"| {n:,} | {rec:,.1f} | {dele:,.1f} | {ratio(rec, dele):.2f} | {logged:,.1f} | "
                     f"{ratio(rec, logged):.2f} |")
    lines += ["", "## 5. Metrics scrape against the size of the history", "",
              "`transition_lease_metrics()` reads the running counts (a sequence per event and outcome since",
              "0.5.0; before, `event_count`), never the history; the last column is the count over the whole history that every",
              "scrape made before 0.4.0 (median of 3).", "",
              "| history rows | scrape (ms) | count over the history (ms) |", "|---:|---:|---:|"]
    for size, ms, full in scrape:
        lines.append(f"| {size:,} | {ms:,.2f} | {full:,.1f} |")
    lines += ["", "## 6. Scale: acquire + release at 8 clients with the lease table full", "",
              "| lease table | cycles/s | ÷ first row |", "|---|---:|---:|"]
    for label, m in scale:
        lines.append(f"| {label} | {m[0]:,.0f} ({m[1]:,.0f}–{m[2]:,.0f}) | {ratio(m[0], scale[0][1][0]):.2f} |")
    lines += ["", "## 7. Memory: backend resident set before and after 1,000,000 calls in one session", "",
              "RSS (`VmRSS`) includes the shared buffers the backend touched, which grow with the history and the",
              "counter rows it writes; the private part (`RssAnon`) is what a leak would grow.", "",
              "| function (path) | RSS before (kB) | RSS after (kB) | private before (kB) | private after (kB) | private growth |",
              "|---|---:|---:|---:|---:|---:|"]
    for name, (before, private_before), (after, private_after) in memory:
        lines.append(f"| {name} | {before:,} | {after:,} | {private_before:,} | {private_after:,} | "
                     f"{ratio(private_after, private_before):.3f}× |")
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
