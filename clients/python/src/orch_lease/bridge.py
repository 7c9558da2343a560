"""The alert bridge: LISTEN orch_lease -> one webhook POST per takeover.

    ORCH_LEASE_BRIDGE_DSN="host=/var/run/postgresql dbname=app" \\
    orch-lease-bridge --url https://alerts.example/hook [--header-file /etc/orch-lease/headers] \\
        [--retries 5] [--duration SECONDS]

Each event is POSTed as a JSON object with the documented keys of a version-1 payload and no others (a
version-2 batch becomes one POST per event id, `version` 2; at most 40 per payload, what a payload of the
server can hold), Content-Type application/json. A payload this
client cannot read (a forged one, or a newer server's) becomes one POST of {"version": null,
"unparsed": "<the payload as text>"} with the header `X-Orch-Lease-Unparsed: 1`. A POST that fails (no
connection, 429, 5xx) is tried again after 1, 2, 4 … seconds, `--retries` times; then it is logged at ERROR
with its body and the bridge goes on (other 4xx answers are not retried). Redirects are not followed: a 3xx
is logged at ERROR with its Location and the alert dropped (point --url at the final address). No payload
ends the bridge. Secrets stay off the command line: the DSN from $ORCH_LEASE_BRIDGE_DSN (its password in
~/.pgpass or $PGPASSFILE), headers such as Authorization from --header-file, one 'Name: value' a line.
The listener reconnects by itself; announcements sent while it was disconnected are not replayed (read
orch_lease.lease_history for the gap). SIGTERM stops it.
Every event is checked against orch_lease's history first, and one it does not hold is dropped (any
login can NOTIFY the channel): run it as a member of orch_lease_admin or pg_monitor.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NoReturn

import psycopg

import psycopg.conninfo

from .events import UnsupportedPayload, parse_payload, printable
from .sync import Listener

log = logging.getLogger("orch_lease.bridge")

DSN_VARIABLE = "ORCH_LEASE_BRIDGE_DSN"


def bodies(payload: str) -> list[tuple[bytes, dict[str, str]]]:
    """What one notification becomes: (body, extra headers) per POST."""
    try:
        events = parse_payload(payload)
    except UnsupportedPayload as error:
        log.warning("forwarding a payload this client cannot read, as a string: %s", error)
        return [(json.dumps({"version": None, "unparsed": payload}).encode(), {"X-Orch-Lease-Unparsed": "1"})]
    # one POST per event id: a payload that repeats an event does not repeat its POST
    unique = {event.event_id: event for event in events}.values()
    return [(json.dumps(event.to_json()).encode(), {}) for event in unique]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A 3xx is an answer, not an instruction: following it would turn the POST into a GET without its
    body, to any host, with the Authorization header."""

    def redirect_request(self, *_: object) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def post(url: str, body: bytes, headers: dict[str, str], retries: int, timeout: float = 10.0) -> bool:
    """POSTs `body`; True once the webhook answered 2xx."""
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json", **headers}
    )
    for attempt in range(retries + 1):
        try:
            with _opener.open(request, timeout=timeout):
                return True
        except urllib.error.HTTPError as error:
            if 300 <= error.code < 400:
                location = printable(error.headers.get("Location", ""))
                log.error("webhook redirected (%s to %s), not followed, alert dropped: %s", error.code, location, body.decode())
                return False
            if error.code != 429 and error.code < 500:
                log.error("webhook refused an alert (%s), dropped: %s", error.code, body.decode())
                return False
            failure: Exception = error
        except (urllib.error.URLError, OSError) as error:
            failure = error
        if attempt < retries:
            log.warning("webhook POST failed (%s); again in %d s", printable(failure), 2**attempt)
            time.sleep(2**attempt)
    log.error("webhook POST failed %d times (%s), alert dropped: %s", retries + 1, printable(failure), body.decode())
    return False


# The text fields of an announced event that the history must hold as sent, and every field checked.
CHECKED_TEXT = ("event", "outcome", "work_item", "old_owner", "old_boot_id", "new_owner", "reason", "by_role")
CHECKED = ("event_id", "at", "old_token", "new_token", *CHECKED_TEXT)


def history_reader(dsn: str) -> psycopg.Connection[tuple[Any, ...]]:
    """A connection for the history check. It runs as an admin or pg_monitor, so nothing the database's or
    the role's search_path puts first (a database owner's own length() or ||) may run in it."""
    db = psycopg.connect(dsn, autocommit=True)
    db.execute("SET search_path = pg_catalog")
    return db


def confirmed(payloads: Iterable[str], dsn: str) -> Iterator[str]:
    """The payloads whose every event is in orch_lease's history, and of the others a payload of the
    events that are; an event the history does not hold (forged) is logged and dropped. Payloads of a
    version this client cannot read pass as they came (and are POSTed marked unparsed). Needs a role
    that reads the whole history: orch_lease_admin or pg_monitor."""
    # Any login can NOTIFY orch_lease with a payload of its own making; none can write the history (#29).
    # Every field must be the history's (text cut as the server cuts it), so a genuine alert replayed
    # with another reason or owner is dropped too.
    cut = "CASE WHEN pg_catalog.length(h.{0}) > 120 THEN pg_catalog.left(h.{0}, 120) || '…' ELSE h.{0} END"
    recorded = (
        "SELECT EXISTS (SELECT FROM orch_lease.lease_history h WHERE h.event_id = %(event_id)s"
        " AND h.at = %(at)s::pg_catalog.timestamptz"
        " AND h.old_token IS NOT DISTINCT FROM %(old_token)s AND h.new_token IS NOT DISTINCT FROM %(new_token)s"
        + "".join(f" AND {cut.format(field)} IS NOT DISTINCT FROM %({field})s" for field in CHECKED_TEXT)
        + ")"
    )
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
                db = db if db is not None and not db.closed else history_reader(dsn)
                row = db.execute(recorded, {field: event.data.get(field) for field in CHECKED}).fetchone()
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
            yield json.dumps({"version": genuine[0].version, "events": [event.data for event in genuine]})


def run(payloads: Iterable[str], url: str, headers: dict[str, str], retries: int) -> None:
    for payload in payloads:
        try:
            for body, extra in bodies(payload):
                post(url, body, {**headers, **extra}, retries)
        except Exception as error:  # no payload ends the bridge
            log.error("could not forward a payload (%s): %s", type(error).__name__, printable(payload))


def _headers(lines: Iterable[str], where: str, fail: Callable[[str], NoReturn]) -> dict[str, str]:
    """'Name: value' lines as headers; blank lines and # comments skipped. Never shows a value."""
    headers = {}
    for number, line in enumerate((line.rstrip("\r\n") for line in lines), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip() or any(c in name + value for c in "\r\n"):
            fail(f"{where}, header {number}: not 'Name: value' (the value is not shown)")
        headers[name.strip()] = value.strip()
    return headers


def _stop(*_: object) -> NoReturn:
    """SIGTERM: exit 0 at once. Not by raising SystemExit from the handler: a finalizer that happened to
    run at that moment (a closed response's, a connection's) swallows it, and the bridge ran on until a
    second SIGTERM (seen in scripts/python-client-test.sh as a bridge that did not stop within 10 s).
    Nothing is left to clean up: every log line is already written, and the server ends the listening
    session when its socket closes."""
    os._exit(0)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="orch-lease-bridge", description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--dsn",
        help=f"libpq connection string of the database to listen to (default: ${DSN_VARIABLE}; on the command "
        "line every local user can read it, so keep passwords out of it)",
    )
    parser.add_argument("--url", required=True, help="the webhook, http:// or https://")
    parser.add_argument("--header", action="append", default=[], help="'Name: value', repeatable (visible in ps)")
    parser.add_argument("--header-file", help="a file of 'Name: value' lines (for secrets such as Authorization)")
    parser.add_argument("--retries", type=int, default=5, help="tries after a failed POST (default 5)")
    parser.add_argument("--duration", type=float, help="stop after this many seconds (default: never)")
    args = parser.parse_args(argv)
    dsn = args.dsn or os.environ.get(DSN_VARIABLE)
    if not dsn:
        parser.error(f"give the database: ${DSN_VARIABLE} or --dsn")
    try:
        psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.Error:
        parser.error("the DSN is not a libpq connection string (it is not shown: it may hold a password)")
    if urllib.parse.urlsplit(args.url).scheme not in ("http", "https") or args.retries < 0:
        parser.error("--url must be an http:// or https:// URL, and --retries at least 0")
    headers = _headers(args.header, "--header", parser.error)
    if args.header_file:
        try:
            with open(args.header_file, encoding="utf-8") as file:
                headers.update(_headers(file, args.header_file, parser.error))
        except OSError as error:
            parser.error(f"--header-file: {error.strerror}: {args.header_file}")
    logging.basicConfig(level=logging.INFO, format="orch-lease-bridge: %(levelname)s %(message)s")
    signal.signal(signal.SIGTERM, _stop)
    listener = Listener(dsn, duration=args.duration, on_listen=lambda: log.info("listening on orch_lease"))
    run(confirmed(listener.payloads(), dsn), args.url, headers, args.retries)


if __name__ == "__main__":
    main()
