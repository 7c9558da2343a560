"""The blocking client: `Actor`, its `Lease`, and `Listener`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from . import _protocol as p
from .events import AlertEvent, ListenerBase, printable
from .outcomes import CommitResult, Grant, RecoveredLease


def _execute(conn: psycopg.Connection[p.Row], query: p.Query) -> list[p.Row]:
    if query.lock_timeout is None:
        return conn.execute(query.sql, query.params).fetchall()
    with conn.transaction():
        conn.execute("SELECT set_config('lock_timeout', %s, true)", (f"{query.lock_timeout * 1000:.0f}ms",))
        return conn.execute(query.sql, query.params).fetchall()


def _drive(conn: psycopg.Connection[p.Row], steps: p.Steps[p.T]) -> p.T:
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


class Actor(p.ActorBase[psycopg.Connection[p.Row]]):
    """One process incarnation of an orch_lease actor, on one autocommit connection.

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
        self._conn = psycopg.connect(self.conninfo, autocommit=True, prepare_threshold=self.prepare_threshold)
        try:
            return self._run(self._start())
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Actor:
        if self._conn is None:
            self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _run(self, steps: p.Steps[p.T]) -> p.T:
        return _drive(self.connection, steps)

    def _grant(self, item: str | int, scope: str | None, task_table: str | None) -> Grant:
        """Acquires; when interrupted (KeyboardInterrupt) the answer may be lost with a lease in it:
        releases that lease before the interruption goes on."""
        try:
            return self._run(self._acquire(item, scope, task_table))
        except BaseException as error:
            if not isinstance(error, Exception) and self._conn is not None and not self._conn.closed:
                try:
                    self._run(self._forget(item, task_table))
                except psycopg.Error as failure:
                    p.log.error("%s: could not release what an interrupted acquire got: %s", printable(item), failure)
            raise

    @contextmanager
    def lease(self, item: str | int, *, scope: str | None = None, task_table: str | None = None) -> Iterator[Lease]:
        """Acquires `item` of `task_table` (a registered table's name; None: the only one registered, 0.5.0)
        for the block. Raises LeaseHeld, LeaseBusy (both LeaseNotAcquired) or
        Superseded instead of entering it without the lease. A lease the block neither committed nor
        released is released when the block ends, normally or by an exception."""
        lease = Lease(self, self._grant(item, scope, task_table))
        try:
            yield lease
        except BaseException:
            lease.abandon()
            raise
        if lease.open:
            lease.release()


class Lease(p.LeaseState):
    """A held transition lease (see Actor.lease). `grant` is what acquire answered."""

    def __init__(self, actor: Actor, grant: Grant) -> None:
        super().__init__(grant, actor._held)
        self._actor = actor

    def commit(self, expected: str, new: str) -> CommitResult:
        """Writes the stage if it is still `expected` and ends the lease, in one step. `retry` is retried;
        if it is still the answer after every attempt the lease stays open (commit again, or leave the
        block to release it). Inside a transaction of the actor's connection (`with
        actor.connection.transaction():`, beside the caller's own writes) the stage write and the lease's
        end commit or roll back with it, and the lease stays open until the block ends."""
        self._check_open()
        in_transaction = self._actor.connection.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
        result = self._actor._run(p.commit(self.grant, expected, new, self._actor.retry))
        return self._after_commit(result, in_transaction)

    def still_held(self) -> bool:
        """The checkpoint of a long effect: False once the lease was taken away (stop the effect)."""
        return self.open and self._actor._run(p.still_held(self.grant))

    def release(self) -> bool:
        """Ends the lease without writing; False if it was no longer held."""
        self._check_open()
        self.open = False
        return self._actor._run(p.release(self.grant))

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
