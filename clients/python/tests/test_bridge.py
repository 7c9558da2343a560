"""The alert bridge (the orch-lease-bridge console script) delivering to a local HTTP server."""

from __future__ import annotations

import json
import queue
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
import pytest

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
        assert token is not None and alert["old_token"] == token[0] and alert["version"] in (1, 2)
        assert headers["Authorization"] == "Bearer t0k" and headers["Content-Type"] == "application/json"
        assert webhook.attempts == 2  # the first POST got a 500 and was tried again
        # a payload of a version it cannot read is forwarded as it came
        admin.execute("""NOTIFY orch_lease, '{"version":99,"news":true}'""")
        headers, body = webhook.delivered.get(timeout=20)
        assert (headers["X-Orch-Lease-Unparsed"], body) == ("1", b'{"version":99,"news":true}')
    finally:
        bridge.send_signal(signal.SIGTERM)
        assert bridge.wait(timeout=10) == 0


def test_the_bridge_drops_an_alert_the_history_does_not_hold(dsn: str, admin: Conn, webhook: Webhook) -> None:
    """#29 item 6: any login can NOTIFY orch_lease; a forged `forced` was forwarded as a real one."""
    command = shutil.which("orch-lease-bridge")
    assert command
    url = f"http://127.0.0.1:{webhook.server_address[1]}/hook"
    bridge = subprocess.Popen([command, "--dsn", dsn, "--url", url], stderr=subprocess.PIPE, text=True)
    try:
        assert bridge.stderr is not None and "listening on orch_lease" in bridge.stderr.readline()
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
        bridge.send_signal(signal.SIGTERM)
        assert bridge.wait(timeout=10) == 0
