"""orch_lease's Python client: transition leases and the stage CAS for actors, sync and asyncio, and the
alert events of NOTIFY orch_lease.

    with Actor(conninfo) as actor:                 # a fresh boot, recover at start
        with actor.lease(item) as lease:           # LeaseHeld / LeaseBusy / TaskNotFound / Superseded instead
            if lease.grant.stage == "queued":      # the stage, read after the grant: no read of your own
                ...                                # the effect
                result = lease.commit("queued", "merged")
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
    "RetryPolicy",
    "Superseded",
    "TaskNotFound",
    "UnsupportedPayload",
    "parse_payload",
]
