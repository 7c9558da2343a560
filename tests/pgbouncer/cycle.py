"""The whole actor pattern through a transaction pooler, with psycopg 3 as an application would use it.

    python cycle.py --dsn DSN [--actors 8] [--items 20] [--seconds 5] [--prepare-threshold default|none]

ACTORS threads, each with its own connection (autocommit: every call its own transaction), run
recover, then acquire (which says the stage) -> commit_stage_cas (or, one time in five, release without a
commit) over ITEMS tasks of pool_task, while an operator thread force-releases a held lease now and then.
Then, over one connection: every applied commit moved its task by exactly one stage, no lease is left
but the ones force-released from under an actor (those commits answer lease_lost), nothing failed.

psycopg 3 prepares a query server-side (a named statement) once it has run prepare_threshold times (5 by
default). A transaction pooler hands the next transaction to any server connection, where that statement
does not exist: `--prepare-threshold default` reports the first such error as `error SQLSTATE message`
and exits 3; `none` (prepare_threshold=None: unnamed statements only) is what works.
"""
import argparse
import os
import random
import sys
import threading
import time

import psycopg

failures = []
applied = {}  # task -> commits acknowledged as applied
lease_lost = [0]
released = [0]
forced = [0]
lock = threading.Lock()


crashes = []  # any other exception of a thread: main re-raises the first once every thread is done


def recording_errors(work):
    """Runs a thread's work; a database error is recorded (the first one is the run's answer), and any
    other exception is kept for main to re-raise: a thread that dies must fail the run, not shrink it."""
    def run(*args):
        try:
            work(*args)
        except psycopg.Error as error:
            with lock:
                failures.append(f"error {error.sqlstate} {str(error).strip()}")
        except BaseException as error:
            with lock:
                crashes.append(error)
    return run


@recording_errors
def actor(dsn, threshold, instance, items, deadline):
    boot = f"{instance}-{os.getpid()}"
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=threshold) as db:
        db.execute("SELECT count(*) FROM orch_lease.transition_lease_recover(%s, %s, %s)",
                   (boot, instance, os.getpid()))
        rng = random.Random(instance)
        while time.time() < deadline:
            task = f"task-{rng.randrange(items)}"
            acquired, token, stage = db.execute(
                "SELECT acquired, token, stage FROM orch_lease.transition_lease_acquire(%s, %s, %s, %s)",
                (task, instance, os.getpid(), boot)).fetchone()
            if not acquired:
                continue
            # The effect takes a moment: the operator's force_release (below) needs a lease to find still
            # held, which a cycle with no effect almost never leaves it.
            time.sleep(0.01)
            if rng.randrange(5) == 0:
                db.execute("SELECT orch_lease.transition_lease_release(%s, %s)", (task, token))
                with lock:
                    released[0] += 1
                continue
            (outcome,) = db.execute(
                "SELECT outcome FROM orch_lease.commit_stage_cas(%s, %s, %s, %s)",
                (task, token, stage, str(int(stage) + 1))).fetchone()
            with lock:
                if outcome == "applied":
                    applied[task] = applied.get(task, 0) + 1
                elif outcome == "lease_lost":
                    lease_lost[0] += 1
                else:
                    failures.append(f"commit {task} under token {token}: {outcome}")


@recording_errors
def operator(dsn, threshold, deadline):
    """Someone on call force-releasing whatever lease is held, a few times a second."""
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=threshold) as db:
        while time.time() < deadline:
            row = db.execute("SELECT work_item, token FROM orch_lease.transition_lease LIMIT 1").fetchone()
            if row and db.execute("SELECT orch_lease.transition_lease_force_release(%s, %s, 'pooled test')",
                                  row).fetchone()[0]:
                forced[0] += 1
            time.sleep(0.05)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--actors", type=int, default=8)
    parser.add_argument("--items", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--prepare-threshold", choices=["default", "none"], default="default")
    args = parser.parse_args()
    threshold = 5 if args.prepare_threshold == "default" else None
    with psycopg.connect(args.dsn, autocommit=True) as db:
        db.execute("DROP TABLE IF EXISTS pool_task; CREATE TABLE pool_task (id text PRIMARY KEY, stage text NOT NULL)")
        db.execute("INSERT INTO pool_task SELECT 'task-' || i, '0' FROM generate_series(0, %s) i", (args.items - 1,))
        db.execute("SELECT orch_lease.register_task_table('pool_task')")
        db.execute("TRUNCATE orch_lease.transition_lease")
    deadline = time.time() + args.seconds
    threads = [threading.Thread(target=actor, args=(args.dsn, threshold, f"pooled-{args.prepare_threshold}-{n}",
                                                    args.items, deadline))
               for n in range(args.actors)]
    threads.append(threading.Thread(target=operator, args=(args.dsn, threshold, deadline)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if crashes:
        raise crashes[0]
    if failures:
        print(failures[0])
        sys.exit(3)
    with psycopg.connect(args.dsn, autocommit=True) as db:
        stages = dict(db.execute("SELECT id, stage::int FROM pool_task").fetchall())
        left = db.execute("SELECT count(*) FROM orch_lease.transition_lease").fetchone()[0]
    wrong = [task for task, stage in stages.items() if stage != applied.get(task, 0)]
    print(f"pgbouncer: {sum(applied.values())} commits applied, {released[0]} released, {forced[0]} force-released "
          f"({lease_lost[0]} commits answered lease_lost), {len(wrong)} tasks whose stage is not their commit "
          f"count, {left} leases left")
    if wrong or left or not applied or not forced[0]:
        sys.exit(1)


if __name__ == "__main__":
    main()
