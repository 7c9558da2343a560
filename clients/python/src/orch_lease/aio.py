"""The asyncio client: `AsyncActor`, its `AsyncLease`, and `AsyncListener` — the protocol of sync.py,
driven with an AsyncConnection and asyncio.sleep."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import psycopg

from . import _protocol as p
from .events import AlertEvent, ListenerBase, printable
from .outcomes import CommitResult, Grant, RecoveredLease


async def _execute(conn: psycopg.AsyncConnection[p.Row], query: p.Query) -> list[p.Row]:
    if query.lock_timeout is None:
        return await (await conn.execute(query.sql, query.params)).fetchall()
    async with conn.transaction():
        await conn.execute("SELECT set_config('lock_timeout', %s, true)", (f"{query.lock_timeout * 1000:.0f}ms",))
        return await (await conn.execute(query.sql, query.params)).fetchall()


async def _drive(conn: psycopg.AsyncConnection[p.Row], steps: p.Steps[p.T]) -> p.T:
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


class AsyncActor(p.ActorBase[psycopg.AsyncConnection[p.Row]]):
    """sync.Actor for asyncio: `async with AsyncActor(conninfo) as actor:` then
    `async with actor.lease(item) as lease:`. Same rules, same exceptions."""

    async def start(self) -> list[RecoveredLease]:
        self._conn = await psycopg.AsyncConnection.connect(
            self.conninfo, autocommit=True, prepare_threshold=self.prepare_threshold
        )
        try:
            return await self._run(self._start())
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def __aenter__(self) -> AsyncActor:
        if self._conn is None:
            await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def _run(self, steps: p.Steps[p.T]) -> p.T:
        return await _drive(self.connection, steps)

    def lease(self, item: str | int, *, scope: str | None = None, task_table: str | None = None) -> AsyncLeaseBlock:
        return AsyncLeaseBlock(self, item, scope, task_table)

    async def _grant(self, item: str | int, scope: str | None, task_table: str | None) -> Grant:
        """Acquires; when cancelled the answer may be lost with a lease in it: releases that lease, shielded
        from a second cancellation, before the cancellation goes on."""
        try:
            return await self._run(self._acquire(item, scope, task_table))
        except BaseException as error:
            if not isinstance(error, Exception) and self._conn is not None and not self._conn.closed:
                await asyncio.shield(self._forget_lost(item, task_table))
            raise

    async def _forget_lost(self, item: str | int, task_table: str | None) -> None:
        try:
            await self._run(self._forget(item, task_table))
        except psycopg.Error as failure:
            p.log.error("%s: could not release what an interrupted acquire got: %s", printable(item), failure)


class AsyncLease(p.LeaseState):
    """A held transition lease (see AsyncActor.lease); the methods of sync.Lease, awaited."""

    def __init__(self, actor: AsyncActor, grant: Grant) -> None:
        super().__init__(grant, actor._held)
        self._actor = actor

    async def commit(self, expected: str, new: str) -> CommitResult:
        """As `Lease.commit`: inside a transaction of the actor's connection the lease stays open until
        the block ends."""
        self._check_open()
        in_transaction = self._actor.connection.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
        result = await self._actor._run(p.commit(self.grant, expected, new, self._actor.retry))
        return self._after_commit(result, in_transaction)

    async def still_held(self) -> bool:
        return self.open and await self._actor._run(p.still_held(self.grant))

    async def release(self) -> bool:
        self._check_open()
        self.open = False
        return await self._actor._run(p.release(self.grant))

    async def abandon(self) -> None:
        if self.open:
            try:
                await self.release()
            except psycopg.Error as error:
                self._abandon_failed(error)


class AsyncLeaseBlock:
    """`async with actor.lease(item) as lease:` acquires on entry and releases what is left open on exit."""

    def __init__(self, actor: AsyncActor, item: str | int, scope: str | None, task_table: str | None) -> None:
        self._actor, self._item, self._scope, self._task_table = actor, item, scope, task_table
        self._lease: AsyncLease | None = None

    async def __aenter__(self) -> AsyncLease:
        self._lease = AsyncLease(self._actor, await self._actor._grant(self._item, self._scope, self._task_table))
        return self._lease

    async def __aexit__(self, kind: type[BaseException] | None, *_: object) -> None:
        assert self._lease is not None
        if kind is not None:
            await self._lease.abandon()
        elif self._lease.open:
            await self._lease.release()


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
