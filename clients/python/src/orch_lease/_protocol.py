"""The actor protocol, written once for the sync and the asyncio client: each operation is a generator that
yields what it needs done (a query, a pause) and receives the answer, so `sync.py` and `aio.py` only drive
it with their own connection and sleep. The SQL and every decision (what to retry, when to give up, what
to raise) live here."""

from __future__ import annotations

import logging
import os
import random
import socket
import uuid
from collections.abc import Collection, Generator
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import psycopg

from .events import printable
from .outcomes import (
    AcquireOutcome,
    CasOutcome,
    CommitResult,
    Grant,
    InstanceInUse,
    LeaseEnded,
    RecoverBlocked,
    RecoveredLease,
    Refused,
    Superseded,
)

log = logging.getLogger("orch_lease")

Row = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Query:
    """Run `sql` with `params` in its own transaction (autocommit) and send back every row. With
    `lock_timeout` (seconds), that transaction waits at most so long for a lock (55P03 after that). A
    database error is thrown into the operation where it yielded the query."""

    sql: str
    params: tuple[Any, ...]
    lock_timeout: float | None = None


@dataclass(frozen=True, slots=True)
class Pause:
    """Sleep this long, then go on (the answer is None)."""

    seconds: float


T = TypeVar("T")
Steps = Generator[Query | Pause, list[Row] | None, T]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How `busy` / `retry` answers are retried: up to `attempts` calls, sleeping a random time between 0
    and min(cap, base * 2**n) before call n+1 (full jitter, so racing actors spread out)."""

    attempts: int = 8
    base: float = 0.01
    cap: float = 0.5

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"RetryPolicy: attempts must be at least 1, not {self.attempts!r}")
        if not (self.base >= 0 and self.cap >= 0):
            raise ValueError(f"RetryPolicy: base and cap must be seconds >= 0, not {self.base!r}, {self.cap!r}")

    def pause(self, attempt: int) -> Pause:
        return Pause(random.uniform(0, min(self.cap, self.base * 2**attempt)))


# A session advisory lock per instance name, held by the actor's connection for its life: a second live
# process with the same instance is refused before its recover could supersede the first (issue #21).
# Every name is qualified: the actor's search_path may hold a database owner's functions and operators.
CLAIM_KEY = "pg_catalog.hashtextextended(pg_catalog.concat('orch_lease instance ', %s::pg_catalog.text), 0)"
CLAIM = f"SELECT pg_catalog.pg_try_advisory_lock({CLAIM_KEY})"
UNCLAIM = f"SELECT pg_catalog.pg_advisory_unlock({CLAIM_KEY})"
# How many `<owner>-<host>-<slot>` names an actor without an instance tries before giving up.
SLOTS = 64
# A named instance is tried for about a second: the session of a process that just ended (a restart)
# holds its claim until the server has noticed it is gone.
CLAIM_TRIES, CLAIM_PAUSE = 10, 0.1
# `lease()`, which raises LeaseNotAcquired instead of giving a Refused outcome, is deprecated (0.5.0).
DEPRECATED_LEASE = (
    "lease() is deprecated: use try_lease(), which gives a Refused outcome (false) instead of raising "
    "LeaseNotAcquired; lease() goes in 0.6.0"
)
# What every login reads in pg_stat_activity.application_name: not the instance (issue #34). Who may read
# orch_lease.boot finds a backend's instance there (registered_session).
APPLICATION_NAME = "SELECT pg_catalog.set_config('application_name', 'orch_lease', false)"
# recover, or transition_lease_takeover: the same, but it also supersedes a live boot whose session is
# still connected (which recover refuses, 55006).
REGISTER = (
    "SELECT work_item, token, owner, owner_pid, owner_boot_id, acquired_at"
    " FROM orch_lease.transition_lease_{}(%s, %s, %s)"
)
# Who holds the instance's claim (the CLAIM key: a bigint advisory lock, so classid and objid are its
# high and low halves and objsubid 1); pg_locks and these columns of pg_stat_activity every login reads.
CLAIM_HOLDERS = f"""SELECT a.pid, a.usename::text, a.application_name, a.backend_start
  FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid OPERATOR(pg_catalog.=) l.pid
 CROSS JOIN LATERAL (SELECT {CLAIM_KEY} AS k) key
 WHERE l.locktype OPERATOR(pg_catalog.=) 'advisory' AND l.granted AND l.objsubid OPERATOR(pg_catalog.=) 1
   AND l.database OPERATOR(pg_catalog.=) a.datid
   AND l.classid::pg_catalog.int8 OPERATOR(pg_catalog.=) ((key.k OPERATOR(pg_catalog.>>) 32)
       OPERATOR(pg_catalog.&) 4294967295)
   AND l.objid::pg_catalog.int8 OPERATOR(pg_catalog.=) (key.k OPERATOR(pg_catalog.&) 4294967295)
   AND a.pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid()
 ORDER BY a.pid"""
ACQUIRE = (
    "SELECT acquired, outcome, token, holder, holder_pid, holder_boot_id, held_since, stage"
    " FROM orch_lease.transition_lease_acquire(%s, %s, %s, %s, %s, task_table => %s::regclass)"
)
# After an acquire whose answer never arrived (cancelled, interrupted): the lease it may have granted is
# one of this boot's on the item that the actor does not know of.
FORGET = """SELECT orch_lease.transition_lease_release(s.work_item, s.token, s.task_table)
  FROM orch_lease.transition_lease_status s
 WHERE s.work_item OPERATOR(pg_catalog.=) orch_lease.work_item_key(%s, task_table => %s::pg_catalog.regclass)
   AND s.owner_boot_id OPERATOR(pg_catalog.=) %s::pg_catalog.text
   AND s.token OPERATOR(pg_catalog.<>) ALL(%s::pg_catalog.int8[])
   AND s.task_table::pg_catalog.oid OPERATOR(pg_catalog.=)
       COALESCE(%s::pg_catalog.regclass, s.task_table)::pg_catalog.oid"""
# A task table (0.5.0): the table the work item is a row of, None for the only one registered.
COMMIT = (
    "SELECT applied, outcome, current_stage"
    " FROM orch_lease.commit_stage_cas(%s, %s, %s, %s, task_table => %s::regclass)"
)
RELEASE = "SELECT orch_lease.transition_lease_release(%s, %s, task_table => %s::regclass)"
# A grant without a lease (kill-switch off, out of scope) writes by name: commit_stage_cas refuses a NULL
# token while orch_lease is on (0.5.0).
WRITE = (
    "SELECT applied, outcome, current_stage"
    " FROM orch_lease.update_task_stage_cas(%s, %s, %s, task_table => %s::regclass)"
)
HELD = "SELECT orch_lease.transition_lease_held(%s, %s, task_table => %s::regclass)"

# A caller's connection (or pool) is used as it is, so it must answer as the actor's own would.
NOT_AUTOCOMMIT = (
    "orch_lease: the actor's connection must be in autocommit mode, each orch_lease call a transaction of "
    "its own (join one on purpose with `with lease.connection.transaction():`): psycopg.connect(..., "
    "autocommit=True), or ConnectionPool(..., kwargs={'autocommit': True})"
)
TOO_SMALL = (
    "orch_lease: the actor keeps one connection of the pool for its life (its claim and the session that "
    "registered its boot) and borrows one more per lease: a pool of max_size {} cannot lend that; give it "
    "at least 2 (1 + the leases held at once)"
)


def usable(autocommit: bool) -> None:
    """Refuses a connection of the caller's that is not in autocommit mode (ValueError)."""
    if not autocommit:
        raise ValueError(NOT_AUTOCOMMIT)


def usable_pool(max_size: int) -> None:
    """Refuses a pool that cannot lend the actor's connection and a lease's (ValueError)."""
    if max_size < 2:
        raise ValueError(TOO_SMALL.format(max_size))


def _one(rows: list[Row] | None) -> Row:
    assert rows is not None and len(rows) == 1, rows
    return rows[0]


def start(
    owner: str, instance: str | None, pid: int, claim: bool, takeover: bool, lock_timeout: float,
    claimed: list[str],
) -> Steps[tuple[str, str, list[RecoveredLease]]]:
    """Claims the instance (the first free `<owner>-<host>-<slot>` when None), registers a fresh boot id
    with recover (or takeover) and returns (instance, boot id, the leases of earlier incarnations it
    gave back). `claimed` holds the names whose claim the connection holds, also when start fails."""
    if instance is not None:
        if claim:
            for _ in range(CLAIM_TRIES):
                if _one((yield Query(CLAIM, (instance,))))[0]:
                    claimed.append(instance)
                    break
                yield Pause(CLAIM_PAUSE)
            else:
                holders = yield Query(CLAIM_HOLDERS, (instance,))
                raise InstanceInUse.claimed(instance, holders or [])
        boot_id, recovered = yield from register(instance, pid, takeover, lock_timeout)
        return instance, boot_id, recovered
    if not claim:
        raise ValueError("an actor that does not claim its instance must be given one")
    for slot in range(SLOTS):
        candidate = f"{owner}-{socket.gethostname()}-{slot}"
        if not _one((yield Query(CLAIM, (candidate,))))[0]:
            continue
        claimed.append(candidate)
        try:
            boot_id, recovered = yield from register(candidate, pid, takeover, lock_timeout)
        except psycopg.errors.InsufficientPrivilege:
            # another role registered this name: it is that role's instance, not a slot of ours
            log.info("instance %s belongs to another role; trying the next slot", candidate)
            yield Query(UNCLAIM, (candidate,))
            claimed.remove(candidate)
            continue
        return candidate, boot_id, recovered
    raise InstanceInUse(f"all {SLOTS} instance slots of {owner} on this host are in use or other roles'")


def register(
    instance: str, pid: int, takeover: bool, lock_timeout: float
) -> Steps[tuple[str, list[RecoveredLease]]]:
    """Registers a fresh boot id of the claimed `instance`; returns it and the leases given back."""
    yield Query(APPLICATION_NAME, ())
    boot_id = f"{instance}-{uuid.uuid4()}"
    try:
        rows = yield Query(REGISTER.format("takeover" if takeover else "recover"), (boot_id, instance, pid), lock_timeout)
    except psycopg.errors.ObjectInUse as error:  # the server saw the twin (55006): the claim's mistake
        raise InstanceInUse(str(error)) from error
    except psycopg.errors.LockNotAvailable as error:  # the server's detail names who holds it
        raise RecoverBlocked(instance, lock_timeout, error.diag.message_detail or "") from error
    recovered = [RecoveredLease(*row) for row in rows or []]
    for lease in recovered:
        log.warning(
            "%s: recovered the lease on %s (token %s) of an earlier incarnation, boot %s",
            printable(instance),
            printable(lease.work_item),
            lease.token,
            printable(lease.owner_boot_id),
        )
    return boot_id, recovered


def acquire(
    item: str, owner: str, pid: int, boot_id: str, scope: str | None, policy: RetryPolicy,
    task_table: str | None = None,
) -> Steps[Grant | Refused]:
    """Acquires `item`, retrying `busy` / `retry` with jitter; returns a grant that lets the effect go
    ahead (with the task's stage, read after the grant: no read of its own is needed), or the Refused
    outcome (held, busy, not_found). Raises Superseded: no outcome of an item, the process must stop."""
    for attempt in range(policy.attempts):
        acquired, outcome, *rest = _one((yield Query(ACQUIRE, (item, owner, pid, boot_id, scope, task_table))))
        token, holder, holder_pid, holder_boot_id, held_since, stage = rest
        grant = Grant(
            item, acquired, AcquireOutcome(outcome), token, holder, holder_pid, holder_boot_id, held_since, stage,
            task_table,
        )
        if grant.outcome not in (AcquireOutcome.BUSY, AcquireOutcome.RETRY):
            break
        if attempt + 1 < policy.attempts:
            yield policy.pause(attempt)
    else:
        return Refused(grant, policy.attempts)
    if grant.outcome is AcquireOutcome.SUPERSEDED:
        raise Superseded(grant)
    if grant.outcome in (AcquireOutcome.HELD, AcquireOutcome.NOT_FOUND):
        return Refused(grant, attempt + 1)
    if grant.outcome is AcquireOutcome.RECLAIMED:
        log.warning(
            "%s: reclaimed from %s (boot %s), a dead holder",
            printable(item),
            printable(grant.holder),
            printable(grant.holder_boot_id),
        )
    return grant


def forget(item: str, boot_id: str, known: Collection[int], task_table: str | None = None) -> Steps[int]:
    """Releases what an acquire of `item` whose answer was lost (cancelled, interrupted) may have been
    granted: this boot's lease on the item, if it is none of the `known` open ones. How many it ended."""
    rows = yield Query(FORGET, (item, task_table, boot_id, list(known), task_table))
    released = sum(1 for (ended,) in rows or [] if ended)
    if released:
        log.warning("%s: released the lease an interrupted acquire was granted", printable(item))
    return released


def commit(grant: Grant, expected: str, new: str, policy: RetryPolicy) -> Steps[CommitResult]:
    """`commit_stage_cas` under the grant, retrying `retry` (the lease is kept meanwhile). A grant
    without a token writes through `update_task_stage_cas`, which checks no lease."""
    if grant.token is None:
        query = Query(WRITE, (grant.item, expected, new, grant.task_table))
    else:
        query = Query(COMMIT, (grant.item, grant.token, expected, new, grant.task_table))
    for attempt in range(policy.attempts):
        applied, outcome, current = _one((yield query))
        result = CommitResult(applied, CasOutcome(outcome), current)
        if result.outcome is not CasOutcome.RETRY:
            break
        if attempt + 1 < policy.attempts:
            yield policy.pause(attempt)
    return result


def unclaim(claimed: list[str]) -> Steps[None]:
    """Lets go of every claim in `claimed`, on a connection that outlives the actor (the caller's)."""
    while claimed:
        yield Query(UNCLAIM, (claimed[-1],))
        claimed.pop()


def release(grant: Grant) -> Steps[bool]:
    """Ends the lease; False when it was no longer held (taken away, or a NULL-token grant)."""
    if grant.token is None:
        return False
    return bool(_one((yield Query(RELEASE, (grant.item, grant.token, grant.task_table))))[0])


def still_held(grant: Grant) -> Steps[bool]:
    """Whether the lease is still this role's. A NULL-token grant (kill-switch off, out of scope) has
    nothing to lose: True."""
    if grant.token is None:
        return True
    return bool(_one((yield Query(HELD, (grant.item, grant.token, grant.task_table))))[0])


class LeaseState:
    """What sync and async leases share: the grant and whether it is still open."""

    def __init__(self, grant: Grant, held: set[int]) -> None:
        self.grant = grant
        # the tokens of the actor's open leases, which this one is among while it is open
        self._held = held
        self.open = True

    @property
    def open(self) -> bool:
        return self._open

    @open.setter
    def open(self, value: bool) -> None:
        self._open = value
        if self.token is not None:
            (self._held.add if value else self._held.discard)(self.token)

    def __bool__(self) -> Literal[True]:
        """True, where a Refused outcome is false: `if not lease:` tells them apart (for mypy too)."""
        return True

    @property
    def item(self) -> str:
        return self.grant.item

    @property
    def token(self) -> int | None:
        return self.grant.token

    def _check_open(self) -> None:
        if not self.open:
            raise LeaseEnded(f"{self.item}: the lease was already committed or released")

    def _abandon_failed(self, error: Exception) -> None:
        log.error("%s: could not release the lease (token %s): %s", printable(self.item), self.token, error)

    def _after_commit(self, result: CommitResult, in_transaction: bool) -> CommitResult:
        # Every outcome but retry ends the attempt and the lease with it, once it commits: inside the
        # caller's transaction the lease stays open here, since a rollback keeps it on the server; the
        # block's end then releases it (false, changing nothing, when the transaction committed).
        self.open = result.outcome is CasOutcome.RETRY or in_transaction
        return result


C = TypeVar("C")
P = TypeVar("P")


class ActorBase(Generic[C, P]):
    """What sync.Actor and aio.AsyncActor share: their settings, the incarnation they run as, their
    connection C, and what it came from: a conninfo string (the actor opens and closes it), a connection
    of the caller's (used, never closed), or the caller's pool P (the actor's connection is taken from it
    for the actor's life; each lease borrows one more)."""

    _conn: C | None = None

    def __init__(
        self,
        conninfo: str | C | P,
        instance: str | None = None,
        *,
        owner: str = "actor",
        retry: RetryPolicy = RetryPolicy(),
        claim: bool = True,
        takeover: bool = False,
        prepare_threshold: int | None = 5,
        lock_timeout: float = 10.0,
    ) -> None:
        self.source = conninfo
        # the conninfo string, when the actor opens its connection itself
        self.conninfo: str | None = conninfo if isinstance(conninfo, str) else None
        self.owner, self.retry, self.claim = owner, retry, claim
        self.takeover = takeover
        # psycopg's: after how many runs a statement is prepared on the server; None never (a pooler).
        # Only for the connection the actor opens: a caller's keeps its own.
        self.prepare_threshold = prepare_threshold
        # how long start()'s recover waits for the instance's lock before RecoverBlocked
        self.lock_timeout = lock_timeout
        self.instance = instance
        self.pid = os.getpid()
        self.boot_id: str | None = None
        self.recovered: list[RecoveredLease] = []
        self._held: set[int] = set()
        # the instance names whose claim (a session advisory lock) the actor's connection holds
        self._claimed: list[str] = []

    @property
    def connection(self) -> C:
        """The actor's autocommit connection, also for the effect and the stage re-check."""
        if self._conn is None:
            raise RuntimeError("the actor is not started")
        return self._conn

    def _start(self) -> Steps[list[RecoveredLease]]:
        self.instance, self.boot_id, self.recovered = yield from start(
            self.owner, self.instance, self.pid, self.claim, self.takeover, self.lock_timeout, self._claimed
        )
        return self.recovered

    def _acquire(self, item: str | int, scope: str | None, task_table: str | None) -> Steps[Grant | Refused]:
        if self.boot_id is None:
            raise RuntimeError("start the actor first")
        return acquire(str(item), self.owner, self.pid, self.boot_id, scope, self.retry, task_table)

    def _forget(self, item: str | int, task_table: str | None) -> Steps[int]:
        assert self.boot_id is not None
        return forget(str(item), self.boot_id, self._held, task_table)

    def _unclaim(self) -> Steps[None]:
        """Lets go of the claims the actor's connection holds when it outlives the actor (the caller's):
        the instance's, or one a failed start() took."""
        return unclaim(self._claimed)
