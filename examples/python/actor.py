"""An orch_lease actor in Python, on the orch-lease client package (clients/python).

    pip install ./clients/python                               # from the repository's root
    psql -d app -f examples/setup.sql                          # once: extension, tables, task-1 … task-12
    python examples/python/actor.py --dsn "$DSN" task-1 task-2 # advance them; run several copies at once
    python examples/python/actor.py --dsn "$DSN" --task-table jobs job-1   # once several tables are registered
    python examples/python/actor.py --dsn "$DSN" --listen 60   # print NOTIFY orch_lease alerts

Each task moves queued -> merged with one irreversible effect ("merge the PR"), recorded in the table
example_effect. Run several copies at once: each effect still happens once. Each copy is its own instance
(`python-actor-<host>-<slot>`, the first slot no live copy holds), so copies never supersede each other,
and a copy started after a crash takes the crashed one's slot and recovers its leases. `--instance NAME`
names it instead; a second live copy with the same name is refused. Exit status: 0, or 1 if an effect
failed (its lease released, the others went on), 2 for a name in use, 3 when superseded.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter

import orch_lease
from orch_lease import Actor, CasOutcome

FROM_STAGE, TO_STAGE = "queued", "merged"

def merge_pull_request(actor: Actor, task: str) -> None:
    """The pretend irreversible effect. In real life: idempotent, or checked before it is redone."""
    actor.connection.execute("INSERT INTO example_effect (task_id, actor) VALUES (%s, %s)", (task, actor.instance))
    time.sleep(0.02)


def advance(actor: Actor, task: str, task_table: str | None = None) -> str:
    """One attempt at one transition; what happened, for the summary. Whatever happens inside the block
    (a missing task, a failed effect, a lost race), leaving it releases a lease that was not committed."""
    with actor.try_lease(task, task_table=task_table) as lease:
        if not lease:
            # Refused, an outcome like the commit's: held (a live owner is doing it), busy / retry after
            # every attempt (the next round), not_found (no task has this id). Nothing was granted.
            return lease.outcome.value
        # The stage the acquire read after the grant: the transition may already have been made.
        # Two round trips a cycle: acquire, then (after the effect) commit.
        if lease.grant.stage != FROM_STAGE:
            return "already_done"
        merge_pull_request(actor, task)
        result = lease.commit(FROM_STAGE, TO_STAGE)
        if result.outcome is CasOutcome.LEASE_LOST:
            # Someone force-released or reclaimed our lease: nothing was written. Alert a human: the
            # effect ran, the stage did not move.
            print(f"{actor.instance}: lease on {task} lost after the effect; stage not written", file=sys.stderr)
        elif result.outcome is CasOutcome.STAGE_MISMATCH:
            print(f"{actor.instance}: {task} is already {result.current_stage}; nothing written", file=sys.stderr)
        reclaimed = lease.grant.outcome is orch_lease.AcquireOutcome.RECLAIMED
        return ("reclaimed+" if reclaimed else "") + result.outcome.value


def run_actor(args: argparse.Namespace) -> int:
    try:
        actor = Actor(args.dsn, args.instance, owner="python-actor")
        recovered = actor.start()
    except orch_lease.InstanceInUse as error:
        print(f"python-actor: {error}", file=sys.stderr)
        return 2
    with actor:
        for lease in recovered:
            print(f"{actor.instance}: recovered lease on {lease.work_item} (token {lease.token}) from a previous incarnation")
        outcomes: Counter[str] = Counter()
        for task in args.items:
            try:
                outcomes[advance(actor, task, args.task_table)] += 1
            except orch_lease.Superseded as error:
                print(f"{actor.instance}: {error}; exiting", file=sys.stderr)
                return 3
            except Exception as error:  # the effect or the database failed: report it, go on
                print(f"{actor.instance}: {task} failed: {error!r} (its lease released)", file=sys.stderr)
                outcomes["error"] += 1
        print(f"{actor.instance}: " + " ".join(f"{k}={v}" for k, v in sorted(outcomes.items())))
        return 1 if outcomes["error"] else 0


def listen(args: argparse.Namespace) -> int:
    """Every forced or stale reclaim arrives on channel orch_lease (see also the orch-lease-bridge command)."""
    listener = orch_lease.Listener(args.dsn, duration=args.listen, on_listen=lambda: print("listening", flush=True))
    for event in listener:
        print(f"ALERT {event.event.value} ({event.outcome}) {event.work_item} from {event.old_owner} "
              f"(token {event.old_token}): {event.reason}", flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--dsn", required=True, help='libpq connection string, e.g. "host=/var/run/postgresql dbname=app"')
    parser.add_argument("--instance", help="this process's instance name (default: python-actor-<host>-<free slot>)")
    parser.add_argument("--listen", type=float, help="print alerts for this many seconds")
    parser.add_argument(
        "--task-table",
        help="the registered table the tasks are rows of (needed once several are registered; 0.5.0)",
    )
    parser.add_argument("items", nargs="*", help="the tasks to advance")
    args = parser.parse_args()
    return listen(args) if args.listen else run_actor(args)


if __name__ == "__main__":
    sys.exit(main())
