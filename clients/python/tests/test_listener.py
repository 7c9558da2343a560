"""The listeners against the real server (forced releases, recovers, a lost connection), and the payload
versions they read."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import psycopg
import pytest
from conftest import dead_incarnation, login, one

from orch_lease import AlertEvent, AsyncListener, EventKind, Listener, UnsupportedPayload, parse_payload

Conn = psycopg.Connection[tuple[Any, ...]]


class Collector:
    """A sync Listener iterated in a thread until it has `wanted` events; `listening` is set each time it
    is listening (again)."""

    def __init__(self, dsn: str, wanted: int) -> None:
        self.events: list[AlertEvent] = []
        self.listening = threading.Semaphore(0)
        self.listener = Listener(dsn, duration=30, reconnect_delay=0.2, on_listen=self.listening.release)
        self.thread = threading.Thread(target=self._run, args=(wanted,))
        self.thread.start()
        assert self.listening.acquire(timeout=10), "not listening"

    def _run(self, wanted: int) -> None:
        for event in self.listener:
            self.events.append(event)
            if len(self.events) == wanted:
                return

    def join(self) -> list[AlertEvent]:
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), f"only {len(self.events)} events arrived"
        return self.events


TERMINATE_LISTENER = """SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                         WHERE query = 'LISTEN orch_lease' AND datname = current_database()"""


def acquire(admin: Conn, item: str, owner: str, boot: str) -> int:
    return int(one(admin, "SELECT token FROM orch_lease.transition_lease_acquire(%s, %s, 1, %s)", (item, owner, boot)))


def test_a_forced_release_arrives_typed(dsn: str, admin: Conn) -> None:
    collector = Collector(dsn, 1)
    token = acquire(admin, "21", "monitor", "monitor-boot")
    admin.execute("SELECT orch_lease.transition_lease_force_release('21', %s, 'stuck since 03:10')", (token,))
    [event] = collector.join()
    assert (event.event, event.outcome, event.work_item) == (EventKind.FORCED, "forced", "21")
    assert (event.old_owner, event.old_token, event.old_boot_id) == ("monitor", token, "monitor-boot")
    assert (event.reason, event.by_role, event.truncated) == ("stuck since 03:10", "postgres", False)
    assert event.version in (1, 2, 3) and event.at.tzinfo is not None


def test_the_kill_switch_arrives_typed(dsn: str, admin: Conn) -> None:
    collector = Collector(dsn, 2)
    assert one(admin, "SELECT orch_lease.set_enabled(false, 'INC-7: leases stuck')") is True
    assert one(admin, "SELECT orch_lease.set_enabled(true, 'INC-7 over')") is True
    off, on = collector.join()
    assert (off.event, off.outcome, off.work_item, off.reason) == (EventKind.SWITCHED, "off", "", "INC-7: leases stuck")
    assert (on.event, on.outcome, on.reason, on.by_role) == (EventKind.SWITCHED, "on", "INC-7 over", "postgres")
    assert (off.old_owner, off.old_token, off.new_owner, off.new_token) == (None, None, None, None)


def test_every_recovered_lease_arrives(dsn: str, admin: Conn) -> None:
    collector = Collector(dsn, 2)
    dead_incarnation(dsn, "old", "merger", "22", "23")
    admin.execute("SELECT count(*) FROM orch_lease.transition_lease_recover('new', 'merger', 2)")
    events = collector.join()
    assert sorted((e.work_item, e.event, e.outcome) for e in events) == [
        ("22", EventKind.RECLAIMED, "recovered"),
        ("23", EventKind.RECLAIMED, "recovered"),
    ]


def test_the_listener_reconnects_by_itself(dsn: str, admin: Conn) -> None:
    collector = Collector(dsn, 1)
    assert one(admin, TERMINATE_LISTENER) == 1
    assert collector.listening.acquire(timeout=10), "did not listen again"
    token = acquire(admin, "24", "monitor", "monitor-boot")
    admin.execute("SELECT orch_lease.transition_lease_force_release('24', %s)", (token,))
    [event] = collector.join()
    assert event.work_item == "24" and collector.listener.reconnects == 1


def test_the_async_listener_and_its_reconnect(dsn: str, admin: Conn) -> None:
    async def scenario() -> tuple[AlertEvent, int]:
        listening = asyncio.Event()
        listener = AsyncListener(dsn, duration=30, on_listen=listening.set)

        async def first() -> AlertEvent:
            async for event in listener:
                return event
            raise AssertionError("no event")

        task = asyncio.create_task(first())
        await asyncio.wait_for(listening.wait(), 10)
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            # it reconnects by itself after losing its connection
            listening.clear()
            await conn.execute(TERMINATE_LISTENER)
            await asyncio.wait_for(listening.wait(), 10)
            await conn.execute("SELECT orch_lease.transition_lease_acquire('25', 'monitor', 1, 'b')")
            await conn.execute("SELECT orch_lease.transition_lease_force_release('25', NULL, 'async')")
        return await asyncio.wait_for(task, 30), listener.reconnects

    event, reconnects = asyncio.run(scenario())
    assert (event.event, event.work_item, event.reason) == (EventKind.FORCED, "25", "async")
    assert reconnects == 1


V1 = """{"version":1,"event_id":3,"at":"2026-11-28T18:44:20.561+00:00","event":"forced","outcome":"forced",
 "work_item":"PR-130","old_owner":"monitor","old_token":41,"old_boot_id":"monitor-7f3a",
 "new_owner":null,"new_token":null,"reason":"actor crashed mid-merge","by_role":"oncall","truncated":false}"""


def test_payload_versions() -> None:
    [one_event] = parse_payload(V1)
    assert (one_event.version, one_event.work_item, one_event.old_token) == (1, "PR-130", 41)
    element = V1.replace('"version":1,', "")
    batch = parse_payload(f'{{"version":2,"events":[{element},{element.replace("PR-130", "PR-131")}]}}')
    assert [(e.version, e.work_item) for e in batch] == [(2, "PR-130"), (2, "PR-131")]
    # version 3 (0.5.0): each event names its task table (#27)
    tabled = element.replace('"truncated":false', '"truncated":false,"task_table":"public.jobs"')
    [v3] = parse_payload(f'{{"version":3,"events":[{tabled}]}}')
    assert (v3.version, v3.task_table, v3.to_json()["task_table"]) == (3, "public.jobs", "public.jobs")
    for unreadable in ('{"version":4,"events":[]}', f'{{"version":3,"events":[{element}]}}', "not json",
                       '{"event":"forced"}', '{"version":1}'):
        with pytest.raises(UnsupportedPayload) as error:
            parse_payload(unreadable)
        assert error.value.payload == unreadable


def test_a_hostile_payload_is_skipped_and_the_listener_goes_on(dsn: str, admin: Conn) -> None:
    nobody = login(admin, "nobody")  # no grant at all: it can still NOTIFY
    collector = Collector(dsn, 1)
    with psycopg.connect(nobody, autocommit=True) as outsider:
        outsider.execute("SELECT pg_notify('orch_lease', repeat('[', 5000))")
        outsider.execute("""SELECT pg_notify('orch_lease', '{"version":1,"event_id":"1; DROP"}')""")
    token = acquire(admin, "29", "monitor", "monitor-boot")
    admin.execute("SELECT orch_lease.transition_lease_force_release('29', %s)", (token,))
    [event] = collector.join()
    assert event.work_item == "29" and collector.listener.unsupported == 2


def test_the_parser_is_bounded() -> None:
    element = V1.replace('"version":1,', "")
    for hostile, why in (
        ("[" * 5000, "nested deeper"),
        ('{"version":2,"events":[[[[]]]]}', "nested deeper"),
        ("x" * 8001, "longer than 8000 bytes"),
        ('{"version":2,"events":[' + ",".join([element] * 41) + "]}", "longer than 8000 bytes"),
        ('{"version":2,"events":[' + ",".join(['{"event_id":1}'] * 41) + "]}", "at most 40"),
        (V1.replace("41", '"41"'), "old_token is not a int"),
        (V1.replace('"PR-130"', '"' + "x" * 122 + '"'), "work_item is not a str"),
        (V1.replace("false", "0"), "truncated is not a bool"),
        ('{"version":true}', "version True"),
    ):
        with pytest.raises(UnsupportedPayload, match=why) as error:
            parse_payload(hostile)
        assert error.value.payload == hostile
