"""examples/python/actor.py as a newcomer runs it (issue #21): on a fresh database set up with
examples/setup.sql, as the README says; every outcome, not_found included; never a lease left behind, whatever fails; three
copies with the default instance duplicate no effect."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from conftest import fresh_database, one

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
EXAMPLE = EXAMPLES / "python" / "actor.py"
pytestmark = pytest.mark.skipif(not EXAMPLE.exists(), reason="the example lives in the repository, not the sdist")


def example(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(EXAMPLE), "--dsn", dsn, *args], capture_output=True, text=True, timeout=120)


def test_the_example_on_a_fresh_database() -> None:
    dsn = fresh_database("t_example")
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute((EXAMPLES / "setup.sql").read_text())  # the extension, the tables, task-1 … task-12
    tasks = [f"task-{i}" for i in range(1, 13)]
    copies = [subprocess.Popen([sys.executable, str(EXAMPLE), "--dsn", dsn, *tasks, "task-404"], stdout=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = [copy.communicate(timeout=120)[0] for copy in copies]
    assert [copy.returncode for copy in copies] == [0, 0, 0], outputs
    assert any("not_found=1" in output for output in outputs), outputs  # the others: held or busy
    # each its own instance; a copy that started after another ended may take the same free slot
    assert all(output.startswith("python-actor-") for output in outputs), outputs
    with psycopg.connect(dsn, autocommit=True) as db:
        assert one(db, "SELECT count(*) || '/' || count(DISTINCT task_id) FROM example_effect") == "12/12"
        assert one(db, "SELECT count(*) FROM example_task WHERE stage <> 'merged'") == 0
        assert one(db, "SELECT count(*) FROM orch_lease.transition_lease") == 0
        # the effect fails (its table is gone): reported, the lease released, the next task tried
        db.execute("INSERT INTO example_task VALUES ('task-20', 'queued'), ('task-21', 'queued'); DROP TABLE example_effect")
        failed = example(dsn, "task-20", "task-21")
        assert failed.returncode == 1 and failed.stdout.strip().endswith("error=2"), failed
        assert "UndefinedTable" in failed.stderr
        assert one(db, "SELECT count(*) FROM orch_lease.transition_lease") == 0
        assert one(db, "SELECT count(*) FROM example_task WHERE stage = 'queued'") == 2
        # a named instance a live copy holds is refused, clearly
        with psycopg.connect(dsn, autocommit=True) as holder:
            holder.execute("SELECT pg_advisory_lock(hashtextextended('orch_lease instance webhook', 0))")
            holder_pid = one(holder, "SELECT pg_backend_pid()")
            refused = example(dsn, "--instance", "webhook", "task-20")
            assert refused.returncode == 2 and f"its claim (an advisory lock any login can take) is held by pid {holder_pid}" in refused.stderr
