"""orch_lease's Python client: transition leases and the stage CAS for actors, sync and asyncio, and the
alert events of NOTIFY orch_lease.

    with Actor(conninfo) as actor:                 # a fresh boot, recover at start
        with actor.try_lease(item) as lease:       # a Lease, or a Refused outcome (held, busy, not_found)
            if lease and lease.grant.stage == "queued":   # the stage, read after the grant
                ...                                # the effect
                result = lease.commit("queued", "merged")   # a CommitResult: outcomes are values

Exceptions are for what is no item's outcome: Superseded (stop the process), LeaseEnded, InstanceInUse,
RecoverBlocked, and database errors.
"""

from ._protocol import RetryPolicy
from .aio import AsyncActor, AsyncLease, AsyncListener
from .events import AlertEvent, EventKind, UnsupportedPayload, parse_payload
from .outcomes import (
    AcquireOutcome,
    CasOutcome,
    CommitResult,
    Grant,
    InstanceInUse,
    LeaseBusy,
    LeaseEnded,
    LeaseHeld,
    LeaseNotAcquired,
    OrchLeaseError,
    RecoverBlocked,
    RecoveredLease,
    Refused,
    Superseded,
    TaskNotFound,
)
from .sync import Actor, Lease, Listener

__version__ = "0.5.0"
__all__ = [
    "AcquireOutcome",
    "Actor",
    "AlertEvent",
    "AsyncActor",
    "AsyncLease",
    "AsyncListener",
    "CasOutcome",
    "CommitResult",
    "EventKind",
    "Grant",
    "InstanceInUse",
    "Lease",
    "LeaseBusy",
    "LeaseEnded",
    "LeaseHeld",
    "LeaseNotAcquired",
    "Listener",
    "OrchLeaseError",
    "RecoverBlocked",
    "RecoveredLease",
    "Refused",
    "RetryPolicy",
    "Superseded",
    "TaskNotFound",
    "UnsupportedPayload",
    "parse_payload",
]
