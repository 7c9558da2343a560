"""An orch_lease actor in Python (psycopg 3): owner-exclusion and atomic stage writes through plain SQL.

    python actor.py --dsn "host=... dbname=..." --instance billing-worker task-1 task-2 ...
    python actor.py --dsn "..." --listen 10        # print NOTIFY orch_lease alerts for 10 s

Each task moves queued -> merged with one irreversible effect ("merge the PR"), which this example
records in the table example_effect. Run several copies at once: each effect still happens once.
"""
import argparse
import json
import os
import sys
import time
import uuid

import psycopg

FROM_STAGE, TO_STAGE = "queued", "merged"


def merge_pull_request(db, task, actor):
    """The pretend irreversible effect. In real life: idempotent, or checked before it is redone."""
    db.execute("INSERT INTO example_effect (task_id, actor) VALUES (%s, %s)", (task, actor))
    time.sleep(0.02)


def advance(db, task, actor, pid, boot_id):
    """One attempt at one transition; returns what happened, for the summary."""
    for attempt in range(5):
        acquired, outcome, token, holder = db.execute(
            "SELECT acquired, outcome, token, holder FROM orch_lease.transition_lease_acquire(%s, %s, %s, %s)",
            (task, actor, pid, boot_id),
        ).fetchone()
        if outcome not in ("busy", "retry"):
            break
        # busy: another transaction is acquiring it right now; retry: a lost race (deadlock, serialization
        # failure) rolled the attempt back. Either way, ask again in a moment.
        time.sleep(0.01 * (attempt + 1))
    if outcome == "superseded":
        # A newer incarnation of this instance exists: this process is a zombie and must stop.
        sys.exit(f"{actor}: boot {boot_id} was superseded; exiting")
    if not acquired:
        # held: a live owner (holder) is doing it; busy or retry (still, after retries): the next round.
        return outcome
    # acquired, reclaimed (from a dead incarnation), disabled or out_of_scope (token NULL): go ahead,
    # but first re-check the stage under the lease: the transition may already have been made.
    (stage,) = db.execute("SELECT stage FROM example_task WHERE id = %s", (task,)).fetchone()
    if stage != FROM_STAGE:
        db.execute("SELECT orch_lease.transition_lease_release(%s, %s)", (task, token))
        return "already_done"
    merge_pull_request(db, task, actor)
    for attempt in range(5):
        applied, result, current = db.execute(
            "SELECT applied, outcome, current_stage FROM orch_lease.commit_stage_cas(%s, %s, %s, %s)",
            (task, token, FROM_STAGE, TO_STAGE),
        ).fetchone()
        if result != "retry":
            break
        # retry: the commit could not run (a lock timeout, a deadlock); the lease is still ours.
        time.sleep(0.01 * (attempt + 1))
    if result == "lease_lost":
        # Someone force-released or reclaimed our lease: nothing was written. Alert a human: the
        # effect ran, the stage did not move.
        print(f"{actor}: lease on {task} lost after the effect; stage not written", file=sys.stderr)
    elif result == "stage_mismatch":
        print(f"{actor}: {task} is already {current}; nothing written", file=sys.stderr)
    return "reclaimed+" + result if outcome == "reclaimed" else result


def run_actor(args):
    pid, boot_id = os.getpid(), f"{args.instance}-{uuid.uuid4()}"  # a fresh boot id per process start
    with psycopg.connect(args.dsn, autocommit=True) as db:  # each call is its own transaction
        recovered = db.execute(
            "SELECT work_item, owner, token FROM orch_lease.transition_lease_recover(%s, %s, %s)",
            (boot_id, args.instance, pid),
        ).fetchall()
        for work_item, owner, token in recovered:
            print(f"{args.instance}: recovered lease on {work_item} (token {token}) from a previous incarnation")
        outcomes = {}
        for task in args.items:
            outcome = advance(db, task, args.instance, pid, boot_id)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        print(f"{args.instance}: " + " ".join(f"{k}={v}" for k, v in sorted(outcomes.items())))


def listen(args):
    """The alerting bridge: every forced or stale reclaim arrives as JSON on channel orch_lease, in
    payload format version 2: {"version": 2, "events": [...]}, the takeovers of one statement."""
    with psycopg.connect(args.dsn, autocommit=True) as db:
        db.execute("LISTEN orch_lease")
        print("listening", flush=True)
        for note in db.notifies(timeout=args.listen):
            for event in json.loads(note.payload)["events"]:
                print(f"ALERT {event['event']} {event['work_item']} from {event['old_owner']} "
                      f"(token {event['old_token']}): {event['reason']}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--instance", default="python-actor")
    parser.add_argument("items", nargs="*", help="the tasks to advance")
    parser.add_argument("--listen", type=float, help="print alerts for this many seconds")
    arguments = parser.parse_args()
    listen(arguments) if arguments.listen else run_actor(arguments)
