"""The asyncio client: the same protocol as the sync one, driven with an AsyncConnection."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest
from conftest import HangingCommits, dead_incarnation, leases, one
from psycopg.conninfo import make_conninfo

from orch_lease import AcquireOutcome, AsyncActor, CasOutcome, LeaseHeld, RetryPolicy

Conn = psycopg.Connection[tuple[Any, ...]]


def test_async_actor_outcomes(dsn: str, admin: Conn) -> None:
    dead_incarnation(dsn, "dead", "async-0", "30")

    async def scenario() -> None:
        async with AsyncActor(dsn, "async-0", owner="async") as a, AsyncActor(dsn, "async-1") as b:
            assert [lease.work_item for lease in a.recovered] == ["30"]
            async with a.lease(31) as lease:
                assert lease.grant.outcome is AcquireOutcome.ACQUIRED and await lease.still_held()
                b.retry = RetryPolicy(attempts=1)
                with pytest.raises(LeaseHeld):
                    async with b.lease(31):
                        pytest.fail("entered without the lease")
                assert (await lease.commit("queued", "merged")).outcome is CasOutcome.APPLIED
            with pytest.raises(ValueError):
                async with a.lease(32):
                    raise ValueError("effect failed")
            async with a.lease(33) as lease:
                admin.execute("SELECT orch_lease.transition_lease_force_release('33')")
                assert not await lease.still_held()
                assert (await lease.commit("queued", "merged")).outcome is CasOutcome.LEASE_LOST

    asyncio.run(scenario())
    assert one(admin, "SELECT count(*) FROM orch_lease.transition_lease") == 0
    assert one(admin, "SELECT string_agg(stage, ',' ORDER BY id) FROM task WHERE id BETWEEN 31 AND 33") == "merged,queued,queued"


def test_a_cancelled_acquire_leaves_no_lease(dsn: str, admin: Conn) -> None:
    async def scenario() -> None:
        async with AsyncActor(make_conninfo(dsn, options=HangingCommits.ACTOR_OPTIONS), "a") as actor:
            hang = HangingCommits(admin).__enter__()
            while not (await (await actor.connection.execute(HangingCommits.SEEN)).fetchone() or [False])[0]:
                await asyncio.sleep(0.01)  # until the actor's session has reloaded the settings

            async def enter() -> None:
                async with actor.lease(19):
                    pytest.fail("entered the block")

            task = asyncio.create_task(enter())
            await asyncio.to_thread(hang.wait_for_hanging)  # granted on the server, not answered yet
            task.cancel()  # the standby comes back once the follow-up release waits for it too (or 10 s)
            await asyncio.to_thread(hang.hanging, "transition_lease_status")
            await asyncio.to_thread(hang.release)
            with pytest.raises(asyncio.CancelledError):
                await task
            assert leases(admin) == 0
            async with actor.lease(19) as lease:  # and the actor may have its item again
                assert lease.grant.outcome is AcquireOutcome.ACQUIRED

    try:
        asyncio.run(scenario())
    finally:
        HangingCommits(admin).release()
