"""Every outcome of acquire and commit through the sync Actor, against the real server."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from conftest import HangingCommits, leases, login, one
from psycopg.conninfo import make_conninfo

from orch_lease import _protocol
from orch_lease import (
    AcquireOutcome,
    Actor,
    CasOutcome,
    CommitResult,
    InstanceInUse,
    LeaseBusy,
    LeaseEnded,
    LeaseHeld,
    RecoverBlocked,
    RetryPolicy,
    Superseded,
    TaskNotFound,
)

Conn = psycopg.Connection[tuple[Any, ...]]


def test_acquired_then_applied_ends_the_lease(dsn: str, admin: Conn) -> None:
    with Actor(dsn, "a", prepare_threshold=None) as actor:  # as behind a transaction pooler
        assert actor.connection.prepare_threshold is None
        assert actor.recovered == []
        with actor.lease(1) as lease:
            assert lease.grant.outcome is AcquireOutcome.ACQUIRED and lease.grant.acquired
            assert lease.grant.stage == "queued"  # read by the acquire, after the grant (0.5.0)
            assert lease.token is not None and lease.still_held()
            assert lease.commit("queued", "merged") == CommitResult(True, CasOutcome.APPLIED, None)
            assert not lease.open
            with pytest.raises(LeaseEnded):
                lease.commit("queued", "merged")
    assert one(admin, "SELECT stage FROM task WHERE id = 1") == "merged"
    assert leases(admin) == 0


def test_two_task_tables_name_the_table(dsn: str, admin: Conn) -> None:
    """#27: with `task` and `job` registered, a lease names its table; '1' of each is a work item of its
    own, each commit writes its own row, and a lease that names no table is refused."""
    admin.execute("CREATE TABLE job (id bigint PRIMARY KEY, stage text NOT NULL)")
    admin.execute("INSERT INTO job VALUES (1, 'queued')")
    admin.execute("SELECT orch_lease.register_task_table('job')")
    with Actor(dsn, "a") as first, Actor(dsn, "b") as second:
        with first.lease(1, task_table="task") as on_task, second.lease(1, task_table="job") as on_job:
            assert on_task.grant.task_table == "task" and on_job.grant.task_table == "job"
            assert on_task.still_held() and on_job.still_held()
            assert on_job.commit("queued", "running").outcome is CasOutcome.APPLIED
            assert on_task.commit("queued", "merged").outcome is CasOutcome.APPLIED
        with pytest.raises(psycopg.errors.AmbiguousParameter):
            with first.lease(1):
                pass
    assert (one(admin, "SELECT stage FROM task WHERE id = 1"), one(admin, "SELECT stage FROM job WHERE id = 1")) == (
        "merged",
        "running",
    )
    assert leases(admin) == 0


def test_stage_mismatch_not_found_invalid_transition(dsn: str, admin: Conn) -> None:
    admin.execute("UPDATE task SET stage = 'done' WHERE id = 2")
    admin.execute("SELECT orch_lease.register_stage_graph(ARRAY['queued -> merged'], ARRAY['done'])")
    with Actor(dsn, "a") as actor:
        with actor.lease(2) as lease:
            assert lease.commit("queued", "merged") == CommitResult(False, CasOutcome.STAGE_MISMATCH, "done")
        with pytest.raises(TaskNotFound) as refused, actor.lease(999):  # an id of the type, no such task
            pytest.fail("entered the block without a task")
        assert refused.value.grant.outcome is AcquireOutcome.NOT_FOUND and refused.value.grant.token is None
        with actor.lease(40) as lease:  # the task is deleted under the lease: the commit finds no row
            admin.execute("DELETE FROM task WHERE id = 40")
            assert lease.commit("queued", "merged").outcome is CasOutcome.NOT_FOUND
        with actor.lease(3) as lease:
            assert lease.commit("queued", "done").outcome is CasOutcome.INVALID_TRANSITION
    assert leases(admin) == 0
    assert one(admin, "SELECT string_agg(stage, ',' ORDER BY id) FROM task WHERE id IN (2, 3)") == "done,queued"


def test_lease_lost_after_a_forced_release(dsn: str, admin: Conn) -> None:
    with Actor(dsn, "a") as actor, actor.lease(4) as lease:
        admin.execute("SELECT orch_lease.transition_lease_force_release('4', %s, 'test')", (lease.token,))
        assert not lease.still_held()
        assert lease.commit("queued", "merged").outcome is CasOutcome.LEASE_LOST
    assert one(admin, "SELECT stage FROM task WHERE id = 4") == "queued"


def test_kill_switch_off_disabled_and_unconditional(dsn: str, admin: Conn) -> None:
    with Actor(make_conninfo(dsn, options="-c orch_lease.enabled=off"), "a") as actor, actor.lease(5) as lease:
        assert lease.grant.outcome is AcquireOutcome.DISABLED and lease.token is None
        assert lease.grant.stage == "queued"  # passing through, the stage is still said
        assert lease.still_held()
        assert lease.commit("merged", "done") == CommitResult(True, CasOutcome.UNCONDITIONAL, None)
    assert one(admin, "SELECT stage FROM task WHERE id = 5") == "done"


def test_out_of_scope(dsn: str, admin: Conn) -> None:
    with Actor(make_conninfo(dsn, options="-c orch_lease.scopes=deploy"), "a") as actor:
        with actor.lease(6, scope="merge") as lease:
            assert lease.grant.outcome is AcquireOutcome.OUT_OF_SCOPE and lease.token is None
        with actor.lease(6, scope="deploy") as lease:
            assert lease.grant.outcome is AcquireOutcome.ACQUIRED
    assert leases(admin) == 0


def test_held_raises_and_names_the_holder(dsn: str, admin: Conn) -> None:
    with Actor(dsn, "a", owner="monitor") as a, Actor(dsn, "b", owner="webhook") as b:
        with a.lease(7):
            with pytest.raises(LeaseHeld) as refused, b.lease("007"):  # one task, two spellings
                pytest.fail("entered the block without the lease")
            assert refused.value.grant.outcome is AcquireOutcome.HELD
            assert refused.value.grant.holder == "monitor"
            assert refused.value.grant.holder_boot_id == a.boot_id
    assert leases(admin) == 0


def test_busy_is_retried_with_jitter_then_given_up(dsn: str, admin: Conn) -> None:
    with psycopg.connect(dsn) as other, Actor(dsn, "b", retry=RetryPolicy(attempts=3)) as actor:
        # another transaction is acquiring item 8 and has not committed
        other.execute("SELECT orch_lease.transition_lease_acquire('8', 'other', 1, 'other-boot')")
        with pytest.raises(LeaseBusy) as refused, actor.lease(8):
            pytest.fail("entered the block without the lease")
        assert refused.value.grant.outcome is AcquireOutcome.BUSY
        # ... and when it rolls back while we retry, the retry gets the lease
        threading.Timer(0.3, other.rollback).start()
        actor.retry = RetryPolicy(attempts=40, base=0.05, cap=0.1)
        with actor.lease(8) as lease:
            assert lease.grant.outcome is AcquireOutcome.ACQUIRED
    assert leases(admin) == 0


def test_reclaimed_from_a_gone_session(dsn: str, admin: Conn) -> None:
    with psycopg.connect(dsn, autocommit=True) as ghost:
        ghost.execute("SELECT orch_lease.transition_lease_acquire_session('9', 'ghost')")
    with Actor(dsn, "a") as actor, actor.lease(9) as lease:
        assert lease.grant.outcome is AcquireOutcome.RECLAIMED and lease.grant.acquired
        assert lease.grant.holder == "ghost"
        assert lease.commit("queued", "merged").outcome is CasOutcome.APPLIED


def test_superseded_stops_the_zombie(dsn: str, admin: Conn) -> None:
    with Actor(dsn, "zombie") as actor:
        # a newer incarnation of the instance registered itself, here by hand: where recover refuses an
        # instance whose registering session is still connected (issue #21), by a deliberate takeover
        takeover = one(admin, "SELECT to_regprocedure('orch_lease.transition_lease_takeover(text,text,integer)') IS NOT NULL")
        register = "transition_lease_takeover" if takeover else "transition_lease_recover"
        admin.execute(f"SELECT count(*) FROM orch_lease.{register}('newer', 'zombie', 1)")
        with pytest.raises(Superseded), actor.lease(10):
            pytest.fail("a zombie entered the block")
    assert leases(admin) == 0


def test_commit_retry_keeps_the_lease(dsn: str, admin: Conn) -> None:
    slow = make_conninfo(dsn, options="-c lock_timeout=100ms")
    with psycopg.connect(dsn) as other, Actor(slow, "a", retry=RetryPolicy(attempts=2)) as actor:
        with actor.lease(11) as lease:
            other.execute("SELECT * FROM task WHERE id = 11 FOR UPDATE")  # the task row, locked
            assert lease.commit("queued", "merged").outcome is CasOutcome.RETRY
            assert lease.open and lease.still_held()
            other.rollback()
            assert lease.commit("queued", "merged").outcome is CasOutcome.APPLIED
        with actor.lease(12) as left_open:
            other.execute("SELECT * FROM task WHERE id = 12 FOR UPDATE")
            assert left_open.commit("queued", "merged").outcome is CasOutcome.RETRY
        # left open after retry: leaving the block released it
        other.rollback()
    assert leases(admin) == 0
    assert one(admin, "SELECT string_agg(stage, ',' ORDER BY id) FROM task WHERE id IN (11, 12)") == "merged,queued"


def test_a_block_that_raises_releases_the_lease(dsn: str, admin: Conn) -> None:
    with Actor(dsn, "a") as actor:
        with pytest.raises(RuntimeError, match="effect failed"), actor.lease(13):
            raise RuntimeError("effect failed")
        with actor.lease(14) as lease:
            assert lease.release() and not lease.open
    assert leases(admin) == 0
    assert one(admin, "SELECT count(*) FROM orch_lease.lease_event WHERE event = 'released'") == 2


def test_bad_input_is_the_servers_error_and_leaves_no_lease(dsn: str, admin: Conn) -> None:
    with Actor(dsn, "a") as actor:
        with pytest.raises(psycopg.errors.InvalidTextRepresentation) as error, actor.lease("abc"):
            pytest.fail("entered the block")
        assert error.value.sqlstate == "22P02"
        with actor.lease(15) as lease:  # the connection is usable
            assert lease.grant.outcome is AcquireOutcome.ACQUIRED
    assert leases(admin) == 0


def test_one_instance_one_live_process(dsn: str, admin: Conn) -> None:
    with Actor(dsn, "webhook") as first:
        with pytest.raises(InstanceInUse):
            Actor(dsn, "webhook").start()
        # the first is still the live incarnation
        assert one(admin, "SELECT boot_id FROM orch_lease.boot WHERE superseded_at IS NULL") == first.boot_id
        with Actor(dsn, owner="py") as auto_a, Actor(dsn, owner="py") as auto_b:
            assert auto_a.instance and auto_b.instance and auto_a.instance != auto_b.instance
            assert auto_a.instance.startswith("py-") and auto_a.instance.endswith("-0")
    # once the first is gone its name is free, and its successor recovers it
    with Actor(dsn, "webhook") as successor:
        assert successor.boot_id != first.boot_id


def test_without_the_claim_the_server_refuses_a_twin_and_takeover_replaces_it(dsn: str, admin: Conn) -> None:
    # what an actor behind a transaction pooler meets (no claim): recover refuses an instance whose
    # registering session is connected (55006), a takeover supersedes it on purpose
    with Actor(dsn, "pooled", claim=False) as first:
        with pytest.raises(InstanceInUse, match="still connected"):
            Actor(dsn, "pooled", claim=False).start()
        with Actor(dsn, "pooled", claim=False, takeover=True) as replacement:
            with pytest.raises(Superseded), first.lease(16):
                pytest.fail("the replaced process entered the block")
            with replacement.lease(16) as lease:
                assert lease.grant.outcome is AcquireOutcome.ACQUIRED


def test_a_retry_policy_without_attempts_is_refused() -> None:
    for bad in ({"attempts": 0}, {"attempts": -1}, {"base": -1.0}, {"cap": float("nan")}):
        with pytest.raises(ValueError, match="RetryPolicy"):
            RetryPolicy(**bad)


def actor_role(admin: Conn, dsn: str, role: str) -> str:
    """A login in orch_lease_actor with what an actor needs on the task table; its conninfo."""
    conninfo = login(admin, role, "orch_lease_actor")
    admin.execute(f"GRANT SELECT, UPDATE ON task TO {role}")
    return conninfo


def test_a_slot_another_role_registered_is_skipped(dsn: str, admin: Conn) -> None:
    other, mine = actor_role(admin, dsn, "other_team"), actor_role(admin, dsn, "my_team")
    with Actor(other, owner="py") as theirs:
        taken = theirs.instance
    assert taken is not None and taken.endswith("-0")  # theirs is gone, its name stays that role's
    with Actor(mine, owner="py") as actor:
        assert actor.instance == taken[:-1] + "1"
        with actor.lease(17) as lease:
            assert lease.grant.outcome is AcquireOutcome.ACQUIRED


def started_within(actor: Actor, seconds: float) -> list[BaseException]:
    """Starts `actor` in a thread; what it raised (nothing: []) — it must be done within `seconds`."""
    failure: list[BaseException] = []
    thread = threading.Thread(target=lambda: failure.extend(_raised(actor.start)))
    thread.start()
    thread.join(timeout=seconds)
    assert not thread.is_alive(), f"start() still waits after {seconds} s"
    return failure


def test_start_waits_for_the_instance_lock_only_so_long_and_says_who_holds_it(dsn: str, admin: Conn) -> None:
    squatter_dsn = login(admin, "squatter")  # no grant at all
    with psycopg.connect(make_conninfo(squatter_dsn, application_name="squat"), autocommit=True) as squatter:
        # the key that transition_lease_recover of 0.4.0 waited for, for instance 'blocked': no longer
        squatter.execute("SELECT pg_advisory_lock(1651470196, hashtext('blocked'))")
        actor = Actor(dsn, "blocked")
        actor.lock_timeout = 0.5
        assert started_within(actor, 10) == []
        actor.close()
    # A transaction that acquired under the instance's live boot and has not ended holds up recover (it
    # supersedes that boot). The client gives up after lock_timeout, naming that transaction's session:
    # red team of #34 (F11), where it named nobody, looking for 0.4.0's advisory key.
    with Actor(dsn, "held-up") as first, psycopg.connect(dsn) as open_transaction:
        open_transaction.execute("SELECT orch_lease.transition_lease_acquire('20', 'x', 1, %s)", (first.boot_id,))
        holder = one(open_transaction, "SELECT pg_backend_pid()")
        replacement = Actor(dsn, "held-up", claim=False, takeover=True)
        replacement.lock_timeout = 0.5
        [error] = started_within(replacement, 10)
        assert isinstance(error, RecoverBlocked) and "recover waited 0.5 s" in str(error)
        assert f"pid {holder} (role " in error.detail and "idle in transaction" in error.detail, error


def test_a_claim_held_by_another_login_is_named_not_called_a_live_process(dsn: str, admin: Conn) -> None:
    # Red team of #34 (F11): a login with no grant holding the claim key made start() say "in use by
    # another live process". The answer now names that session, and what to do.
    squatter_dsn = login(admin, "squatter")
    with psycopg.connect(make_conninfo(squatter_dsn, application_name="squat"), autocommit=True) as squatter:
        squatter.execute("SELECT pg_advisory_lock(hashtextextended('orch_lease instance ' || 'merger-1', 0))")
        squatter_pid = one(squatter, "SELECT pg_backend_pid()")
        with pytest.raises(InstanceInUse) as refused:
            Actor(dsn, "merger-1").start()
        assert f"pid {squatter_pid} (role 'squatter', application_name 'squat'" in str(refused.value)
        assert "pg_terminate_backend" in str(refused.value)
        assert [row[0] for row in refused.value.holders] == [squatter_pid]


def test_the_application_name_is_not_the_instance(dsn: str, admin: Conn) -> None:
    with Actor(dsn, "blocked") as actor:
        name = one(admin, "SELECT application_name FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
                          " AND datname = current_database() AND backend_type = 'client backend'")
        assert name == "orch_lease"  # not the instance: every login reads application_name


PLANTS = """
CREATE TABLE public.planted_calls (what text);
CREATE FUNCTION public.hashtextextended(text, integer) RETURNS bigint LANGUAGE sql
    AS $$ INSERT INTO public.planted_calls VALUES ('hashtextextended') RETURNING 0::bigint $$;
CREATE FUNCTION public.regclass_eq(regclass, regclass) RETURNS boolean LANGUAGE sql
    AS $$ INSERT INTO public.planted_calls VALUES ('=') RETURNING true $$;
CREATE OPERATOR public.= (LEFTARG = regclass, RIGHTARG = regclass, FUNCTION = public.regclass_eq);
"""


def test_the_clients_own_queries_run_no_planted_function(dsn: str, admin: Conn) -> None:
    # A database owner's functions and operators on the actor's search_path (public): an exact match for
    # an unqualified name beats pg_catalog's that needs a cast, and would run as the actor (red team).
    admin.execute(PLANTS)
    assert one(admin, "SELECT outcome FROM orch_lease.transition_lease_acquire_session('1', 'o')") == "acquired"
    boot = one(admin, "SELECT owner_boot_id FROM orch_lease.transition_lease_status")
    queries: list[tuple[str, tuple[Any, ...]]] = [
        (_protocol.CLAIM, ("inst",)),
        (_protocol.CLAIM_HOLDERS, ("inst",)),
        (_protocol.UNCLAIM, ("inst",)),
        (_protocol.APPLICATION_NAME, ()),
        (_protocol.FORGET, ("1", None, boot, [], None)),
    ]
    for query, params in queries:
        admin.execute(query, params).fetchall()
    assert one(admin, "SELECT string_agg(what, ',') FROM public.planted_calls") is None
    assert leases(admin) == 0  # FORGET did run: it ended the lease


def _raised(call: Callable[[], object]) -> list[BaseException]:
    try:
        call()
    except BaseException as error:
        return [error]
    return []


def test_an_interrupted_acquire_leaves_no_lease(dsn: str, admin: Conn) -> None:
    with Actor(make_conninfo(dsn, options=HangingCommits.ACTOR_OPTIONS), "a") as actor, HangingCommits(admin) as hang:

        def interrupt() -> None:  # Ctrl-C once the acquire is granted but not answered; the standby comes
            hang.wait_for_hanging()  # back once the client's follow-up release waits for it too (or 10 s)
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)  # to the waiting thread
            hang.hanging("transition_lease_status")
            hang.release()

        hang.seen_by(actor.connection)
        threading.Thread(target=interrupt).start()
        with pytest.raises(KeyboardInterrupt), actor.lease(18):
            pytest.fail("entered the block")
        assert leases(admin) == 0
        with actor.lease(18) as lease:  # and the actor may have its item again
            assert lease.grant.outcome is AcquireOutcome.ACQUIRED


def test_a_commit_rolled_back_with_the_callers_transaction_leaves_no_lease(dsn: str, admin: Conn) -> None:
    # The stage write in the caller's own transaction, beside its own writes (an outbox row): rolled back
    # with it, the lease was not ended, and the client must not believe it was (it leaked until restart).
    with Actor(dsn, "a") as actor:
        with pytest.raises(RuntimeError), actor.lease(31) as lease:
            with actor.connection.transaction():
                assert lease.commit("queued", "merged").applied
                raise RuntimeError("the outbox insert failed")
        assert leases(admin) == 0, "the block's end released the lease the rollback kept"
        # Committed with the caller's transaction: done, and the block's end has nothing left to release.
        with actor.lease(31) as lease:
            with actor.connection.transaction():
                assert lease.commit("queued", "merged").applied
                actor.connection.execute("SELECT 1")  # the caller's own write
            assert leases(admin) == 0
    assert one(admin, "SELECT stage FROM task WHERE id = 31") == "merged"
    assert leases(admin) == 0
