//! The transition lease: owner-exclusion on *entry* to a side-effectful transition.
//!
//! One row per held lease. A grant draws a fencing token from one sequence, so every grant's token is
//! larger than all before it. A lease has no TTL: its holder is dead only when its boot incarnation was
//! superseded (see `recovery`), and the only age bound is a reaper's ceiling.
use crate::{config, errors, events, guard, recovery};
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::{composite_type, AllocatedByRust};

extension_sql!(
    r#"
CREATE SEQUENCE orch_lease.token_seq AS bigint;
COMMENT ON SEQUENCE orch_lease.token_seq IS 'Fencing tokens: every grant takes a new, larger one.';
CREATE TABLE orch_lease.transition_lease (
    work_item     text PRIMARY KEY,
    token         bigint NOT NULL,
    owner         text NOT NULL,
    owner_pid     integer NOT NULL,
    owner_boot_id text NOT NULL,
    scope         text,
    acquired_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX transition_lease_owner_boot_id ON orch_lease.transition_lease (owner_boot_id);
COMMENT ON TABLE orch_lease.transition_lease IS 'One row per held transition lease.';
SELECT pg_catalog.pg_extension_config_dump('orch_lease.transition_lease', '');
SELECT pg_catalog.pg_extension_config_dump('orch_lease.token_seq', '');

CREATE TYPE orch_lease.lease_grant AS (
    acquired       boolean,
    outcome        text,
    token          bigint,
    holder         text,
    holder_pid     integer,
    holder_boot_id text,
    held_since     timestamptz
);
"#,
    name = "lease_table"
);

/// Per-item transaction-level advisory lock class ("orch" in ASCII). Its two-key form keeps it apart
/// from an application's own single-bigint advisory locks.
const ITEM_LOCK_CLASS: i32 = 0x6f72_6368;

/// The current holder of a lease, as a refusal reports it.
struct Holder {
    token: i64,
    owner: String,
    pid: i32,
    boot_id: String,
    since: TimestampWithTimeZone,
}

/// What an acquire decided, before it becomes an `orch_lease.lease_grant` row.
struct Grant {
    acquired: bool,
    outcome: &'static str,
    token: Option<i64>,
    holder: Option<Holder>,
}

fn grant(
    acquired: bool,
    outcome: &'static str,
    token: Option<i64>,
    holder: Option<Holder>,
) -> Grant {
    Grant {
        acquired,
        outcome,
        token,
        holder,
    }
}

impl Grant {
    /// Built in the caller's memory context, after SPI has finished (SPI frees its own on exit).
    fn into_row(self) -> PgHeapTuple<'static, AllocatedByRust> {
        let holder = self.holder;
        guard::composite(
            "orch_lease.lease_grant",
            vec![
                self.acquired.into_datum(),
                self.outcome.into_datum(),
                self.token.into_datum(),
                holder.as_ref().and_then(|h| h.owner.as_str().into_datum()),
                holder.as_ref().and_then(|h| h.pid.into_datum()),
                holder
                    .as_ref()
                    .and_then(|h| h.boot_id.as_str().into_datum()),
                holder.as_ref().and_then(|h| h.since.into_datum()),
            ],
        )
    }
}

/// Asks for the transition lease on `work_item`. Never waits and never raises on contention: the
/// outcome says what happened (acquired, held, reclaimed, busy, superseded, disabled, out_of_scope).
#[pg_extern(volatile, parallel_unsafe, requires = ["lease_table", "events"])]
fn transition_lease_acquire(
    work_item: Option<&str>,
    owner: Option<&str>,
    owner_pid: Option<i32>,
    owner_boot_id: Option<&str>,
    scope: default!(Option<&str>, "NULL"),
) -> composite_type!('static, "orch_lease.lease_grant") {
    let work_item = errors::required("work_item", work_item);
    let owner = errors::required("owner", owner);
    let owner_pid = errors::positive_pid("owner_pid", owner_pid);
    let boot_id = errors::required("owner_boot_id", owner_boot_id);
    let scope = errors::optional("scope", scope);

    request_lease(Request {
        work_item,
        owner,
        owner_pid,
        boot_id: boot_id.to_string(),
        scope,
    })
}

/// Asks for a session-bound lease on `work_item`: it is live while the calling database session is,
/// and stale as soon as that backend is gone (its pid and start time identify it, so a reused pid does
/// not keep it alive); the next acquire reclaims it. Not for transaction-mode connection poolers, where
/// the session is not the actor's.
#[pg_extern(volatile, parallel_unsafe, requires = ["lease_table", "events"])]
fn transition_lease_acquire_session(
    work_item: Option<&str>,
    owner: Option<&str>,
    scope: default!(Option<&str>, "NULL"),
) -> composite_type!('static, "orch_lease.lease_grant") {
    request_lease(Request {
        work_item: errors::required("work_item", work_item),
        owner: errors::required("owner", owner),
        owner_pid: unsafe { pg_sys::MyProcPid },
        boot_id: recovery::this_session_boot_id(),
        scope: errors::optional("scope", scope),
    })
}

fn request_lease(request: Request<'_>) -> PgHeapTuple<'static, AllocatedByRust> {
    if !config::enabled() {
        return grant(true, "disabled", None, None).into_row();
    }
    if !config::covers_scope(request.scope) {
        return grant(true, "out_of_scope", None, None).into_row();
    }
    guard::as_owner(|| {
        Spi::connect(|client| {
            let decided = guard::lost_race_as(
                || acquire(client, &request),
                || grant(false, "busy", None, None),
            );
            record_grant(client, &request, &decided);
            decided
        })
    })
    .into_row()
}

/// Records a grant or a refusal in the history (a reclaim recorded its own takeover).
fn record_grant(client: &SpiClient<'_>, request: &Request<'_>, decided: &Grant) {
    let event = match decided.outcome {
        "acquired" => "acquired",
        "held" | "busy" | "superseded" => "refused",
        _ => return,
    };
    let holder = decided.holder.as_ref();
    events::record(
        client,
        events::Event {
            event,
            outcome: decided.outcome,
            work_item: request.work_item,
            actor: Some(request.owner),
            old_owner: holder.map(|h| h.owner.as_str()),
            old_token: holder.map(|h| h.token),
            old_boot_id: holder.map(|h| h.boot_id.as_str()),
            new_owner: decided.acquired.then_some(request.owner),
            new_token: decided.token,
            ..Default::default()
        },
    );
}

struct Request<'a> {
    work_item: &'a str,
    owner: &'a str,
    owner_pid: i32,
    boot_id: String,
    scope: Option<&'a str>,
}

fn acquire(client: &SpiClient<'_>, request: &Request<'_>) -> Grant {
    // One statement: the gate and the current holder. The gate: the caller's own boot must not be
    // superseded (a zombie gets nothing), and no other transaction may be acquiring this item right now
    // (a transaction-level advisory lock, never waited for). The boot row is share-locked so that a
    // concurrent recover, which supersedes it, waits for us and then sees our lease. The holder is read
    // without locking: a visible row is the holder as of now, even if its release is in flight.
    let current = guard::run(
        client,
        "SELECT (SELECT b.superseded_at IS NOT NULL FROM orch_lease.boot b
                  WHERE b.boot_id = $2 FOR SHARE NOWAIT),
                pg_catalog.pg_try_advisory_xact_lock($3, pg_catalog.hashtext($1)),
                l.token, l.owner, l.owner_pid, l.owner_boot_id, l.acquired_at,
                orch_lease.boot_liveness(l.owner_boot_id) = 'stale'
           FROM (VALUES (true)) AS one_row
           LEFT JOIN orch_lease.transition_lease l ON l.work_item = $1",
        &[
            request.work_item.into(),
            request.boot_id.as_str().into(),
            ITEM_LOCK_CLASS.into(),
        ],
    )
    .first();
    if current.get::<bool>(1).unwrap().unwrap_or(false) {
        return grant(false, "superseded", None, None);
    }
    if !current.get::<bool>(2).unwrap().unwrap_or(false) {
        return grant(false, "busy", None, None);
    }
    let Some(token) = current.get::<i64>(3).unwrap() else {
        // Free as of this statement's snapshot. A grant committed since is caught by ON CONFLICT.
        let granted = guard::run(
            client,
            "INSERT INTO orch_lease.transition_lease
                    (work_item, token, owner, owner_pid, owner_boot_id, scope)
             VALUES ($1, nextval('orch_lease.token_seq'), $2, $3, $4, $5)
             ON CONFLICT (work_item) DO NOTHING
             RETURNING token",
            &[
                request.work_item.into(),
                request.owner.into(),
                request.owner_pid.into(),
                request.boot_id.as_str().into(),
                request.scope.into(),
            ],
        );
        // No row: a lease was committed after our snapshot — someone else is there.
        if granted.is_empty() {
            return grant(false, "busy", None, None);
        }
        return grant(
            true,
            "acquired",
            granted.first().get::<i64>(1).unwrap(),
            None,
        );
    };
    let holder = Holder {
        token,
        owner: current.get(4).unwrap().unwrap(),
        pid: current.get(5).unwrap().unwrap(),
        boot_id: current.get(6).unwrap().unwrap(),
        since: current.get(7).unwrap().unwrap(),
    };
    // Dead: its boot was superseded, or it was a session-bound lease and that session is gone.
    let holder_dead = current.get::<bool>(8).unwrap().unwrap_or(false);
    if !holder_dead {
        return grant(false, "held", None, Some(holder));
    }
    reclaim(client, request, holder)
}

/// Takes over the lease of a holder whose boot was superseded: new owner, new token, logged and
/// announced. NOWAIT: if the dead holder's lease is being released or committed right now, we are busy.
fn reclaim(client: &SpiClient<'_>, request: &Request<'_>, dead: Holder) -> Grant {
    let taken = guard::run(
        client,
        "WITH locked AS (
             SELECT work_item FROM orch_lease.transition_lease
              WHERE work_item = $1 AND token = $6 FOR UPDATE NOWAIT)
         UPDATE orch_lease.transition_lease l
            SET token = nextval('orch_lease.token_seq'), owner = $2, owner_pid = $3,
                owner_boot_id = $4, scope = $5, acquired_at = clock_timestamp()
           FROM locked WHERE l.work_item = locked.work_item
         RETURNING l.token",
        &[
            request.work_item.into(),
            request.owner.into(),
            request.owner_pid.into(),
            request.boot_id.as_str().into(),
            request.scope.into(),
            dead.token.into(),
        ],
    );
    // No row: the dead holder's lease was released or taken over since we read it.
    if taken.is_empty() {
        return grant(false, "busy", None, None);
    }
    let token: i64 = taken
        .first()
        .get(1)
        .unwrap()
        .expect("a reclaimed lease has a token");
    events::record(
        client,
        events::Event {
            event: "reclaimed",
            outcome: "reclaimed",
            work_item: request.work_item,
            actor: Some(request.owner),
            old_owner: Some(&dead.owner),
            old_token: Some(dead.token),
            old_boot_id: Some(&dead.boot_id),
            new_owner: Some(request.owner),
            new_token: Some(token),
            reason: Some("holder is dead (boot superseded or session gone)"),
            ..Default::default()
        },
    );
    grant(true, "reclaimed", Some(token), Some(dead))
}

/// Releases the lease on `work_item` if, and only if, it is still held with `token`. A stale or NULL
/// token (what a disabled or out-of-scope grant hands out) is a `false`, never an error.
#[pg_extern(volatile, parallel_unsafe, requires = ["lease_table"])]
fn transition_lease_release(work_item: Option<&str>, token: Option<i64>) -> bool {
    let work_item = errors::required("work_item", work_item);
    let Some(token) = token else { return false };
    end_lease(
        "DELETE FROM orch_lease.transition_lease WHERE work_item = $1 AND token = $2
         RETURNING owner, token, owner_boot_id",
        &[work_item.into(), token.into()],
        (work_item, "released", None),
    )
}

/// The manual release for the people on call. With `expected_token` it frees only that lease, so it can
/// never free one that was re-acquired meanwhile. Logged as a `forced` event and announced.
#[pg_extern(volatile, parallel_unsafe, requires = ["lease_table", "events"])]
fn transition_lease_force_release(
    work_item: Option<&str>,
    expected_token: default!(Option<i64>, "NULL"),
    reason: default!(Option<&str>, "'manual'"),
) -> bool {
    let work_item = errors::required("work_item", work_item);
    let reason = errors::required("reason", reason);
    end_lease(
        "DELETE FROM orch_lease.transition_lease
          WHERE work_item = $1 AND ($2::bigint IS NULL OR token = $2)
         RETURNING owner, token, owner_boot_id",
        &[work_item.into(), expected_token.into()],
        (work_item, "forced", Some(reason)),
    )
}

/// Ends the lease `delete` removes (it returns owner, token, owner_boot_id) and records it as `event`:
/// `released` by its holder, or `forced` for `reason`. False when there was no such lease, or when it is
/// being used or ended by another transaction right now.
fn end_lease(
    delete: &str,
    args: &[DatumWithOid],
    (work_item, event, reason): (&str, &str, Option<&str>),
) -> bool {
    guard::as_owner(|| {
        Spi::connect(|client| {
            guard::lost_race_as(
                || {
                    let gone = guard::run(client, delete, args);
                    if gone.is_empty() {
                        return false;
                    }
                    let gone = gone.first();
                    let owner: String = gone.get(1).unwrap().unwrap();
                    let boot_id: String = gone.get(3).unwrap().unwrap();
                    events::record(
                        client,
                        events::Event {
                            event,
                            outcome: event,
                            work_item,
                            actor: (event == "released").then_some(owner.as_str()),
                            old_owner: Some(&owner),
                            old_token: gone.get(2).unwrap(),
                            old_boot_id: Some(&boot_id),
                            reason,
                            ..Default::default()
                        },
                    );
                    true
                },
                || false,
            )
        })
    })
}
