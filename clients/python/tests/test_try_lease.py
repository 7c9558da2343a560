"""One error style (#31): acquire's refusals are outcomes returned like the commit's (`try_lease` gives
a Refused), exceptions only for what is no item's outcome; the deprecated `lease()` still raises, and
warns; mypy --strict refuses an effect run without looking at the answer."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import leases, one

from orch_lease import (
    AcquireOutcome,
    Actor,
    AsyncActor,
    CasOutcome,
    LeaseBusy,
    LeaseHeld,
    Refused,
    RetryPolicy,
    Superseded,
    TaskNotFound,
)

Conn = psycopg.Connection[tuple[Any, ...]]


def test_refusals_are_outcomes_not_exceptions(dsn: str, admin: Conn) -> None:
    with Actor(dsn, "a") as first, Actor(dsn, "b", retry=RetryPolicy(attempts=2, base=0)) as second:
        with first.try_lease(1) as held:
            assert held and held.grant.outcome is AcquireOutcome.ACQUIRED
            with second.try_lease(1) as refused:
                assert isinstance(refused, Refused) and not refused
                assert refused.outcome is AcquireOutcome.HELD and refused.grant.holder is not None
                assert refused.attempts == 1 and isinstance(refused.error(), LeaseHeld)
            assert held.commit("queued", "merged").outcome is CasOutcome.APPLIED
        with second.try_lease(999) as missing:  # no task has this id
            assert isinstance(missing, Refused) and missing.outcome is AcquireOutcome.NOT_FOUND
            assert isinstance(missing.error(), TaskNotFound)
        # busy after every attempt: a row lock on the lease held by another transaction
        with admin.transaction():
            admin.execute("SELECT orch_lease.transition_lease_acquire('2', 'x', 1, 'nobody')")
            with second.try_lease(2) as busy:
                assert isinstance(busy, Refused), busy
                assert busy.outcome in (AcquireOutcome.BUSY, AcquireOutcome.RETRY), busy
                assert busy.attempts == 2 and isinstance(busy.error(), LeaseBusy)
            raise psycopg.Rollback()
    assert one(admin, "SELECT stage FROM task WHERE id = 1") == "merged"
    assert leases(admin) == 0


def test_superseded_is_still_raised(dsn: str, admin: Conn) -> None:
    with Actor(dsn, "a") as old:
        # a newer incarnation registered itself, on purpose (recover refuses while this one is connected)
        admin.execute("SELECT count(*) FROM orch_lease.transition_lease_takeover('newer', 'a', 1)")
        with pytest.raises(Superseded):
            with old.try_lease(3):
                pytest.fail("entered the block")


def test_the_deprecated_lease_warns_and_raises(dsn: str, admin: Conn) -> None:
    with Actor(dsn, "a") as first, Actor(dsn, "b", retry=RetryPolicy(attempts=1)) as second:
        with pytest.deprecated_call(match="try_lease"), first.lease(4) as lease:
            with pytest.deprecated_call(), pytest.raises(LeaseHeld):
                with second.lease(4):
                    pytest.fail("entered without the lease")
            assert lease.commit("queued", "merged").applied

    async def scenario() -> None:
        async with AsyncActor(dsn, "c") as actor:
            async with actor.try_lease(5) as lease:
                assert lease and (await lease.commit("queued", "merged")).applied
            async with actor.try_lease(999) as missing:
                assert isinstance(missing, Refused) and missing.outcome is AcquireOutcome.NOT_FOUND
            with pytest.deprecated_call(), pytest.raises(TaskNotFound):
                async with actor.lease(999):
                    pytest.fail("entered without the lease")

    asyncio.run(scenario())
    assert leases(admin) == 0


def test_mypy_refuses_an_effect_run_without_looking(tmp_path: Path) -> None:
    unchecked = tmp_path / "unchecked.py"
    unchecked.write_text(
        textwrap.dedent(
            """
            from orch_lease import Actor

            def advance(actor: Actor) -> None:
                with actor.try_lease(1) as lease:
                    lease.commit("queued", "merged")
                with actor.try_lease(2) as lease:
                    if lease:
                        lease.commit("queued", "merged")
            """
        )
    )
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(unchecked)], capture_output=True, text=True
    )
    assert run.returncode == 1, run.stdout
    errors = [line for line in run.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 1 and 'Item "Refused"' in errors[0] and "unchecked.py:6:" in errors[0], run.stdout
