"""The alert bridge (the orch-lease-bridge console script) delivering to a local HTTP server."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import login, one

from orch_lease import bridge

Conn = psycopg.Connection[tuple[Any, ...]]


class Webhook(ThreadingHTTPServer):
    """Records every POST; answers 500 to the first `failures` of them."""

    def __init__(self, failures: int) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.failures = failures
        self.attempts = 0
        self.delivered: queue.Queue[tuple[dict[str, str], bytes]] = queue.Queue()


class Handler(BaseHTTPRequestHandler):
    server: Webhook

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.attempts += 1
        if self.server.attempts <= self.server.failures:
            self.send_response(500)
        else:
            self.server.delivered.put((dict(self.headers), body))
            self.send_response(204)
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    server = Webhook(failures=1)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


def test_the_bridge_posts_every_alert(dsn: str, admin: Conn, webhook: Webhook) -> None:
    command = shutil.which("orch-lease-bridge")
    assert command, "the console script is installed with the package"
    url = f"http://127.0.0.1:{webhook.server_address[1]}/hook"
    bridge = subprocess.Popen(
        [command, "--dsn", dsn, "--url", url, "--header", "Authorization: Bearer t0k"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert bridge.stderr is not None and "listening on orch_lease" in bridge.stderr.readline()
        token = admin.execute("SELECT token FROM orch_lease.transition_lease_acquire('26', 'deployer', 1, 'b')").fetchone()
        admin.execute("SELECT orch_lease.transition_lease_force_release('26', NULL, 'deploy hung')")
        headers, body = webhook.delivered.get(timeout=20)
        alert = json.loads(body)
        assert (alert["event"], alert["work_item"], alert["reason"]) == ("forced", "26", "deploy hung")
        assert token is not None and alert["old_token"] == token[0] and alert["version"] in (1, 2, 3)
        assert headers["Authorization"] == "Bearer t0k" and headers["Content-Type"] == "application/json"
        assert webhook.attempts == 2  # the first POST got a 500 and was tried again
        # a payload of a version it cannot read is forwarded as one string
        admin.execute("""NOTIFY orch_lease, '{"version":99,"news":true}'""")
        headers, body = webhook.delivered.get(timeout=20)
        assert headers["X-Orch-Lease-Unparsed"] == "1"
        assert json.loads(body) == {"version": None, "unparsed": '{"version":99,"news":true}'}
    finally:
        bridge.send_signal(signal.SIGTERM)
        assert bridge.wait(timeout=10) == 0


def start_bridge(dsn: str, webhook: Webhook, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """orch-lease-bridge to `webhook`, once it listens; its DSN from the environment, not the command line."""
    command = shutil.which("orch-lease-bridge")
    assert command, "the console script is installed with the package"
    bridge = subprocess.Popen(
        [command, "--url", f"http://127.0.0.1:{webhook.server_address[1]}/hook", *args],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "ORCH_LEASE_BRIDGE_DSN": dsn, **(env or {})},
    )
    assert bridge.stderr is not None and "listening on orch_lease" in bridge.stderr.readline()
    return bridge


def stop(bridge: subprocess.Popen[str]) -> str:
    """Stops the bridge (it must still be running); what it logged."""
    assert bridge.poll() is None, "the bridge ended"
    bridge.send_signal(signal.SIGTERM)
    assert bridge.wait(timeout=10) == 0
    assert bridge.stderr is not None
    return bridge.stderr.read()


def forced(admin: Conn, item: str) -> None:
    admin.execute("SELECT orch_lease.transition_lease_acquire(%s, 'deployer', 1, 'b')", (item,))
    admin.execute("SELECT orch_lease.transition_lease_force_release(%s, NULL, 'real')", (item,))


DOCUMENTED = {"version", "event_id", "at", "event", "outcome", "work_item", "old_owner", "old_token",
              "old_boot_id", "new_owner", "new_token", "reason", "by_role", "truncated", "task_table"}


def test_no_payload_ends_the_bridge_and_forged_ones_are_not_amplified(dsn: str, admin: Conn, webhook: Webhook) -> None:
    webhook.failures = 0
    nobody = login(admin, "nobody")  # no grant at all: it can still NOTIFY
    bridge = start_bridge(dsn, webhook)
    try:
        with psycopg.connect(nobody, autocommit=True) as outsider:
            outsider.execute("SELECT pg_notify('orch_lease', repeat('[', 5000))")
            # one event repeated 12 times, with keys a chat webhook reads and a line break for the logs
            event = json.loads(V1_EVENT)
            event.update(text="<!channel> deploy now", channel="#general", work_item="PR-1\norch-lease-bridge: INFO forged")
            outsider.execute("SELECT pg_notify('orch_lease', %s)", (json.dumps({"version": 2, "events": [event] * 12}),))
            outsider.execute("SELECT pg_notify('orch_lease', %s)", (json.dumps({"version": 2, "events": [
                {"event_id": n} for n in range(41)]}),))
        forced(admin, "27")
        # the forged event, repeated, is not in the history: dropped (#29 item 6), never POSTed
        posts = [webhook.delivered.get(timeout=20) for _ in range(3)]
        assert webhook.delivered.empty()
        deep, too_many, real = (json.loads(body) for _, body in posts)
        assert deep == {"version": None, "unparsed": "[" * 5000}
        assert too_many["version"] is None and posts[1][0]["X-Orch-Lease-Unparsed"] == "1"
        assert set(real) == DOCUMENTED and (real["event"], real["work_item"], real["reason"]) == ("forced", "27", "real")
    finally:
        logged = stop(bridge)
    assert "does not hold (forged?)" in logged and "\norch-lease-bridge: INFO forged" not in logged


V1_EVENT = """{"version":1,"event_id":3,"at":"2026-11-28T18:44:20.561+00:00","event":"forced","outcome":"forced",
 "work_item":"PR-130","old_owner":"monitor","old_token":41,"old_boot_id":"monitor-7f3a",
 "new_owner":null,"new_token":null,"reason":"actor crashed mid-merge","by_role":"oncall","truncated":false}"""


class Redirect(BaseHTTPRequestHandler):
    """Answers every request with the status of its path (/302, /307 …) and a Location elsewhere."""

    target = ""

    def _answer(self) -> None:
        self.send_response(int(self.path.strip("/")))
        self.send_header("Location", self.target)
        self.end_headers()

    do_POST = do_GET = _answer

    def log_message(self, *_: Any) -> None:
        pass


def test_redirects_are_not_followed(webhook: Webhook, caplog: pytest.LogCaptureFixture) -> None:
    webhook.failures = 0
    Redirect.target = f"http://127.0.0.1:{webhook.server_address[1]}/elsewhere"
    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for status in (301, 302, 303, 307, 308):
            url = f"http://127.0.0.1:{server.server_address[1]}/{status}"
            assert not bridge.post(url, b'{"event":"forced"}', {"Authorization": "Bearer t0k"}, retries=0)
    finally:
        server.shutdown()
    assert webhook.attempts == 0 and webhook.delivered.empty()  # nothing went to where they pointed
    redirected = [r.getMessage() for r in caplog.records if "redirected" in r.getMessage()]
    assert len(redirected) == 5 and "/elsewhere" in redirected[0] and "t0k" not in caplog.text


def test_secrets_stay_off_the_command_line_and_out_of_errors(
    dsn: str, admin: Conn, webhook: Webhook, tmp_path: Path
) -> None:
    webhook.failures = 0
    headers = tmp_path / "headers"
    headers.write_text("# the webhook's token\nAuthorization: Bearer s3cret-t0ken\n")
    bridge = start_bridge(dsn, webhook, "--header-file", str(headers))
    try:
        cmdline = Path(f"/proc/{bridge.pid}/cmdline").read_bytes()
        assert b"s3cret" not in cmdline and dsn.encode() not in cmdline
        forced(admin, "28")
        sent, body = webhook.delivered.get(timeout=20)
        assert sent["Authorization"] == "Bearer s3cret-t0ken" and json.loads(body)["work_item"] == "28"
    finally:
        stop(bridge)
    command = shutil.which("orch-lease-bridge")
    assert command
    for broken in ("host=db password:hunter2", "host=db password=hunter2 user", "host=db password='hunter2"):
        run = subprocess.run(
            [command, "--url", "http://127.0.0.1:9/"], env={**os.environ, "ORCH_LEASE_BRIDGE_DSN": broken},
            capture_output=True, text=True, timeout=30,
        )
        assert run.returncode == 2 and "not a libpq connection string" in run.stderr
        assert "hunter2" not in run.stderr + run.stdout
    headers.write_text("Authorization Bearer s3cret-t0ken\n")
    run = subprocess.run([command, "--url", "http://127.0.0.1:9/", "--dsn", dsn, "--header-file", str(headers)],
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 2 and "not 'Name: value'" in run.stderr and "s3cret" not in run.stderr


def test_the_bridge_drops_an_alert_the_history_does_not_hold(dsn: str, admin: Conn, webhook: Webhook) -> None:
    """#29 item 6: any login can NOTIFY orch_lease; a forged `forced` was forwarded as a real one."""
    bridge = start_bridge(dsn, webhook)
    try:
        forged = {"event_id": 1, "at": "2026-12-07T03:10:00+00:00", "event": "forced", "outcome": "forced",
                  "work_item": "27", "old_owner": "deployer", "old_token": 1, "old_boot_id": "b",
                  "new_owner": None, "new_token": None, "reason": "forged", "by_role": "adm", "truncated": False}
        admin.execute("SELECT pg_notify('orch_lease', %s)", (json.dumps({"version": 2, "events": [forged]}),))
        admin.execute("SELECT orch_lease.transition_lease_acquire('28', 'deployer', 1, 'b')")
        admin.execute("SELECT orch_lease.transition_lease_force_release('28', NULL, 'real')")
        _, body = webhook.delivered.get(timeout=20)  # the first POST got a 500 and was tried again
        assert (json.loads(body)["work_item"], json.loads(body)["reason"]) == ("28", "real")
        assert webhook.delivered.empty()
    finally:
        stop(bridge)


def test_the_history_check_runs_no_planted_function_and_drops_a_rewritten_replay(
    dsn: str, admin: Conn, webhook: Webhook
) -> None:
    """Red team of #29 item 6: the check ran unqualified length() and || in the bridge's own session, with
    the database's search_path: a database owner's own length() ran as the bridge's admin role. And it
    compared only some fields: a genuine alert replayed with another reason was forwarded."""
    webhook.failures = 0
    admin.execute("""CREATE SCHEMA tools; CREATE TABLE tools.called (who text);
        CREATE FUNCTION tools.length(text) RETURNS integer LANGUAGE sql
            AS $$ INSERT INTO tools.called VALUES (current_user) RETURNING pg_catalog.length($1) $$""")
    admin.execute(f"ALTER DATABASE {one(admin, 'SELECT current_database()')} SET search_path = tools, pg_catalog, public")
    bridge = start_bridge(dsn, webhook)
    try:
        forced(admin, "27")
        _, body = webhook.delivered.get(timeout=20)
        genuine = json.loads(body)
        assert (genuine["work_item"], genuine["reason"]) == ("27", "real")
        replay = {key: value for key, value in genuine.items() if key != "version"}
        replay["reason"] = "rewritten"
        admin.execute("SELECT pg_notify('orch_lease', %s)", (json.dumps({"version": 2, "events": [replay]}),))
        forced(admin, "28")
        _, body = webhook.delivered.get(timeout=20)
        assert json.loads(body)["work_item"] == "28", "the rewritten replay was forwarded"
        assert webhook.delivered.empty()
    finally:
        logged = stop(bridge)
    assert one(admin, "SELECT count(*) FROM tools.called") == 0, "the planted length() ran in the bridge"
    assert "does not hold (forged?)" in logged
