"""The asyncio client: `AsyncActor`, its `AsyncLease`, and `AsyncListener` — the protocol of sync.py,
driven with an AsyncConnection and asyncio.sleep."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.rows import tuple_row

from . import _protocol as p
from .events import AlertEvent, ListenerBase, printable
from .outcomes import CommitResult, Grant, RecoveredLease, Refused

if TYPE_CHECKING:  # psycopg_pool is optional (orch-lease[pool])
    from psycopg_pool import AsyncConnectionPool

AsyncConnection = psycopg.AsyncConnection[Any]


async def _execute(conn: AsyncConnection, query: p.Query) -> list[p.Row]:
    async with conn.cursor(row_factory=tuple_row) as cursor:
        if query.lock_timeout is None:
            return await (await cursor.execute(query.sql, query.params)).fetchall()
        async with conn.transaction():
            await cursor.execute("SELECT set_config('lock_timeout', %s, true)", (f"{query.lock_timeout * 1000:.0f}ms",))
            return await (await cursor.execute(query.sql, query.params)).fetchall()


async def _drive(conn: AsyncConnection, steps: p.Steps[p.T]) -> p.T:
    """Runs one protocol operation on `conn`."""
    try:
        step = next(steps)
        while True:
            if isinstance(step, p.Pause):
                await asyncio.sleep(step.seconds)
                step = steps.send(None)
                continue
            try:
                rows = await _execute(conn, step)
            except psycopg.Error as error:
                step = steps.throw(error)
            else:
                step = steps.send(rows)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


class AsyncActor(p.ActorBase[AsyncConnection, "AsyncConnectionPool[Any]"]):
    """sync.Actor for asyncio: `async with AsyncActor(conninfo) as actor:` then
    `async with actor.try_lease(item) as lease:`. Same rules, same outcomes; a connection of the caller's
    is a psycopg.AsyncConnection, a pool a psycopg_pool.AsyncConnectionPool."""

    async def start(self) -> list[RecoveredLease]:
        source = self.source
        if isinstance(source, str):
            self._conn = await psycopg.AsyncConnection.connect(
                source, autocommit=True, prepare_threshold=self.prepare_threshold
            )
        elif isinstance(source, psycopg.AsyncConnection):
            p.usable(source.autocommit)
            self._conn = source
        else:
            p.usable_pool(source.max_size)
            conn = await source.getconn()
            if not conn.autocommit:
                await source.putconn(conn)
                p.usable(False)
            self._conn = conn
        try:
            return await self._run(self._start())
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        conn, source = self._conn, self.source
        if conn is None:
            return
        if isinstance(source, psycopg.AsyncConnection):
            if not conn.closed:
                try:
                    await self._run(self._unclaim())
                except psycopg.Error as error:
                    p.log.error("%s: could not let go of the instance's claim: %s", printable(self.instance), error)
        else:
            await conn.close()
            self._claimed.clear()  # with the connection
            if not isinstance(source, str):
                await source.putconn(conn)  # closed: the pool drops it
        self._conn = None

    async def __aenter__(self) -> AsyncActor:
        if self._conn is None:
            await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def _run(self, steps: p.Steps[p.T]) -> p.T:
        return await _drive(self.connection, steps)

    def try_lease(
        self, item: str | int, *, scope: str | None = None, task_table: str | None = None
    ) -> AsyncLeaseBlock:
        """As Actor.try_lease: `async with actor.try_lease(item) as lease:` a lease or a Refused outcome."""
        return AsyncLeaseBlock(self, item, scope, task_table)

    def lease(
        self, item: str | int, *, scope: str | None = None, task_table: str | None = None
    ) -> RaisingLeaseBlock:
        """Deprecated (0.5.0, goes in 0.6.0): try_lease, raising LeaseNotAcquired for a refusal."""
        warnings.warn(p.DEPRECATED_LEASE, DeprecationWarning, stacklevel=2)
        return RaisingLeaseBlock(self, item, scope, task_table)

    async def _grant(
        self, conn: AsyncConnection, item: str | int, scope: str | None, task_table: str | None
    ) -> Grant | Refused:
        """Acquires on `conn`; when cancelled the answer may be lost with a lease in it: releases that
        lease, shielded from a second cancellation, before the cancellation goes on."""
        try:
            return await _drive(conn, self._acquire(item, scope, task_table))
        except BaseException as error:
            if not isinstance(error, Exception) and not conn.closed:
                await asyncio.shield(self._forget_lost(conn, item, task_table))
            raise

    def _lease_connection(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """The actor's connection, or with a pool one borrowed from it."""
        home, source = self.connection, self.source
        if isinstance(source, (str, psycopg.AsyncConnection)):
            return nullcontext(home)
        return source.connection()

    async def _forget_lost(self, conn: AsyncConnection, item: str | int, task_table: str | None) -> None:
        try:
            await _drive(conn, self._forget(item, task_table))
        except psycopg.Error as failure:
            p.log.error("%s: could not release what an interrupted acquire got: %s", printable(item), failure)


class AsyncLease(p.LeaseState):
    """A held transition lease (see AsyncActor.lease); the methods of sync.Lease, awaited."""

    def __init__(self, actor: AsyncActor, connection: AsyncConnection, grant: Grant) -> None:
        super().__init__(grant, actor._held)
        self._actor = actor
        self.connection = connection

    async def commit(self, expected: str, new: str) -> CommitResult:
        """As `Lease.commit`: inside a transaction of the lease's connection the lease stays open until
        the block ends."""
        self._check_open()
        in_transaction = self.connection.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
        result = await _drive(self.connection, p.commit(self.grant, expected, new, self._actor.retry))
        return self._after_commit(result, in_transaction)

    async def still_held(self) -> bool:
        return self.open and await _drive(self.connection, p.still_held(self.grant))

    async def release(self) -> bool:
        self._check_open()
        self.open = False
        return await _drive(self.connection, p.release(self.grant))

    async def abandon(self) -> None:
        if self.open:
            try:
                await self.release()
            except psycopg.Error as error:
                self._abandon_failed(error)


class AsyncLeaseBlock:
    """`async with actor.try_lease(item) as lease:` acquires on entry (a lease, or a Refused outcome) and
    releases what is left open on exit; with a pool it holds a connection of the pool in between."""

    def __init__(self, actor: AsyncActor, item: str | int, scope: str | None, task_table: str | None) -> None:
        self._actor, self._item, self._scope, self._task_table = actor, item, scope, task_table
        self._lease: AsyncLease | None = None
        self._lent: AbstractAsyncContextManager[AsyncConnection] | None = None

    async def __aenter__(self) -> AsyncLease | Refused:
        self._lent = self._actor._lease_connection()
        conn = await self._lent.__aenter__()
        try:
            p.usable(conn.autocommit)
            answer = await self._actor._grant(conn, self._item, self._scope, self._task_table)
        except BaseException as error:
            await self._lent.__aexit__(type(error), error, error.__traceback__)
            raise
        if isinstance(answer, Refused):
            return answer
        self._lease = AsyncLease(self._actor, conn, answer)
        return self._lease

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: Any) -> None:
        assert self._lent is not None
        try:
            if self._lease is None:
                pass
            elif kind is not None:
                await self._lease.abandon()
            elif self._lease.open:
                await self._lease.release()
        finally:
            await self._lent.__aexit__(kind, error, trace)


class RaisingLeaseBlock(AsyncLeaseBlock):
    """The deprecated `lease()`: raises the Refused outcome's LeaseNotAcquired instead of entering."""

    async def __aenter__(self) -> AsyncLease:
        lease = await super().__aenter__()
        if isinstance(lease, Refused):
            await self.__aexit__(None, None, None)
            raise lease.error()
        return lease


class AsyncListener(ListenerBase):
    """sync.Listener for asyncio: `async for event in AsyncListener(conninfo):`."""

    async def payloads(self) -> AsyncIterator[str]:
        deadline = self._deadline()
        while not self._expired(deadline):
            try:
                async with await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True) as conn:
                    await conn.execute(self.LISTEN)
                    self._listening()
                    while not self._expired(deadline):
                        async for note in conn.notifies(timeout=self._poll(deadline)):
                            yield note.payload
                        await conn.execute("SELECT 1")
            except psycopg.OperationalError as error:
                self._lost(error)
                await asyncio.sleep(self.reconnect_delay)

    async def __aiter__(self) -> AsyncIterator[AlertEvent]:
        async for payload in self.payloads():
            for event in self.parse(payload):
                yield event
