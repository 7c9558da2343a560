"""An Actor on the caller's psycopg connection or psycopg_pool pool (#31), against the real server: the
caller's connection used and kept, a pool lending each lease a connection of its own, the boot's
session ending with the actor, and what is refused."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import psycopg
import pytest
from conftest import leases, one
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from orch_lease import AcquireOutcome, AsyncActor, Actor, CasOutcome, InstanceInUse

Conn = psycopg.Connection[tuple[Any, ...]]
CLAIMS = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = %s"


def gone(admin: Conn, pid: int, timeout: float = 5.0) -> bool:
    """Whether backend `pid` has ended within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while one(admin, "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_a_connection_of_the_callers_is_used_and_kept(dsn: str, admin: Conn) -> None:
    # a row factory of the caller's own: the actor still reads its answers
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        with Actor(conn, "mine") as actor:
            assert actor.connection is conn and actor.conninfo is None
            first_boot = actor.boot_id
            with actor.lease(1) as lease:
                assert lease.connection is conn and lease.grant.stage == "queued"
                assert lease.commit("queued", "merged").outcome is CasOutcome.APPLIED
            assert one(admin, CLAIMS, (conn.info.backend_pid,)) == 1
        assert not conn.closed, "the actor closed the caller's connection"
        assert one(admin, CLAIMS, (conn.info.backend_pid,)) == 0, "the claim outlived the actor"
        assert conn.execute("SELECT 1 AS one").fetchone() == {"one": 1}
        # a successor on the same session: the restart the server knows of, not a twin (55006)
        with Actor(conn, "mine") as again:
            assert again.boot_id != first_boot and again.recovered == []
    assert one(admin, "SELECT stage FROM task WHERE id = 1") == "merged"
    assert leases(admin) == 0


def test_a_failed_start_leaves_no_claim_on_the_callers_connection(dsn: str, admin: Conn) -> None:
    # the claim is taken, then recover refuses (55006: the instance's live boot was registered by a
    # session still connected): the caller's connection must not keep the claim
    admin.execute("SELECT count(*) FROM orch_lease.transition_lease_recover('elsewhere', 'mine', 1)")
    with psycopg.connect(dsn, autocommit=True) as conn:
        with pytest.raises(InstanceInUse, match="still connected"):
            Actor(conn, "mine").start()
        assert one(admin, CLAIMS, (conn.info.backend_pid,)) == 0, "the failed start's claim outlived it"
        assert not conn.closed


def test_a_connection_not_in_autocommit_is_refused(dsn: str, admin: Conn) -> None:
    with psycopg.connect(dsn) as conn:
        with pytest.raises(ValueError, match="autocommit"):
            Actor(conn, "mine").start()
        assert not conn.closed
    assert one(admin, "SELECT count(*) FROM orch_lease.boot") == 0


def test_a_pool_lends_each_lease_a_connection(dsn: str, admin: Conn) -> None:
    with ConnectionPool(dsn, min_size=1, max_size=3, kwargs={"autocommit": True}, open=False) as pool:
        with Actor(pool, "pooled") as actor:
            home = actor.connection.info.backend_pid
            # two threads hold a lease each at once, each on a connection of the pool's
            both = threading.Barrier(2, timeout=10)
            seen: dict[int, int] = {}

            def work(item: int) -> None:
                with actor.lease(item) as lease:
                    seen[item] = lease.connection.info.backend_pid
                    both.wait()
                    assert lease.commit("queued", "merged").applied

            threads = [threading.Thread(target=work, args=(item,)) for item in (2, 3)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(15)
            assert sorted(seen) == [2, 3] and len({home, *seen.values()}) == 3, seen
            # a twin on the same pool: refused by the claim the actor's own connection holds
            with pytest.raises(InstanceInUse):
                Actor(pool, "pooled").start()
        assert gone(admin, home), "the session that registered the boot outlived the actor"
        # the successor on the same pool starts, as after a restart
        with Actor(pool, "pooled") as successor:
            with successor.lease(2) as lease:
                assert lease.grant.stage == "merged"
    assert one(admin, "SELECT count(*) FROM task WHERE id IN (2, 3) AND stage = 'merged'") == 2
    assert leases(admin) == 0


def test_a_pooled_commit_joins_the_leases_transaction(dsn: str, admin: Conn) -> None:
    with ConnectionPool(dsn, min_size=1, max_size=2, kwargs={"autocommit": True}, open=False) as pool:
        with Actor(pool, "pooled") as actor:
            with actor.lease(4) as lease:
                with lease.connection.transaction():
                    assert lease.commit("queued", "merged").applied
                    raise psycopg.Rollback()  # the caller's outbox insert failed
            assert leases(admin) == 0, "the block's end released the lease the rollback kept"
            with actor.lease(4) as lease:
                assert lease.grant.outcome is AcquireOutcome.ACQUIRED and lease.grant.stage == "queued"


def test_a_pool_that_cannot_serve_is_refused(dsn: str, admin: Conn) -> None:
    with ConnectionPool(dsn, min_size=1, max_size=1, kwargs={"autocommit": True}, open=False) as small:
        with pytest.raises(ValueError, match="max_size 1"):
            Actor(small, "pooled").start()
    with ConnectionPool(dsn, min_size=1, max_size=2, open=False) as transactional:
        with pytest.raises(ValueError, match="autocommit"):
            Actor(transactional, "pooled").start()
        assert transactional.get_stats()["pool_available"] >= 1, "the refused connection was not given back"
    assert one(admin, "SELECT count(*) FROM orch_lease.boot") == 0


def test_async_actor_on_a_pool_and_on_a_connection(dsn: str, admin: Conn) -> None:
    async def scenario() -> None:
        async with AsyncConnectionPool(dsn, min_size=1, max_size=3, kwargs={"autocommit": True}, open=False) as pool:
            async with AsyncActor(pool, "pooled") as actor:
                home = actor.connection.info.backend_pid
                async with actor.lease(5) as first, actor.lease(6) as second:
                    assert len({home, first.connection.info.backend_pid, second.connection.info.backend_pid}) == 3
                    assert (await first.commit("queued", "merged")).applied
                    assert (await second.commit("queued", "merged")).applied
            assert gone(admin, home)
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            async with AsyncActor(conn, "mine") as actor:
                async with actor.lease(7) as lease:
                    assert lease.connection is conn
                    assert (await lease.commit("queued", "merged")).applied
            assert not conn.closed and one(admin, CLAIMS, (conn.info.backend_pid,)) == 0

    asyncio.run(scenario())
    assert one(admin, "SELECT count(*) FROM task WHERE id IN (5, 6, 7) AND stage = 'merged'") == 3
    assert leases(admin) == 0
