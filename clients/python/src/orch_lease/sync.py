"""The blocking client: `Actor`, its `Lease`, and `Listener`."""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.rows import tuple_row

from . import _protocol as p
from .events import AlertEvent, ListenerBase, printable
from .outcomes import CommitResult, Grant, RecoveredLease, Refused

if TYPE_CHECKING:  # psycopg_pool is optional (orch-lease[pool]): needed only by who passes a pool
    from psycopg_pool import ConnectionPool

Connection = psycopg.Connection[Any]


def _execute(conn: Connection, query: p.Query) -> list[p.Row]:
    # tuples whatever row factory the caller's connection has
    with conn.cursor(row_factory=tuple_row) as cursor:
        if query.lock_timeout is None:
            return cursor.execute(query.sql, query.params).fetchall()
        with conn.transaction():
            cursor.execute("SELECT set_config('lock_timeout', %s, true)", (f"{query.lock_timeout * 1000:.0f}ms",))
            return cursor.execute(query.sql, query.params).fetchall()


def _drive(conn: Connection, steps: p.Steps[p.T]) -> p.T:
    """Runs one protocol operation on `conn`."""
    try:
        step = next(steps)
        while True:
            if isinstance(step, p.Pause):
                time.sleep(step.seconds)
                step = steps.send(None)
                continue
            try:
                rows = _execute(conn, step)
            except psycopg.Error as error:
                step = steps.throw(error)
            else:
                step = steps.send(rows)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


class Actor(p.ActorBase[Connection, "ConnectionPool[Any]"]):
    """One process incarnation of an orch_lease actor, on one autocommit connection: opened from a
    conninfo string, or a connection of the caller's (autocommit; used, not closed, its claim let go at
    close), or taken from the caller's `psycopg_pool.ConnectionPool` (autocommit connections) for the
    actor's life and closed at close (the session that registered the boot ends with it); with a pool each
    lease borrows a connection of its own, so threads may hold leases at once.

    `start()` (or entering `with`) claims `instance` for this process, registers a fresh boot id and
    recovers the leases of earlier incarnations (returned, kept in `recovered`, and logged as warnings).
    With `instance=None` it takes the first free `<owner>-<host>-<slot>`: unique among live processes,
    and the same name again after a restart, so a successor recovers what a crashed process held.
    `claim=False` skips the claim (a session advisory lock: not behind a transaction-mode pooler), and
    then an instance must be given. `takeover=True` registers with `transition_lease_takeover`, which
    supersedes the instance's live boot even while the session that registered it is connected (recover
    refuses that, 55006, raised as InstanceInUse): behind a pooler, or to replace a wedged process.
    Recover waits at most `lock_timeout` seconds for the instance's lock, then start() raises
    RecoverBlocked with the server's detail, which names the sessions that hold it.
    Behind PgBouncer's transaction pooling also pass `prepare_threshold=None` (no server-side prepared
    statements) and `claim=False`.
    """

    def start(self) -> list[RecoveredLease]:
        source = self.source
        if isinstance(source, str):
            self._conn = psycopg.connect(source, autocommit=True, prepare_threshold=self.prepare_threshold)
        elif isinstance(source, psycopg.Connection):
            p.usable(source.autocommit)
            self._conn = source
        else:
            p.usable_pool(source.max_size)
            conn = source.getconn()
            if not conn.autocommit:
                source.putconn(conn)
                p.usable(False)
            self._conn = conn
        try:
            return self._run(self._start())
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        conn, source = self._conn, self.source
        if conn is None:
            return
        if isinstance(source, psycopg.Connection):
            if not conn.closed:
                try:
                    self._run(self._unclaim())
                except psycopg.Error as error:
                    p.log.error("%s: could not let go of the instance's claim: %s", printable(self.instance), error)
        else:
            conn.close()
            self._claimed.clear()  # with the connection
            if not isinstance(source, str):
                source.putconn(conn)  # closed: the pool drops it
        self._conn = None

    def __enter__(self) -> Actor:
        if self._conn is None:
            self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _run(self, steps: p.Steps[p.T]) -> p.T:
        return _drive(self.connection, steps)

    def _grant(self, conn: Connection, item: str | int, scope: str | None, task_table: str | None) -> Grant | Refused:
        """Acquires on `conn`; when interrupted (KeyboardInterrupt) the answer may be lost with a lease in
        it: releases that lease before the interruption goes on."""
        try:
            return _drive(conn, self._acquire(item, scope, task_table))
        except BaseException as error:
            if not isinstance(error, Exception) and not conn.closed:
                try:
                    _drive(conn, self._forget(item, task_table))
                except psycopg.Error as failure:
                    p.log.error("%s: could not release what an interrupted acquire got: %s", printable(item), failure)
            raise

    @contextmanager
    def try_lease(
        self, item: str | int, *, scope: str | None = None, task_table: str | None = None
    ) -> Iterator[Lease | Refused]:
        """Acquires `item` of `task_table` (a registered table's name; None: the only one registered, 0.5.0)
        for the block: a Lease, or the Refused outcome (false: held, busy after every attempt, not_found),
        so `if not lease: continue` before the effect. Raises Superseded (the process must stop) and
        database errors. A lease the block neither committed nor released is released when the block
        ends, normally or by an exception. With a pool the block holds a connection of the pool
        (`lease.connection`) until it ends."""
        with self._lease_connection() as conn:
            p.usable(conn.autocommit)
            answer = self._grant(conn, item, scope, task_table)
            if isinstance(answer, Refused):
                yield answer
                return
            lease = Lease(self, conn, answer)
            try:
                yield lease
            except BaseException:
                lease.abandon()
                raise
            if lease.open:
                lease.release()

    @contextmanager
    def lease(self, item: str | int, *, scope: str | None = None, task_table: str | None = None) -> Iterator[Lease]:
        """Deprecated (0.5.0, goes in 0.6.0): try_lease, raising the Refused outcome's LeaseHeld,
        LeaseBusy or TaskNotFound (LeaseNotAcquired) instead of entering the block."""
        warnings.warn(p.DEPRECATED_LEASE, DeprecationWarning, stacklevel=3)
        with self.try_lease(item, scope=scope, task_table=task_table) as lease:
            if isinstance(lease, Refused):
                raise lease.error()
            yield lease

    def _lease_connection(self) -> AbstractContextManager[Connection]:
        """The actor's connection, or with a pool one borrowed from it."""
        home, source = self.connection, self.source
        if isinstance(source, (str, psycopg.Connection)):
            return nullcontext(home)
        return source.connection()


class Lease(p.LeaseState):
    """A held transition lease (see Actor.lease). `grant` is what acquire answered; `connection` the
    connection its statements run on (the actor's, or with a pool the one the lease borrowed): the
    effect's own statements and a transaction the commit joins go there."""

    def __init__(self, actor: Actor, connection: Connection, grant: Grant) -> None:
        super().__init__(grant, actor._held)
        self._actor = actor
        self.connection = connection

    def commit(self, expected: str, new: str) -> CommitResult:
        """Writes the stage if it is still `expected` and ends the lease, in one step. `retry` is retried;
        if it is still the answer after every attempt the lease stays open (commit again, or leave the
        block to release it). Inside a transaction of the lease's connection (`with
        lease.connection.transaction():`, beside the caller's own writes) the stage write and the lease's
        end commit or roll back with it, and the lease stays open until the block ends."""
        self._check_open()
        in_transaction = self.connection.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
        result = _drive(self.connection, p.commit(self.grant, expected, new, self._actor.retry))
        return self._after_commit(result, in_transaction)

    def still_held(self) -> bool:
        """The checkpoint of a long effect: False once the lease was taken away (stop the effect)."""
        return self.open and _drive(self.connection, p.still_held(self.grant))

    def release(self) -> bool:
        """Ends the lease without writing; False if it was no longer held."""
        self._check_open()
        self.open = False
        return _drive(self.connection, p.release(self.grant))

    def abandon(self) -> None:
        """Releases the lease on the way out of a failed block, keeping that block's exception. When the
        connection itself is gone, the lease stays until this instance's next recover (or the reaper)."""
        if self.open:
            try:
                self.release()
            except psycopg.Error as error:
                self._abandon_failed(error)


class Listener(ListenerBase):
    """`for event in Listener(conninfo):` yields the AlertEvents of NOTIFY orch_lease, reconnecting by
    itself after a lost connection (announcements sent while it was disconnected are not replayed: read
    orch_lease.lease_history for the gap). With `duration`, iteration ends after that many seconds."""

    def payloads(self) -> Iterator[str]:
        """The raw payloads, in order."""
        deadline = self._deadline()
        while not self._expired(deadline):
            try:
                with psycopg.connect(self.conninfo, autocommit=True) as conn:
                    conn.execute(self.LISTEN)
                    self._listening()
                    while not self._expired(deadline):
                        yield from (note.payload for note in conn.notifies(timeout=self._poll(deadline)))
                        conn.execute("SELECT 1")  # a dead connection shows itself here at the latest
            except psycopg.OperationalError as error:
                self._lost(error)
                time.sleep(self.reconnect_delay)

    def __iter__(self) -> Iterator[AlertEvent]:
        for payload in self.payloads():
            yield from self.parse(payload)
