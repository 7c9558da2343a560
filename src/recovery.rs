//! Owner liveness by boot incarnation instead of heartbeat.
//!
//! Each process start registers a fresh boot id for its instance through `transition_lease_recover`.
//! That supersedes every earlier boot of the instance, which makes all their leases stale: recover
//! releases them at once, and any acquire that meets one later reclaims it. A 900 s blocking step
//! needs no heartbeat to stay live; a restart needs no timeout to be recovered from.
use crate::{errors, guard};
use pgrx::prelude::*;
use pgrx::{composite_type, AllocatedByRust, PgSqlErrorCode};

extension_sql!(
    r#"
CREATE TABLE orch_lease.boot (
    boot_id       text PRIMARY KEY,
    instance      text NOT NULL,
    pid           integer,
    registered_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    superseded_at timestamptz,
    superseded_by text
);
CREATE UNIQUE INDEX boot_one_live_per_instance ON orch_lease.boot (instance)
    WHERE superseded_at IS NULL;
CREATE INDEX boot_instance ON orch_lease.boot (instance);
COMMENT ON TABLE orch_lease.boot IS
    'Boot registry: one row per process incarnation; at most one live (not superseded) per instance.';
SELECT pg_catalog.pg_extension_config_dump('orch_lease.boot', '');
"#,
    name = "boot_table"
);

/// Instance-level advisory lock class ("boot"): recovers of one instance run one at a time.
const INSTANCE_LOCK_CLASS: i32 = 0x626f_6f74;

/// Registers `boot_id` as the live incarnation of `instance`, supersedes every earlier boot of that
/// instance, releases their leases and returns them. Call it once at process start, in its own
/// transaction. A second call with the same boot returns nothing; a superseded boot is refused.
#[pg_extern(volatile, parallel_unsafe, requires = ["boot_table", "lease_table", "events"])]
fn transition_lease_recover(
    boot_id: Option<&str>,
    instance: default!(Option<&str>, "'default'"),
    pid: default!(Option<i32>, "NULL"),
) -> SetOfIterator<'static, composite_type!('static, "orch_lease.transition_lease")> {
    let boot_id = errors::required("boot_id", boot_id);
    let instance = errors::required("instance", instance);
    if let Some(pid) = pid {
        errors::positive_pid("pid", Some(pid));
    }

    let released = guard::as_owner(|| {
        Spi::connect(|client| {
            guard::run(
                client,
                "SELECT pg_catalog.pg_advisory_xact_lock($1, pg_catalog.hashtext($2))",
                &[INSTANCE_LOCK_CLASS.into(), instance.into()],
            );
            let known = guard::run(
                client,
                "SELECT instance, superseded_by, superseded_at::text FROM orch_lease.boot
              WHERE boot_id = $1",
                &[boot_id.into()],
            );
            if !known.is_empty() {
                let known = known.first();
                let registered_for: String = known.get(1).unwrap().unwrap();
                if registered_for != instance {
                    errors::raise_hinted(
                        PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                        format!(
                            "orch_lease: boot \"{boot_id}\" is registered for instance \
                         \"{registered_for}\", not \"{instance}\""
                        ),
                        "Each process start needs a fresh boot id.",
                        None,
                    );
                }
                if let Some(successor) = known.get::<String>(2).unwrap() {
                    let when: String = known.get(3).unwrap().unwrap();
                    errors::raise_hinted(
                        PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                        format!("orch_lease: boot \"{boot_id}\" was superseded by \"{successor}\""),
                        "A superseded incarnation must not recover: stop this process.",
                        Some(format!("Superseded at {when}.")),
                    );
                }
                return Vec::new(); // already the live boot: nothing left to recover
            }

            // Supersede the live boot of this instance. This waits for acquires that share-lock it, so
            // their leases are committed, and visible, before we release the stale ones below.
            guard::run(
                client,
                "UPDATE orch_lease.boot SET superseded_at = clock_timestamp(), superseded_by = $1
              WHERE instance = $2 AND superseded_at IS NULL",
                &[boot_id.into(), instance.into()],
            );
            guard::run(
                client,
                "INSERT INTO orch_lease.boot (boot_id, instance, pid) VALUES ($1, $2, $3)",
                &[boot_id.into(), instance.into(), pid.into()],
            );
            let released = guard::run(
            client,
            "WITH released AS (
                 DELETE FROM orch_lease.transition_lease l
                  USING orch_lease.boot b
                  WHERE b.boot_id = l.owner_boot_id AND b.instance = $2
                    AND b.superseded_at IS NOT NULL
                 RETURNING l.*),
             logged AS (
                 INSERT INTO orch_lease.lease_event
                        (event, outcome, work_item, old_owner, old_token, old_boot_id, reason, by_role)
                 SELECT 'reclaimed', 'recovered', work_item, owner, token, owner_boot_id,
                        'recover by boot ' || $1, pg_catalog.pg_get_userbyid($3)
                   FROM released)
             SELECT work_item, token, owner, owner_pid, owner_boot_id, scope, acquired_at
               FROM released ORDER BY work_item",
            &[boot_id.into(), instance.into(), guard::caller().into()],
        );
            released
                .map(|row| Released {
                    work_item: row.get(1).unwrap().unwrap(),
                    token: row.get(2).unwrap().unwrap(),
                    owner: row.get(3).unwrap().unwrap(),
                    owner_pid: row.get(4).unwrap().unwrap(),
                    owner_boot_id: row.get(5).unwrap().unwrap(),
                    scope: row.get(6).unwrap(),
                    acquired_at: row.get(7).unwrap().unwrap(),
                })
                .collect::<Vec<_>>()
        })
    });
    // Rows are built here, in the caller's memory context: SPI frees its own when it finishes.
    SetOfIterator::new(released.into_iter().map(Released::into_row))
}

/// A lease that recover released, as an `orch_lease.transition_lease` row.
struct Released {
    work_item: String,
    token: i64,
    owner: String,
    owner_pid: i32,
    owner_boot_id: String,
    scope: Option<String>,
    acquired_at: TimestampWithTimeZone,
}

impl Released {
    fn into_row(self) -> PgHeapTuple<'static, AllocatedByRust> {
        guard::composite(
            "orch_lease.transition_lease",
            vec![
                self.work_item.into_datum(),
                self.token.into_datum(),
                self.owner.into_datum(),
                self.owner_pid.into_datum(),
                self.owner_boot_id.into_datum(),
                self.scope.into_datum(),
                self.acquired_at.into_datum(),
            ],
        )
    }
}

/// Boot ids of session-bound leases: `session:<backend pid>:<backend start, µs since 2000>`.
const SESSION_BOOT: &str = "session:";

/// The boot id that stands for this database session.
pub fn this_session_boot_id() -> String {
    let (pid, started) = unsafe { (pg_sys::MyProcPid, pg_sys::MyStartTimestamp) };
    format!("{SESSION_BOOT}{pid}:{started}")
}

/// Whether the session behind a session-bound boot id is still connected: a backend with that pid and
/// that start time exists. NULL for a boot id that is not session-bound. The backend list is read
/// afresh, not from the transaction's cached snapshot, so a session started since is seen.
#[pg_extern(volatile, parallel_safe)]
fn session_alive(boot_id: &str) -> Option<bool> {
    let (pid, started) = boot_id.strip_prefix(SESSION_BOOT)?.split_once(':')?;
    let (pid, started): (i32, i64) = (pid.parse().ok()?, started.parse().ok()?);
    Some(unsafe {
        pg_sys::pgstat_clear_backend_activity_snapshot();
        (1..=pg_sys::pgstat_fetch_stat_numbackends()).any(|backend| {
            let entry = local_backend_status(backend);
            !entry.is_null()
                && (*entry).backendStatus.st_procpid == pid
                && (*entry).backendStatus.st_proc_start_timestamp == started
        })
    })
}

/// The reaper, in tiers: leases whose holder is dead (boot superseded, session gone) are reclaimed;
/// leases held longer than `max_running_s` are reaped whatever their holder's liveness — the hard age
/// ceiling, the only bound a lease has; live leases under the ceiling are left alone. A lease in use
/// by a running transaction right now (a CAS committing under it) is skipped until the next run.
/// Each lease taken is logged and announced, and returned with its kind: `stale` or `ceiling`.
// The column names must be spelled out in the signature for pgrx to declare RETURNS TABLE.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_unsafe, requires = ["lease_table", "events"])]
fn transition_lease_reap(
    max_running_s: Option<i32>,
) -> TableIterator<
    'static,
    (
        name!(work_item, String),
        name!(kind, String),
        name!(token, i64),
        name!(owner, String),
        name!(owner_pid, i32),
        name!(owner_boot_id, String),
        name!(acquired_at, TimestampWithTimeZone),
        name!(age_s, f64),
    ),
> {
    let ceiling = errors::present("max_running_s", max_running_s);
    if ceiling <= 0 {
        errors::raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!(
                "orch_lease: max_running_s must be a positive number of seconds, not {ceiling}"
            ),
        );
    }
    let reaped = guard::as_owner(|| {
        Spi::connect(|client| {
            guard::run(
                client,
                "WITH doomed AS (
                     SELECT l.work_item, l.token,
                            CASE WHEN orch_lease.boot_liveness(l.owner_boot_id) = 'stale'
                                 THEN 'stale' ELSE 'ceiling' END AS kind
                       FROM orch_lease.transition_lease l
                      WHERE orch_lease.boot_liveness(l.owner_boot_id) = 'stale'
                         OR l.acquired_at < clock_timestamp() - make_interval(secs => $1)
                        FOR UPDATE SKIP LOCKED),
                 gone AS (
                     DELETE FROM orch_lease.transition_lease l USING doomed d
                      WHERE l.work_item = d.work_item AND l.token = d.token
                     RETURNING l.*, d.kind,
                               extract(epoch FROM clock_timestamp() - l.acquired_at)::float8 AS age_s),
                 logged AS (
                     INSERT INTO orch_lease.lease_event
                            (event, outcome, work_item, old_owner, old_token, old_boot_id, reason, by_role)
                     SELECT CASE kind WHEN 'stale' THEN 'reclaimed' ELSE 'reaped' END, kind, work_item,
                            owner, token, owner_boot_id,
                            CASE kind WHEN 'stale' THEN 'reap: holder is dead'
                                 ELSE format('reap: held %s s, over the ceiling of %s s', round(age_s), $1)
                            END,
                            pg_catalog.pg_get_userbyid($2)
                       FROM gone)
                 SELECT work_item, kind, token, owner, owner_pid, owner_boot_id, acquired_at, age_s
                   FROM gone ORDER BY work_item",
                &[ceiling.into(), guard::caller().into()],
            )
            .map(|row| {
                (
                    row.get(1).unwrap().unwrap(),
                    row.get(2).unwrap().unwrap(),
                    row.get(3).unwrap().unwrap(),
                    row.get(4).unwrap().unwrap(),
                    row.get(5).unwrap().unwrap(),
                    row.get(6).unwrap().unwrap(),
                    row.get(7).unwrap().unwrap(),
                    row.get(8).unwrap().unwrap(),
                )
            })
            .collect::<Vec<_>>()
        })
    });
    TableIterator::new(reaped)
}

/// The liveness of the lease on `work_item`, for a reaper that decides job by job: `none` (no lease),
/// `live`, `stale` (its holder's boot was superseded, or its session is gone) or `unknown` (its boot
/// was never registered through recover).
#[pg_extern(volatile, parallel_unsafe, requires = ["lease_table", "events"])]
fn transition_lease_liveness(work_item: Option<&str>) -> String {
    let work_item = errors::required("work_item", work_item);
    guard::as_owner(|| {
        Spi::connect(|client| {
            let lease = guard::run(
                client,
                "SELECT coalesce(orch_lease.boot_liveness(owner_boot_id), 'unknown')
                   FROM orch_lease.transition_lease WHERE work_item = $1",
                &[work_item.into()],
            );
            match lease.is_empty() {
                true => "none".to_string(),
                false => lease.first().get::<String>(1).unwrap().unwrap(),
            }
        })
    })
}

/// The backend status entry at a 1-based index of this transaction's snapshot of the backend list
/// (renamed in PostgreSQL 16).
#[cfg(any(feature = "pg14", feature = "pg15"))]
unsafe fn local_backend_status(index: i32) -> *mut pg_sys::LocalPgBackendStatus {
    pg_sys::pgstat_fetch_stat_local_beentry(index)
}

#[cfg(not(any(feature = "pg14", feature = "pg15")))]
unsafe fn local_backend_status(index: i32) -> *mut pg_sys::LocalPgBackendStatus {
    pg_sys::pgstat_get_local_beentry_by_index(index)
}
