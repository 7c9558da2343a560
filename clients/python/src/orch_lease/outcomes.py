"""What orch_lease answers, typed: every outcome an Enum member, every result a frozen dataclass, and the
exceptions the client raises where going on would be wrong."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal


class AcquireOutcome(str, Enum):
    """`transition_lease_acquire`'s outcomes (docs/sql-reference.md)."""

    ACQUIRED = "acquired"
    HELD = "held"
    RECLAIMED = "reclaimed"
    BUSY = "busy"
    RETRY = "retry"
    SUPERSEDED = "superseded"
    NOT_FOUND = "not_found"
    DISABLED = "disabled"
    OUT_OF_SCOPE = "out_of_scope"


class CasOutcome(str, Enum):
    """`commit_stage_cas`'s (and `update_task_stage_cas`'s) outcomes."""

    APPLIED = "applied"
    STAGE_MISMATCH = "stage_mismatch"
    NOT_FOUND = "not_found"
    LEASE_LOST = "lease_lost"
    NOT_HELD = "not_held"
    INVALID_TRANSITION = "invalid_transition"
    RETRY = "retry"
    UNCONDITIONAL = "unconditional"


@dataclass(frozen=True, slots=True)
class Grant:
    """One `lease_grant` row. `token` is None for `disabled` and `out_of_scope` grants (nothing written),
    `holder*` name the holder that refused it or the dead one it was reclaimed from. `stage` is the
    task's stage read after the grant (0.5.0): what the effect acts on and what `commit` expects; None on
    a refusal, and for a task with no row yet (a table registered with `rows_created_later`). `task_table`
    is the task table the lease was asked on (0.5.0; None: the only one registered), which commit,
    release and still_held name too."""

    item: str
    acquired: bool
    outcome: AcquireOutcome
    token: int | None
    holder: str | None
    holder_pid: int | None
    holder_boot_id: str | None
    held_since: datetime.datetime | None
    stage: str | None
    task_table: str | None = None


@dataclass(frozen=True, slots=True)
class CommitResult:
    """One `cas_result` row: `current_stage` is the stage found by a `stage_mismatch`."""

    applied: bool
    outcome: CasOutcome
    current_stage: str | None


@dataclass(frozen=True, slots=True)
class Refused:
    """What `try_lease` gives instead of a lease: the acquire granted nothing — `held` by a live owner,
    still `busy` / `retry` after `attempts` calls, or `not_found` (no task has this id). It is false, and
    has no commit: `if not lease: continue` before the effect (mypy --strict insists on it)."""

    grant: Grant
    attempts: int

    @property
    def outcome(self) -> AcquireOutcome:
        return self.grant.outcome

    def __bool__(self) -> Literal[False]:
        return False

    def error(self) -> LeaseNotAcquired:
        """The exception `lease()` (deprecated) raises for it."""
        if self.outcome is AcquireOutcome.HELD:
            return LeaseHeld(self.grant)
        if self.outcome is AcquireOutcome.NOT_FOUND:
            return TaskNotFound(self.grant)
        return LeaseBusy(self.grant, self.attempts)


@dataclass(frozen=True, slots=True)
class RecoveredLease:
    """A lease of an earlier incarnation of this instance that `transition_lease_recover` gave back."""

    work_item: str
    token: int
    owner: str
    owner_pid: int
    owner_boot_id: str
    acquired_at: datetime.datetime


class OrchLeaseError(Exception):
    """Everything this client raises itself (database errors come through as psycopg's, SQLSTATE kept):
    what no caller should go on from as if it were an item's outcome. Outcomes are returned (Refused,
    CommitResult)."""


class LeaseNotAcquired(OrchLeaseError):
    """No lease: the block that would have done the effect did not run. Raised by the deprecated
    `lease()` only (`try_lease()` gives a Refused instead)."""

    def __init__(self, grant: Grant, why: str) -> None:
        super().__init__(f"{grant.item}: {why}")
        self.grant = grant


class LeaseHeld(LeaseNotAcquired):
    """A live owner holds the item (`held`): someone else owns this transition."""

    def __init__(self, grant: Grant) -> None:
        super().__init__(grant, f"held by {grant.holder} (pid {grant.holder_pid}, boot {grant.holder_boot_id})")


class TaskNotFound(LeaseNotAcquired):
    """No task has this id (`not_found`, 0.5.0): a wrong id, or arguments swapped. Nothing was granted."""

    def __init__(self, grant: Grant) -> None:
        super().__init__(grant, "no task has this id")


class LeaseBusy(LeaseNotAcquired):
    """Still `busy` or `retry` after every attempt: try the item again later."""

    def __init__(self, grant: Grant, attempts: int) -> None:
        super().__init__(grant, f"{grant.outcome.value} after {attempts} attempts")


class Superseded(OrchLeaseError):
    """A newer incarnation of this instance registered itself: this process is a zombie and must stop.
    Deliberately not a LeaseNotAcquired, so that a handler that skips items does not swallow it."""

    def __init__(self, grant: Grant) -> None:
        super().__init__(f"{grant.item}: this process's boot was superseded by a newer incarnation; stop")
        self.grant = grant


class InstanceInUse(OrchLeaseError):
    """Another live process already runs as this instance: two processes with one instance name would
    supersede each other and redo effects (issue #21). `holders` are (pid, role, application_name,
    backend_start) of the sessions that hold the instance's claim, when that is what refused it."""

    holders: list[tuple[Any, ...]] = []

    @classmethod
    def claimed(cls, instance: str, holders: list[tuple[Any, ...]]) -> InstanceInUse:
        who = "; ".join(
            f"pid {pid} (role {role!r}, application_name {name!r}, since {since:%Y-%m-%d %H:%M:%S%z})"
            for pid, role, name, since in holders
        )
        error = cls(
            f"instance {instance!r}: its claim (an advisory lock any login can take) is held by "
            f"{who or 'a session that has let it go since: start again'}. Another process of this instance, "
            f"or a session that is none: end that one (pg_terminate_backend), or give each process its own"
        )
        error.holders = holders
        return error


class LeaseEnded(OrchLeaseError):
    """The lease was already committed or released: nothing may be done under it any more."""


class RecoverBlocked(OrchLeaseError):
    """start() gave up: its recover waited `lock_timeout` seconds for the instance's live boot or one of
    its leases, which a transaction not yet ended holds. `detail` is the server's: the sessions (pid,
    role) and prepared transactions that hold locks on them; end the one that is no actor of yours
    (pg_terminate_backend, or ROLLBACK PREPARED) — docs/runbook.md, "A transaction that holds an item"."""

    def __init__(self, instance: str, seconds: float, detail: str) -> None:
        super().__init__(f"instance {instance!r}: recover waited {seconds:g} s and gave up. {detail}")
        self.instance = instance
        self.detail = detail
