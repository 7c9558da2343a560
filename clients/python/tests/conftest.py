"""The suite runs against a real PostgreSQL with orch_lease installed: ORCH_LEASE_DSN names a superuser
connection to it (scripts/python-client-test.sh starts a throwaway cluster and sets it). Every test gets a
database of its own, with the extension, a task table `task (id bigint, stage text)` holding tasks 1..40
in stage `queued`, registered, and an `effect` table for the effects the tests' actors perform."""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

BASE_DSN = os.environ.get("ORCH_LEASE_DSN", "")

SCHEMA = """
CREATE EXTENSION orch_lease;
CREATE TABLE task (id bigint PRIMARY KEY, stage text NOT NULL);
CREATE TABLE effect (task_id bigint NOT NULL, actor text NOT NULL);
INSERT INTO task SELECT i, 'queued' FROM generate_series(1, 40) i;
SELECT orch_lease.register_task_table('task');
"""


def pytest_configure(config: pytest.Config) -> None:
    if not BASE_DSN:
        raise pytest.UsageError("ORCH_LEASE_DSN is not set: run scripts/python-client-test.sh")


def fresh_database(name: str) -> str:
    """An empty database NAME (dropped first if it exists); its conninfo."""
    with psycopg.connect(BASE_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return make_conninfo(BASE_DSN, dbname=name)


@pytest.fixture
def dsn(request: pytest.FixtureRequest) -> Iterator[str]:
    name = "t_" + re.sub(r"\W", "_", request.node.name)[:50].lower()
    conninfo = fresh_database(name)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(SCHEMA)
    yield conninfo
    with psycopg.connect(BASE_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def admin(dsn: str) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    """A superuser autocommit connection to the test's database."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        yield conn


def one(conn: psycopg.Connection[tuple[Any, ...]], sql: str, params: tuple[Any, ...] = ()) -> Any:
    """The single value SQL answers."""
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return row[0]


def leases(admin: psycopg.Connection[tuple[Any, ...]]) -> int:
    """How many leases are held now."""
    return int(one(admin, "SELECT count(*) FROM orch_lease.transition_lease"))


def login(admin: psycopg.Connection[tuple[Any, ...]], role: str, *member_of: str) -> str:
    """A login role of the cluster (made once: roles outlive the tests' databases); its conninfo to the
    admin's database."""
    grants = f" IN ROLE {', '.join(member_of)}" if member_of else ""
    admin.execute(
        f"DO $$ BEGIN CREATE ROLE {role} LOGIN{grants}; EXCEPTION WHEN duplicate_object THEN NULL; END $$"
    )
    return make_conninfo(admin.info.dsn, user=role)


def dead_incarnation(dsn: str, boot: str, instance: str, *items: str) -> None:
    """An earlier incarnation of `instance` that registered `boot`, acquired `items` and died (its session
    closed)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT count(*) FROM orch_lease.transition_lease_recover(%s, %s, 1)", (boot, instance))
        for item in items:
            conn.execute("SELECT orch_lease.transition_lease_acquire(%s, 'dead', 1, %s)", (item, boot))


class HangingCommits:
    """While entered, commits of sessions with `synchronous_commit=on` (ACTOR_OPTIONS) wait for a standby
    that never comes: committed on the server, unanswered to the client, as when a synchronous standby is
    lost. `release()` lets them through (also on exit)."""

    ACTOR_OPTIONS = "-c synchronous_commit=on"

    def __init__(self, admin: psycopg.Connection[tuple[Any, ...]]) -> None:
        self.admin = admin
        self.probe: tuple[psycopg.Connection[tuple[Any, ...]], threading.Thread] | None = None

    def __enter__(self) -> HangingCommits:
        self.admin.execute("ALTER SYSTEM SET synchronous_commit = local")
        self.admin.execute("ALTER SYSTEM SET synchronous_standby_names = 'nobody'")
        self.admin.execute("SELECT pg_reload_conf()")
        try:
            self.until_commits_wait()
        except BaseException:
            self.release()  # __exit__ is not called when __enter__ raises
            raise
        return self

    # A commit that waits for the standby: its transaction has an xid and wrote WAL (an xid alone does not).
    PROBE = "SELECT pg_catalog.pg_logical_emit_message(true, 'orch_lease-test', 'probe')"

    def until_commits_wait(self, timeout: float = 10.0) -> None:
        """Returns once a commit with `synchronous_commit=on` waits for the standby. A session that sees
        the new settings is not enough: a commit waits only once the checkpointer has reloaded them too
        (it publishes whether synchronous standbys are defined), and a busy checkpointer does so late —
        why the interrupted-acquire test entered its block in the full suite (issue #34, item 4). A probe
        session commits until one waits; it stays waiting until `release()`."""
        probe = psycopg.connect(make_conninfo(self.admin.info.dsn, options=self.ACTOR_OPTIONS), autocommit=True)
        deadline = time.monotonic() + timeout
        while True:
            committing = threading.Thread(target=probe.execute, args=(self.PROBE,))
            committing.start()
            committing.join(0.05)
            if committing.is_alive() and self.waits(probe.info.backend_pid):
                self.probe = (probe, committing)
                return
            committing.join(timeout)
            if time.monotonic() > deadline:
                probe.close()
                raise AssertionError("commits did not begin to wait for the standby")

    def waits(self, pid: int, timeout: float = 10.0) -> bool:
        """Whether, within `timeout` seconds, the commit of session `pid` waits for the standby."""
        deadline = time.monotonic() + timeout
        while not one(self.admin, "SELECT count(*) FROM pg_stat_activity WHERE pid = %s AND wait_event = 'SyncRep'", (pid,)):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    SEEN = "SELECT current_setting('synchronous_standby_names') = 'nobody'"

    def seen_by(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        """Returns once the session of `conn` has reloaded the settings (a backend does so between two
        statements, some time after pg_reload_conf())."""
        while not one(conn, self.SEEN):
            time.sleep(0.01)

    def hanging(self, statement: str = "", timeout: float = 10.0) -> bool:
        """Whether, within `timeout` seconds, a commit of the actor's session (application_name orch_lease)
        waits for the standby (of a statement containing `statement`)."""
        deadline = time.monotonic() + timeout
        waiting = """SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'
                      AND application_name = 'orch_lease' AND strpos(query, %s) > 0"""
        while not one(self.admin, waiting, (statement,)):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def wait_for_hanging(self) -> None:
        """Returns once a commit of an orch_lease actor waits for the standby."""
        assert self.hanging(), "no commit waits for the standby"

    def release(self) -> None:
        self.admin.execute("ALTER SYSTEM RESET synchronous_standby_names")
        self.admin.execute("ALTER SYSTEM RESET synchronous_commit")
        self.admin.execute("SELECT pg_reload_conf()")
        if self.probe is not None:
            probe, committing = self.probe
            self.probe = None
            committing.join(10)
            probe.close()

    def __exit__(self, *_: object) -> None:
        self.release()
