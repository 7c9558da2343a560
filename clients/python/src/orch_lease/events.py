"""The alert events of `NOTIFY orch_lease`, typed, and what the sync and async listeners share.

Payloads are read by their `version` key: version 1 is one event (the object itself), version 2 a batch
(`{"version": 2, "events": [...]}`, one notification per statement). Any other version, or a payload that
is not such JSON, raises UnsupportedPayload, which carries the raw text: the listeners raise it to the
caller (iterate again to go on), the alert bridge forwards the raw text unparsed.
"""

from __future__ import annotations

import datetime
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from .outcomes import OrchLeaseError

log = logging.getLogger("orch_lease")

CHANNEL = "orch_lease"


class EventKind(str, Enum):
    """What is announced: the takeovers, and the kill-switch switched (`set_enabled`)."""

    RECLAIMED = "reclaimed"
    REAPED = "reaped"
    FORCED = "forced"
    SWITCHED = "switched"


class UnsupportedPayload(OrchLeaseError):
    """A payload of a version this client does not know (a newer server), or not an orch_lease payload."""

    def __init__(self, payload: str, why: str) -> None:
        super().__init__(f"unsupported NOTIFY orch_lease payload ({why}): {payload[:200]}")
        self.payload = payload


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One takeover, or the kill-switch switched. A takeover's `outcome` is `reclaimed`, `recovered`,
    `stale`, `ceiling` or `forced`; `old_*` name the holder the lease was taken from, `new_*` the acquire
    that took it over (else None). A switch (`event` SWITCHED) has `outcome` `off` or `on`, `work_item`
    '', the admin's `reason` and `by_role`, and no `old_*` or `new_*`. Text values
    may be cut to 120 characters plus `…` (`truncated`); `data` is the event's JSON object as sent."""

    version: int
    event_id: int
    at: datetime.datetime
    event: EventKind
    outcome: str
    work_item: str
    old_owner: str | None
    old_token: int | None
    old_boot_id: str | None
    new_owner: str | None
    new_token: int | None
    reason: str | None
    by_role: str | None
    truncated: bool
    data: dict[str, Any]

    @classmethod
    def from_json(cls, version: int, data: dict[str, Any]) -> AlertEvent:
        return cls(
            version=version,
            event_id=data["event_id"],
            at=datetime.datetime.fromisoformat(data["at"]),
            event=EventKind(data["event"]),
            outcome=data["outcome"],
            work_item=data["work_item"],
            old_owner=data["old_owner"],
            old_token=data["old_token"],
            old_boot_id=data["old_boot_id"],
            new_owner=data["new_owner"],
            new_token=data["new_token"],
            reason=data["reason"],
            by_role=data["by_role"],
            truncated=data["truncated"],
            data=data,
        )


def parse_payload(payload: str) -> list[AlertEvent]:
    """The events of one notification, in order."""
    try:
        message = json.loads(payload)
        version = message["version"] if isinstance(message, dict) else None
        if version == 1:
            return [AlertEvent.from_json(1, message)]
        if version == 2:
            return [AlertEvent.from_json(2, event) for event in message["events"]]
    except (ValueError, KeyError, TypeError) as error:
        raise UnsupportedPayload(payload, f"unreadable: {error!r}") from error
    raise UnsupportedPayload(payload, f"version {version!r}")


class ListenerBase:
    """The listeners' settings and bookkeeping; `sync.Listener` and `aio.AsyncListener` add the I/O."""

    LISTEN = f"LISTEN {CHANNEL}"
    # How long one wait for notifications lasts before the connection is probed.
    POLL = 30.0

    def __init__(
        self,
        conninfo: str,
        *,
        duration: float | None = None,
        reconnect_delay: float = 1.0,
        on_listen: Callable[[], None] | None = None,
    ) -> None:
        self.conninfo, self.duration, self.reconnect_delay = conninfo, duration, reconnect_delay
        self.on_listen = on_listen
        self.reconnects = 0
        self._connected_before = False

    def _deadline(self) -> float | None:
        return None if self.duration is None else time.monotonic() + self.duration

    @staticmethod
    def _expired(deadline: float | None) -> bool:
        return deadline is not None and time.monotonic() >= deadline

    def _poll(self, deadline: float | None) -> float:
        return self.POLL if deadline is None else max(0.0, min(self.POLL, deadline - time.monotonic()))

    def _listening(self) -> None:
        if self._connected_before:
            self.reconnects += 1
            log.warning("listening on %s again (reconnect %d)", CHANNEL, self.reconnects)
        self._connected_before = True
        if self.on_listen is not None:
            self.on_listen()

    @staticmethod
    def _lost(error: Exception) -> None:
        log.warning("lost the %s listener's connection (%s); reconnecting", CHANNEL, error)

    @staticmethod
    def parse(payload: str) -> list[AlertEvent]:
        return parse_payload(payload)
