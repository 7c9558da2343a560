"""An actor process for the tests that need real processes (test_processes.py):

    python worker.py DSN race OWNER AT ITEM…      from time AT (epoch seconds) on, advance each item
                                                  queued -> merged with one effect (instance: a free slot)
    python worker.py DSN named INSTANCE AT ITEM…  the same as instance INSTANCE; exit 2 if it is in use
    python worker.py DSN hold INSTANCE ITEM       acquire ITEM, say "holding", wait to be killed
"""

from __future__ import annotations

import sys
import time

from orch_lease import Actor, InstanceInUse


def advance(actor: Actor, at: float, items: list[str]) -> None:
    time.sleep(max(0.0, at - time.time()))  # racers start at once
    for item in items:
        with actor.try_lease(item) as lease:
            if not lease or lease.grant.stage != "queued":  # refused, or the stage the acquire read
                continue
            lease.connection.execute("INSERT INTO effect VALUES (%s, %s)", (item, actor.boot_id))
            time.sleep(0.01)
            lease.commit("queued", "merged")


def hold(dsn: str, instance: str, item: str) -> None:
    with Actor(dsn, instance) as actor, actor.try_lease(item) as lease:
        assert lease, lease
        print("holding", flush=True)
        time.sleep(120)


if __name__ == "__main__":
    dsn, mode, name, *rest = sys.argv[1:]
    if mode == "hold":
        hold(dsn, name, rest[0])
        sys.exit(0)
    try:
        with Actor(dsn, owner=name) if mode == "race" else Actor(dsn, name) as actor:
            advance(actor, float(rest[0]), rest[1:])
    except InstanceInUse:
        sys.exit(2)
