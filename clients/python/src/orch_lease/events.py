"""The alert events of `NOTIFY orch_lease`, typed, and what the sync and async listeners share.

Payloads are read by their `version` key: version 1 is one event (the object itself), version 2 a batch
(`{"version": 2, "events": [...]}`, one notification per statement), version 3 (0.5.0) the same batch
whose events name their work item's task table (`task_table`, schema-qualified; null for none). Any role that can connect may
`NOTIFY orch_lease`, so a payload is untrusted input: one longer than NOTIFY allows (8000 bytes), nested
deeper than a batch, with more events than a payload of the server can hold, with a field missing, of
another type or longer than the server sends, of any other version, or not JSON at all raises
UnsupportedPayload (parse_payload), which carries the raw text. The listeners log it and go on; the alert
bridge forwards it as one string value.
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
# NOTIFY's limit: PostgreSQL sends no longer payload.
MAX_PAYLOAD = 8000
# A version-2 or -3 batch nests three deep: the message, its events array, an event.
MAX_DEPTH = 3
# An event of the server takes more than 200 bytes, so no payload of the server holds more events.
MAX_EVENTS = MAX_PAYLOAD // 200
# The server cuts each text value to 120 characters and `…`.
MAX_TEXT = 121
# A task table's name is never cut: two identifiers of at most 63 bytes, quoted, each quote doubled.
MAX_TABLE = 2 * (2 + 2 * 63) + 1


def printable(value: object, limit: int = 200) -> str:
    """`value` as one line for a log: backslashes, control characters and non-ASCII escaped, cut to `limit`."""
    text = value if isinstance(value, str) else repr(value)
    return text[:limit].encode("unicode_escape").decode("ascii") + ("..." if len(text) > limit else "")


def _depth(text: str) -> int:
    """How deep the arrays and objects of JSON `text` nest (strings skipped)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            escaped, in_string = (False, True) if escaped else (char == "\\", char != '"')
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


class EventKind(str, Enum):
    """What is announced: the takeovers, and the kill-switch switched (`set_enabled`)."""

    RECLAIMED = "reclaimed"
    REAPED = "reaped"
    FORCED = "forced"
    SWITCHED = "switched"


class UnsupportedPayload(OrchLeaseError):
    """A payload of a version this client does not know (a newer server), or not an orch_lease payload."""

    def __init__(self, payload: str, why: str) -> None:
        super().__init__(f"unsupported NOTIFY orch_lease payload ({printable(why)}): {printable(payload)}")
        self.payload = payload


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One takeover, or the kill-switch switched. A takeover's `outcome` is `reclaimed`, `recovered`,
    `stale`, `ceiling` or `forced`; `old_*` name the holder the lease was taken from, `new_*` the acquire
    that took it over (else None). A switch (`event` SWITCHED) has `outcome` `off` or `on`, `work_item`
    '', the admin's `reason` and `by_role`, and no `old_*` or `new_*`. Text values
    may be cut to 120 characters plus `…` (`truncated`); `data` is the event's JSON object as sent.
    `task_table` (version 3) is the work item's task table, schema-qualified (None: no table, or an
    earlier version's payload)."""

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
    task_table: str | None = None

    @classmethod
    def from_json(cls, version: int, data: dict[str, Any]) -> AlertEvent:
        """The event of a payload's JSON object; TypeError or ValueError for one the server would not send."""
        values: dict[str, Any] = {}
        for name, kind in EVENT_FIELDS.items():
            value = data[name]
            if value is None and name not in REQUIRED:
                values[name] = None
            elif type(value) is not kind or (isinstance(value, str) and len(value) > MAX_TEXT):
                raise TypeError(f"{name} is not a {kind.__name__} the server sends")
            else:
                values[name] = value
        if version >= 3:
            table = data["task_table"]
            if table is not None and (type(table) is not str or len(table) > MAX_TABLE):
                raise TypeError("task_table is not a table name the server sends")
            values["task_table"] = table
        values["at"] = datetime.datetime.fromisoformat(values["at"])
        values["event"] = EventKind(values["event"])
        return cls(version=version, data=data, **values)

    def to_json(self) -> dict[str, Any]:
        """The documented fields only, as sent (`version` says which payload version it came in)."""
        fields = [*EVENT_FIELDS, "task_table"] if self.version >= 3 else list(EVENT_FIELDS)
        return {"version": self.version, **{name: self.data[name] for name in fields}}


# An event's fields as a payload carries them (JSON types: `at` and `event` are strings there), and those
# that are never null.
EVENT_FIELDS: dict[str, type] = {
    "event_id": int, "at": str, "event": str, "outcome": str, "work_item": str, "old_owner": str,
    "old_token": int, "old_boot_id": str, "new_owner": str, "new_token": int, "reason": str, "by_role": str,
    "truncated": bool,
}
REQUIRED = frozenset({"event_id", "at", "event", "outcome", "work_item", "truncated"})


def parse_payload(payload: str) -> list[AlertEvent]:
    """The events of one notification, in order; UnsupportedPayload for anything else."""
    if len(payload.encode()) > MAX_PAYLOAD:
        raise UnsupportedPayload(payload, f"longer than {MAX_PAYLOAD} bytes")
    if _depth(payload) > MAX_DEPTH:
        raise UnsupportedPayload(payload, f"nested deeper than {MAX_DEPTH}")
    try:
        message = json.loads(payload)
        version = message["version"] if isinstance(message, dict) else None
        if version == 1 and type(version) is int:
            return [AlertEvent.from_json(1, message)]
        if version in (2, 3) and type(version) is int:
            events = message["events"]
            if not isinstance(events, list) or len(events) > MAX_EVENTS:
                raise ValueError(f"events is not a list of at most {MAX_EVENTS}")
            return [AlertEvent.from_json(version, event) for event in events]
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise UnsupportedPayload(payload, f"unreadable: {error}") from error
    raise UnsupportedPayload(payload, f"version {printable(version, 20)}")


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
        # payloads that were no orch_lease announcement (logged and skipped)
        self.unsupported = 0
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

    def parse(self, payload: str) -> list[AlertEvent]:
        """The events of `payload`; none, logged, for a payload that is none of the server's."""
        try:
            return parse_payload(payload)
        except UnsupportedPayload as error:
            self.unsupported += 1
            log.warning("skipped a NOTIFY %s payload: %s", CHANNEL, error)
            return []
