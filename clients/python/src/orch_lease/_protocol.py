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
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .outcomes import (
    AcquireOutcome,
    CasOutcome,
    CommitResult,
    Grant,
    InstanceInUse,
    LeaseEnded,
    LeaseBusy,
    LeaseHeld,
    RecoveredLease,
    Superseded,
)

log = logging.getLogger("orch_lease")

Row = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Query:
    """Run `sql` with `params` in its own transaction (autocommit) and send back every row."""

    sql: str
    params: tuple[Any, ...]


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

    def pause(self, attempt: int) -> Pause:
        return Pause(random.uniform(0, min(self.cap, self.base * 2**attempt)))


# A session advisory lock per instance name, held by the actor's connection for its life: a second live
# process with the same instance is refused before its recover could supersede the first (issue #21).
CLAIM = "SELECT pg_try_advisory_lock(hashtextextended('orch_lease instance ' || %s, 0))"
# How many `<owner>-<host>-<slot>` names an actor without an instance tries before giving up.
SLOTS = 64
# A named instance is tried for about a second: the session of a process that just ended (a restart)
# holds its claim until the server has noticed it is gone.
CLAIM_TRIES, CLAIM_PAUSE = 10, 0.1
# recover, or transition_lease_takeover: the same, but it also supersedes a live boot whose session is
# still connected (which recover refuses, 55006).
REGISTER = (
    "SELECT work_item, token, owner, owner_pid, owner_boot_id, acquired_at"
    " FROM orch_lease.transition_lease_{}(%s, %s, %s)"
)
ACQUIRE = (
    "SELECT acquired, outcome, token, holder, holder_pid, holder_boot_id, held_since"
    " FROM orch_lease.transition_lease_acquire(%s, %s, %s, %s, %s)"
)
COMMIT = "SELECT applied, outcome, current_stage FROM orch_lease.commit_stage_cas(%s, %s, %s, %s)"
RELEASE = "SELECT orch_lease.transition_lease_release(%s, %s)"
HELD = "SELECT orch_lease.transition_lease_held(%s, %s)"


def _one(rows: list[Row] | None) -> Row:
    assert rows is not None and len(rows) == 1, rows
    return rows[0]


def start(
    owner: str, instance: str | None, pid: int, claim: bool, takeover: bool
) -> Steps[tuple[str, str, list[RecoveredLease]]]:
    """Claims the instance (the first free `<owner>-<host>-<slot>` when None), registers a fresh boot id
    with recover (or takeover) and returns (instance, boot id, the leases of earlier incarnations it
    gave back)."""
    if instance is None:
        if not claim:
            raise ValueError("an actor that does not claim its instance must be given one")
        for slot in range(SLOTS):
            candidate = f"{owner}-{socket.gethostname()}-{slot}"
            if _one((yield Query(CLAIM, (candidate,))))[0]:
                instance = candidate
                break
        else:
            raise InstanceInUse(f"all {SLOTS} instance slots of {owner} on this host are in use")
    elif claim:
        for _ in range(CLAIM_TRIES):
            if _one((yield Query(CLAIM, (instance,))))[0]:
                break
            yield Pause(CLAIM_PAUSE)
        else:
            raise InstanceInUse(f"instance {instance!r} is in use by another live process: give each process its own")
    # pg_stat_activity then says which instance a backend serves.
    yield Query("SELECT set_config('application_name', left(%s, 63), false)", (f"orch_lease {instance}",))
    boot_id = f"{instance}-{uuid.uuid4()}"
    rows = yield Query(REGISTER.format("takeover" if takeover else "recover"), (boot_id, instance, pid))
    recovered = [RecoveredLease(*row) for row in rows or []]
    for lease in recovered:
        log.warning(
            "%s: recovered the lease on %s (token %s) of an earlier incarnation, boot %s",
            instance,
            lease.work_item,
            lease.token,
            lease.owner_boot_id,
        )
    return instance, boot_id, recovered


def acquire(
    item: str, owner: str, pid: int, boot_id: str, scope: str | None, policy: RetryPolicy
) -> Steps[Grant]:
    """Acquires `item`, retrying `busy` / `retry` with jitter; returns a grant that lets the effect go
    ahead, raises for every other outcome."""
    for attempt in range(policy.attempts):
        acquired, outcome, *rest = _one((yield Query(ACQUIRE, (item, owner, pid, boot_id, scope))))
        grant = Grant(item, acquired, AcquireOutcome(outcome), *rest)
        if grant.outcome not in (AcquireOutcome.BUSY, AcquireOutcome.RETRY):
            break
        if attempt + 1 < policy.attempts:
            yield policy.pause(attempt)
    else:
        raise LeaseBusy(grant, policy.attempts)
    if grant.outcome is AcquireOutcome.SUPERSEDED:
        raise Superseded(grant)
    if grant.outcome is AcquireOutcome.HELD:
        raise LeaseHeld(grant)
    if grant.outcome is AcquireOutcome.RECLAIMED:
        log.warning("%s: reclaimed from %s (boot %s), a dead holder", item, grant.holder, grant.holder_boot_id)
    return grant


def commit(grant: Grant, expected: str, new: str, policy: RetryPolicy) -> Steps[CommitResult]:
    """`commit_stage_cas` under the grant, retrying `retry` (the lease is kept meanwhile)."""
    for attempt in range(policy.attempts):
        applied, outcome, current = _one((yield Query(COMMIT, (grant.item, grant.token, expected, new))))
        result = CommitResult(applied, CasOutcome(outcome), current)
        if result.outcome is not CasOutcome.RETRY:
            break
        if attempt + 1 < policy.attempts:
            yield policy.pause(attempt)
    return result


def release(grant: Grant) -> Steps[bool]:
    """Ends the lease; False when it was no longer held (taken away, or a NULL-token grant)."""
    if grant.token is None:
        return False
    return bool(_one((yield Query(RELEASE, (grant.item, grant.token))))[0])


def still_held(grant: Grant) -> Steps[bool]:
    """Whether the lease is still this role's. A NULL-token grant (kill-switch off, out of scope) has
    nothing to lose: True."""
    if grant.token is None:
        return True
    return bool(_one((yield Query(HELD, (grant.item, grant.token))))[0])


class LeaseState:
    """What sync and async leases share: the grant and whether it is still open."""

    def __init__(self, grant: Grant) -> None:
        self.grant = grant
        self.open = True

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
        log.error("%s: could not release the lease (token %s): %s", self.item, self.token, error)

    def _after_commit(self, result: CommitResult) -> CommitResult:
        # Every outcome but retry ends the attempt and the lease with it.
        self.open = result.outcome is CasOutcome.RETRY
        return result


C = TypeVar("C")


class ActorBase(Generic[C]):
    """What sync.Actor and aio.AsyncActor share: their settings, the incarnation they run as, and their
    connection C."""

    _conn: C | None = None

    def __init__(
        self,
        conninfo: str,
        instance: str | None = None,
        *,
        owner: str = "actor",
        retry: RetryPolicy = RetryPolicy(),
        claim: bool = True,
        takeover: bool = False,
        prepare_threshold: int | None = 5,
    ) -> None:
        self.conninfo, self.owner, self.retry, self.claim = conninfo, owner, retry, claim
        self.takeover = takeover
        # psycopg's: after how many runs a statement is prepared on the server; None never (a pooler)
        self.prepare_threshold = prepare_threshold
        self.instance = instance
        self.pid = os.getpid()
        self.boot_id: str | None = None
        self.recovered: list[RecoveredLease] = []

    @property
    def connection(self) -> C:
        """The actor's autocommit connection, also for the effect and the stage re-check."""
        if self._conn is None:
            raise RuntimeError("the actor is not started")
        return self._conn

    def _start(self) -> Steps[list[RecoveredLease]]:
        self.instance, self.boot_id, self.recovered = yield from start(
            self.owner, self.instance, self.pid, self.claim, self.takeover
        )
        return self.recovered

    def _acquire(self, item: str | int, scope: str | None) -> Steps[Grant]:
        if self.boot_id is None:
            raise RuntimeError("start the actor first")
        return acquire(str(item), self.owner, self.pid, self.boot_id, scope, self.retry)
