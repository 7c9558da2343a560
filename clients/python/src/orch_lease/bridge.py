"""The alert bridge: LISTEN orch_lease -> one webhook POST per takeover.

    orch-lease-bridge --dsn "host=/var/run/postgresql dbname=app" --url https://alerts.example/hook \\
        [--header "Authorization: Bearer …"] [--retries 5] [--duration SECONDS]

Each event is POSTed as a JSON object with the keys of a version-1 payload (a version-2 batch becomes one
POST per event, `version` 2), Content-Type application/json. A payload of an unknown version is POSTed
as it came, with the header `X-Orch-Lease-Unparsed: 1`. A POST that fails (no connection, 429, 5xx) is
tried again after 1, 2, 4 … seconds, `--retries` times; then it is logged at ERROR with its body and the
bridge goes on (other 4xx answers are not retried). The listener reconnects by itself; announcements sent
while it was disconnected are not replayed (read orch_lease.lease_history for the gap). SIGTERM stops it.
Every event is checked against orch_lease's history first, and one it does not hold is dropped (any
login can NOTIFY the channel): run it as a member of orch_lease_admin or pg_monitor.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import psycopg

from .events import UnsupportedPayload, parse_payload
from .sync import Listener

log = logging.getLogger("orch_lease.bridge")


def bodies(payload: str) -> list[tuple[bytes, dict[str, str]]]:
    """What one notification becomes: (body, extra headers) per POST."""
    try:
        events = parse_payload(payload)
    except UnsupportedPayload:
        log.warning("forwarding a payload this client cannot read, unparsed")
        return [(payload.encode(), {"X-Orch-Lease-Unparsed": "1"})]
    return [(json.dumps({**event.data, "version": event.version}).encode(), {}) for event in events]


def post(url: str, body: bytes, headers: dict[str, str], retries: int, timeout: float = 10.0) -> bool:
    """POSTs `body`; True once the webhook answered 2xx."""
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json", **headers}
    )
    for attempt in range(retries + 1):
        try:
            with urllib.request.urlopen(request, timeout=timeout):
                return True
        except urllib.error.HTTPError as error:
            if error.code != 429 and error.code < 500:
                log.error("webhook refused an alert (%s), dropped: %s", error.code, body.decode())
                return False
            failure: Exception = error
        except (urllib.error.URLError, OSError) as error:
            failure = error
        if attempt < retries:
            log.warning("webhook POST failed (%s); again in %d s", failure, 2**attempt)
            time.sleep(2**attempt)
    log.error("webhook POST failed %d times (%s), alert dropped: %s", retries + 1, failure, body.decode())
    return False


def confirmed(payloads: Iterable[str], dsn: str) -> Iterator[str]:
    """The payloads whose every event is in orch_lease's history, and of the others a payload of the
    events that are; an event the history does not hold (forged) is logged and dropped. Payloads of a
    version this client cannot read pass as they came (and are POSTed marked unparsed). Needs a role
    that reads the whole history: orch_lease_admin or pg_monitor."""
    # Any login can NOTIFY orch_lease with a payload of its own making; none can write the history (#29).
    recorded = """
        SELECT EXISTS (SELECT FROM orch_lease.lease_history h
                        WHERE h.event_id = %(event_id)s AND h.event = %(event)s AND h.outcome = %(outcome)s
                          AND h.at = %(at)s::timestamptz AND h.by_role IS NOT DISTINCT FROM %(by_role)s
                          AND CASE WHEN length(h.work_item) > 120 THEN left(h.work_item, 120) || '…'
                                   ELSE h.work_item END = %(work_item)s)"""
    db: psycopg.Connection[tuple[Any, ...]] | None = None
    for payload in payloads:
        try:
            events = parse_payload(payload)
        except UnsupportedPayload:
            yield payload
            continue
        genuine = []
        for event in events:
            try:
                db = db if db is not None and not db.closed else psycopg.connect(dsn, autocommit=True)
                row = db.execute(recorded, event.data).fetchone()
            except psycopg.Error as error:
                log.error("cannot check an alert against the history (%s), dropped: %s", error, event.data)
                if db is not None:
                    db.close()
                continue
            if row is not None and row[0]:
                genuine.append(event)
            else:
                log.error("an alert that orch_lease's history does not hold (forged?), dropped: %s", event.data)
        if len(genuine) == len(events):
            yield payload
        elif genuine:
            yield json.dumps({"version": 2, "events": [event.data for event in genuine]})


def run(payloads: Iterable[str], url: str, headers: dict[str, str], retries: int) -> None:
    for payload in payloads:
        for body, extra in bodies(payload):
            post(url, body, {**headers, **extra}, retries)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="orch-lease-bridge", description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True, help="libpq connection string of the database to listen to")
    parser.add_argument("--url", required=True, help="the webhook")
    parser.add_argument("--header", action="append", default=[], help="'Name: value', repeatable")
    parser.add_argument("--retries", type=int, default=5, help="tries after a failed POST (default 5)")
    parser.add_argument("--duration", type=float, help="stop after this many seconds (default: never)")
    args = parser.parse_args(argv)
    headers = dict(tuple(part.strip() for part in h.split(":", 1)) for h in args.header)
    logging.basicConfig(level=logging.INFO, format="orch-lease-bridge: %(levelname)s %(message)s")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    listener = Listener(args.dsn, duration=args.duration, on_listen=lambda: log.info("listening on orch_lease"))
    run(confirmed(listener.payloads(), args.dsn), args.url, headers, args.retries)


if __name__ == "__main__":
    main()
