"""Real processes: two racing over the same items, and one SIGKILLed while it holds a lease."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
from conftest import one

from orch_lease import Actor, CasOutcome, InstanceInUse

WORKER = str(Path(__file__).with_name("worker.py"))
Conn = psycopg.Connection[tuple[Any, ...]]


def test_two_processes_racing_duplicate_no_effect(dsn: str, admin: Conn) -> None:
    items = [str(i) for i in range(1, 41)]
    for _ in range(2):  # the second round finds every task merged and does nothing
        at = str(time.time() + 2)
        workers = [subprocess.Popen([sys.executable, WORKER, dsn, "race", f"racer{n}", at, *items]) for n in (1, 2)]
        assert [w.wait(timeout=120) for w in workers] == [0, 0]
        assert one(admin, "SELECT count(*) || '/' || count(DISTINCT task_id) FROM effect") == "40/40"
    assert one(admin, "SELECT count(*) FROM task WHERE stage <> 'merged'") == 0
    assert one(admin, "SELECT count(*) FROM orch_lease.transition_lease") == 0
    # both really took part, each as its own instance
    assert one(admin, "SELECT count(DISTINCT actor) FROM effect") == 2


def test_one_instance_name_in_three_processes_duplicates_nothing(dsn: str, admin: Conn) -> None:
    """Issue #21: copies started one after another with one instance name superseded each other mid-run
    and redid effects (with the claim off, claim=False, 3 copies over 60 tasks gave 61 and 62 effects).
    Now a later copy waits for the claim and is refused while the first runs."""
    items = [str(i) for i in range(1, 41)]
    copies = []
    for _ in range(3):
        copies.append(subprocess.Popen([sys.executable, WORKER, dsn, "named", "shared", "0", *items]))
        time.sleep(0.2)
    codes = sorted(copy.wait(timeout=120) for copy in copies)
    assert one(admin, "SELECT count(*) || '/' || count(DISTINCT task_id) FROM effect") == "40/40"
    assert one(admin, "SELECT count(*) FROM task WHERE stage <> 'merged'") == 0
    # each later copy was refused (2) or, having waited for the claim, found every task done (0): none
    # was superseded mid-run (a Superseded traceback, 1)
    assert set(codes) <= {0, 2}, codes


def test_a_killed_process_is_recovered_by_its_successor(dsn: str, admin: Conn) -> None:
    victim = subprocess.Popen([sys.executable, WORKER, dsn, "hold", "merger-0", "17"], stdout=subprocess.PIPE, text=True)
    assert victim.stdout is not None and victim.stdout.readline().strip() == "holding"
    victim.kill()
    victim.wait()
    assert one(admin, "SELECT liveness FROM orch_lease.transition_lease_status WHERE work_item = '17'") == "live"
    successor = Actor(dsn, "merger-0")
    for _ in range(100):  # until the server has noticed the victim's session is gone (its claim with it)
        try:
            recovered = successor.start()
            break
        except InstanceInUse:
            time.sleep(0.1)
    with successor:
        assert [lease.work_item for lease in recovered] == ["17"]
        assert one(admin, "SELECT count(*) FROM orch_lease.transition_lease") == 0
        with successor.lease(17) as lease:
            assert lease.commit("queued", "merged").outcome is CasOutcome.APPLIED
    assert one(admin, "SELECT outcome FROM orch_lease.lease_event WHERE event = 'reclaimed'") == "recovered"
