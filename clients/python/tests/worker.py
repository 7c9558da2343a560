"""An actor process for the tests that need real processes (test_processes.py):

    python worker.py DSN race OWNER AT ITEM…  from time AT (epoch seconds) on, advance each item
                                              queued -> merged with one effect
    python worker.py DSN hold INSTANCE ITEM   acquire ITEM, say "holding", wait to be killed
"""

from __future__ import annotations

import sys
import time

from orch_lease import Actor, LeaseNotAcquired


def race(dsn: str, owner: str, at: float, items: list[str]) -> None:
    with Actor(dsn, owner=owner) as actor:
        time.sleep(max(0.0, at - time.time()))  # both racers start at once
        for item in items:
            try:
                with actor.lease(item) as lease:
                    row = actor.connection.execute("SELECT stage FROM task WHERE id = %s", (item,)).fetchone()
                    if row is None or row[0] != "queued":
                        continue
                    actor.connection.execute("INSERT INTO effect VALUES (%s, %s)", (item, actor.instance))
                    time.sleep(0.005)
                    lease.commit("queued", "merged")
            except LeaseNotAcquired:
                pass


def hold(dsn: str, instance: str, item: str) -> None:
    with Actor(dsn, instance) as actor, actor.lease(item):
        print("holding", flush=True)
        time.sleep(120)


if __name__ == "__main__":
    dsn, mode, name, *items = sys.argv[1:]
    if mode == "race":
        race(dsn, name, float(items[0]), items[1:])
    else:
        hold(dsn, name, items[0])
