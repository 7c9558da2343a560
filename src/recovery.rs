//! Owner liveness by boot incarnation instead of heartbeat, and the reaper.
//!
//! Each process start registers a fresh boot id for its instance through `transition_lease_recover`.
//! That supersedes every earlier boot of the instance, which makes all their leases stale: recover
//! ends them at once, and any acquire that meets one later reclaims it. A 900 s blocking step needs no
//! heartbeat to stay live; a restart needs no timeout to be recovered from. This module owns the boot
//! registry and the one definition of liveness (`boot_liveness`, `session_alive`).
use crate::lease::{self, Ended};
use crate::rows::{column, nullable};
use crate::{errors, owner, plans, races, task_table};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::{composite_type, AnyNumeric, PgSqlErrorCode};

extension_sql!(
    r#"
CREATE TABLE orch_lease.boot (
    boot_id       text PRIMARY KEY,
    instance      text NOT NULL,
    pid           integer,
    registered_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    superseded_at timestamptz,
    superseded_by text,
    registered_by text,
    registered_session text
);
CREATE UNIQUE INDEX boot_one_live_per_instance ON orch_lease.boot (instance)
    WHERE superseded_at IS NULL;
CREATE INDEX boot_instance ON orch_lease.boot (instance);
COMMENT ON TABLE orch_lease.boot IS
    'Boot registry: one row per process incarnation; at most one live (not superseded) per instance.';
COMMENT ON COLUMN orch_lease.boot.registered_by IS
    'The role that registered this boot: only it (or an orch_lease_admin) recovers its instance (NULL: before 0.4.0).';
COMMENT ON COLUMN orch_lease.boot.registered_session IS
    'The database session that registered this boot (session:<backend pid>:<start>): while it is connected, recover of the instance refuses (NULL: registered by a takeover, by an admin for another role, or before 0.4.0).';
SELECT pg_catalog.pg_extension_config_dump('orch_lease.boot', '');
"#,
    name = "boot_table"
);

extension_sql!(
    r#"
-- Liveness of a lease holder's boot: live, stale (boot superseded, or session gone), NULL if unknown.
CREATE FUNCTION orch_lease.boot_liveness(owner_boot_id text) RETURNS text
LANGUAGE sql STABLE AS $$
    -- Run under the caller's search_path (the status view calls it, read by pg_monitor scrapers): no
    -- unqualified operator, not even CASE x WHEN's = (red team of #34, F15b).
    SELECT CASE WHEN s.alive THEN 'live'
                WHEN NOT s.alive THEN 'stale'
                ELSE (SELECT CASE WHEN b.superseded_at IS NULL THEN 'live' ELSE 'stale' END
                        FROM orch_lease.boot b WHERE b.boot_id OPERATOR(pg_catalog.=) $1) END
      FROM (SELECT orch_lease.session_alive($1) AS alive) s
$$;
COMMENT ON FUNCTION orch_lease.boot_liveness(text) IS
    'Liveness of a boot: live, stale (superseded, or its session gone), NULL when never registered.';
"#,
    name = "liveness",
    requires = ["boot_table", session_alive]
);

/// Registers `boot_id` as the live incarnation of `instance`, supersedes every earlier boot of that
/// instance, ends their leases and returns them. Call it once at process start, in its own READ
/// COMMITTED transaction. A second call with the same boot returns nothing; a superseded boot is
/// refused, and so is an instance whose live boot's session is still connected (another running
/// process with the same instance name: 55006). An actor recovers instances its role registered, or
/// new ones; another role's instance takes an `orch_lease_admin`.
#[pg_extern(volatile, parallel_unsafe, requires = ["boot_table", "lease_table", "events"])]
fn transition_lease_recover(
    boot_id: Option<&str>,
    instance: default!(Option<&str>, "'default'"),
    pid: default!(Option<i32>, "NULL"),
) -> SetOfIterator<'static, composite_type!('static, "orch_lease.transition_lease")> {
    register(boot_id, instance, pid, Takeover::Refused)
}

/// Recover on purpose: the same as `transition_lease_recover`, but it supersedes the instance's live
/// boot even while the session that registered it is connected. For the people on call replacing a
/// wedged process, and for actors behind a connection pooler, whose sessions outlive their processes.
#[pg_extern(volatile, parallel_unsafe, requires = ["boot_table", "lease_table", "events"])]
fn transition_lease_takeover(
    boot_id: Option<&str>,
    instance: Option<&str>,
    pid: default!(Option<i32>, "NULL"),
) -> SetOfIterator<'static, composite_type!('static, "orch_lease.transition_lease")> {
    register(boot_id, instance, pid, Takeover::Allowed)
}

/// For the people on call, when an actor registered another role's instance name first (squatting),
/// or registered another role's boot id as its own: every boot of `instance` becomes `to_role`'s, so
/// that role recovers the instance, and acquires under those boots, from now on; the squatter does
/// neither. Returns how many boots changed hands. Admins only.
#[pg_extern(volatile, parallel_unsafe, requires = ["boot_table"])]
fn transition_lease_hand_over(instance: Option<&str>, to_role: Option<&str>) -> i32 {
    let instance = boot_name("instance", instance);
    let to_role = errors::required("to_role", to_role);
    let name = std::ffi::CString::new(to_role).unwrap_or_default();
    // SAFETY: a catalog cache look-up by a C string that outlives the call; missing is InvalidOid.
    if unsafe { pg_sys::get_role_oid(name.as_ptr(), true) } == pg_sys::InvalidOid {
        errors::raise(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!("orch_lease: role \"{to_role}\" does not exist"),
        );
    }
    // The live boot's row lock, as a recover takes it, is waited for within the bound.
    races::bounded_lock_wait(|| {
        owner::as_owner(|| {
            Spi::connect(|client| {
                plans::run(
                    client,
                    "UPDATE orch_lease.boot SET registered_by = $2, registered_session = NULL
                      WHERE instance = $1 RETURNING boot_id",
                    &[instance.into(), to_role.into()],
                )
                .len() as i32
            })
        })
    })
}

/// Whether a recover may supersede a live boot whose registering session is still connected.
#[derive(PartialEq)]
enum Takeover {
    Refused,
    Allowed,
}

/// Longest boot id and instance name a recover registers.
const BOOT_NAME_BYTES: usize = 256;

/// A boot's name (its id, its instance): required, and short, because boots are never pruned (#29 item 14).
fn boot_name<'a>(argument: &str, value: Option<&'a str>) -> &'a str {
    errors::at_most(argument, errors::required(argument, value), BOOT_NAME_BYTES)
}

/// What one recover is asked: the boot, its instance and pid, and whether it takes over.
struct Registration<'a> {
    boot_id: &'a str,
    instance: &'a str,
    pid: Option<i32>,
    takeover: Takeover,
}

fn register(
    boot_id: Option<&str>,
    instance: Option<&str>,
    pid: Option<i32>,
    takeover: Takeover,
) -> SetOfIterator<'static, composite_type!('static, "orch_lease.transition_lease")> {
    let asked = Registration {
        boot_id: boot_name("boot_id", boot_id),
        instance: boot_name("instance", instance),
        pid,
        takeover,
    };
    if let Some(pid) = pid {
        errors::positive_pid("pid", Some(pid));
    }
    let function = match asked.takeover {
        Takeover::Refused => "transition_lease_recover",
        Takeover::Allowed => "transition_lease_takeover",
    };
    read_committed_only(function);
    let role = owner::caller_name();
    let admin = owner::caller_is_member_of(c"orch_lease_admin");
    let session = this_session_boot_id();

    // Every lock recover waits for (the live boot's row, its leases' rows) is one that only orch_lease's
    // own statements take, and the wait is bounded: a transaction left idle or prepared on one makes
    // recover fail with 55P03 naming it, not hang (#29 items 4 and 8).
    let mut ended = races::naming_holders(
        &format!("{function} of instance \"{}\"", asked.instance),
        (
            "that an acquire, commit or recover not yet ended holds",
            &["orch_lease.boot", "orch_lease.transition_lease"],
        ),
        "Call it again. If it keeps failing, a transaction named in the detail holds the instance's live \
         boot or one of its leases and has not ended: end it (docs/runbook.md, \"A transaction that holds \
         an item\").",
        || {
            owner::as_owner(|| {
                Spi::connect(|client| {
                    // A concurrent recover of a new instance can register its first boot between our
                    // look and our insert: then we look again, under that boot's lock.
                    for _ in 0..REGISTER_ROUNDS {
                        if let Some(ended) = register_once(client, &asked, (&role, admin), &session)
                        {
                            return ended;
                        }
                    }
                    errors::raise_hinted(
                        PgSqlErrorCode::ERRCODE_LOCK_NOT_AVAILABLE,
                        format!(
                            "orch_lease: instance \"{}\" is being registered by other recovers right now",
                            asked.instance
                        ),
                        "Call it again.",
                        None,
                    )
                })
            })
        },
    );
    ended.sort_by(|a, b| {
        (a.task_table.to_u32(), &a.work_item).cmp(&(b.task_table.to_u32(), &b.work_item))
    });
    // Rows are built here, in the caller's memory context: SPI frees its own when it finishes.
    SetOfIterator::new(ended.into_iter().map(Ended::into_row))
}

/// How many times a recover looks for the instance's live boot before it gives up: a second look is
/// needed only when a concurrent recover registered the instance's first boot, a third only when yet
/// another superseded that one meanwhile.
const REGISTER_ROUNDS: usize = 4;

/// One round of a recover: None when a boot of the instance was registered concurrently (look again).
fn register_once(
    client: &SpiClient<'_>,
    asked: &Registration<'_>,
    (role, admin): (&str, bool),
    session: &str,
) -> Option<Vec<Ended>> {
    let (boot_id, instance, pid, takeover) =
        (asked.boot_id, asked.instance, asked.pid, &asked.takeover);
    // The caller's right to the instance comes before its lock: a role that may not recover it must
    // not hold its live boot's row either (an open or prepared takeover of another role's live boot
    // froze that instance's acquires and recovers; red team of #29). Checked again under the lock.
    instance_registrant(client, (boot_id, instance), role, admin);
    // The instance's live boot, locked: recovers of one instance run one at a time, and acquires under it
    // (which share-lock it) have committed, so their leases are visible before we end the stale ones.
    // A row lock that only orch_lease's owner can take, unlike an advisory lock, which any login can
    // hold (#29 item 4).
    let live: Option<String> = plans::run(
        client,
        "SELECT boot_id FROM orch_lease.boot WHERE instance = $1 AND superseded_at IS NULL
            FOR NO KEY UPDATE",
        &[instance.into()],
    )
    .next()
    .map(|row| column(&row, "boot_id"));
    if already_registered(client, boot_id, instance, pid) {
        // Already the live boot: nothing left to recover — unless another running process
        // registered it (two processes started with one deterministic boot id).
        if *takeover == Takeover::Refused {
            refuse_a_twin(client, instance, session);
        }
        return Some(Vec::new());
    }
    let registrant = instance_registrant(client, (boot_id, instance), role, admin);
    if *takeover == Takeover::Refused {
        refuse_a_twin(client, instance, session);
    }
    // Only a process registering itself leaves its session to guard the instance: a takeover
    // (on call, or behind a pooler) or an admin registering another role's instance from psql
    // must not make the real process's restart answer 55006 while that psql stays open.
    let guard = (*takeover == Takeover::Refused && registrant == role).then_some(session);
    // Supersede the live boot we locked, and only it: one registered since is looked at again.
    // The time is read first (`lease::clock`): Citus runs no volatile function in an UPDATE of
    // its tables (docs/scale-out.md), and the boot registry is one there.
    if let Some(live) = &live {
        plans::run(
            client,
            "UPDATE orch_lease.boot SET superseded_at = $3, superseded_by = $1 WHERE boot_id = $2",
            &[
                boot_id.into(),
                live.as_str().into(),
                lease::clock(client).into(),
            ],
        );
    }
    let inserted = plans::run(
        client,
        "INSERT INTO orch_lease.boot (boot_id, instance, pid, registered_by, registered_session)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING boot_id",
        &[
            boot_id.into(),
            instance.into(),
            pid.into(),
            registrant.as_str().into(),
            guard.into(),
        ],
    );
    if inserted.is_empty() {
        return None;
    }
    Some(lease::end_superseded(client, instance, boot_id))
}

/// How long a recover waits for the session of the boot it would supersede to end: a crashed
/// process's session is torn down moments after the process, and its restart may be quicker.
const TWIN_GRACE: std::time::Duration = std::time::Duration::from_millis(100);

/// Two running processes with one instance name would supersede each other and redo each other's
/// effects. Where the database can see it — the live boot's registering session, another one than
/// ours, is still connected after `TWIN_GRACE` — recover refuses with 55006. Behind a connection
/// pooler the registering session outlives its process, so this refuses a genuine restart too:
/// there `transition_lease_takeover` is the way in, and unique instance names are the caller's to keep.
fn refuse_a_twin(client: &SpiClient<'_>, instance: &str, session: &str) {
    let live = plans::run(
        client,
        "SELECT boot_id, registered_session, registered_at::text AS registered_at
           FROM orch_lease.boot WHERE instance = $1 AND superseded_at IS NULL",
        &[instance.into()],
    );
    if live.is_empty() {
        return;
    }
    let live = live.first();
    let Some(registered) = nullable::<String>(&live, "registered_session") else {
        return; // registered before 0.4.0: nothing to tell
    };
    if registered == session {
        return; // this very session registers a new boot: a restart it knows of
    }
    let deadline = std::time::Instant::now() + TWIN_GRACE;
    while session_alive(&registered) == Some(true) {
        if std::time::Instant::now() >= deadline {
            let boot: String = column(&live, "boot_id");
            let at: String = column(&live, "registered_at");
            let backend = registered.split(':').nth(1).unwrap_or("?");
            errors::raise_hinted(
                PgSqlErrorCode::ERRCODE_OBJECT_IN_USE,
                format!(
                    "orch_lease: instance \"{instance}\" is in use by a session that is still connected"
                ),
                "Give each running process an instance name of its own (host and slot, or a \
                 StatefulSet ordinal). To replace that process on purpose, call \
                 orch_lease.transition_lease_takeover.",
                Some(format!(
                    "Its live boot \"{boot}\" was registered at {at} by backend pid {backend}, which is still connected."
                )),
            );
        }
        // SAFETY: a plain sleep; no pointer, no state.
        unsafe { pg_sys::pg_usleep(5_000) };
        check_for_interrupts!();
    }
}

/// Is `boot_id` registered already? Then it must be the live boot of `instance`, of the same process:
/// a boot of another instance or another pid, or a superseded one, is an error.
fn already_registered(
    client: &SpiClient<'_>,
    boot_id: &str,
    instance: &str,
    pid: Option<i32>,
) -> bool {
    let known = plans::run(
        client,
        "SELECT instance, pid, superseded_by, superseded_at::text AS superseded_at
           FROM orch_lease.boot WHERE boot_id = $1",
        &[boot_id.into()],
    );
    if known.is_empty() {
        return false;
    }
    let known = known.first();
    let registered_for: String = column(&known, "instance");
    if registered_for != instance {
        errors::raise_hinted(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!(
                "orch_lease: boot \"{boot_id}\" is registered for instance \"{registered_for}\", not \"{instance}\""
            ),
            "Each process start needs a fresh boot id.",
            None,
        );
    }
    if let (Some(registered), Some(pid)) = (nullable::<i32>(&known, "pid"), pid) {
        if registered != pid {
            errors::raise_hinted(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!(
                    "orch_lease: boot \"{boot_id}\" is registered for pid {registered}, not {pid}"
                ),
                "Each process start needs a fresh boot id.",
                None,
            );
        }
    }
    if let Some(successor) = nullable::<String>(&known, "superseded_by") {
        let when: String = column(&known, "superseded_at");
        errors::raise_hinted(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("orch_lease: boot \"{boot_id}\" was superseded by \"{successor}\""),
            "A superseded incarnation must not recover: stop this process.",
            Some(format!("Superseded at {when}.")),
        );
    }
    true
}

/// The role a new boot of `instance` is registered for. An instance belongs to the role that
/// registered its latest boot: only that role, or an orch_lease_admin (on its behalf), recovers it; a
/// new instance belongs to the caller. The boot id must be new to everyone else too: a boot id that
/// another role's leases name, or a session's, is not the caller's to adopt.
fn instance_registrant(
    client: &SpiClient<'_>,
    (boot_id, instance): (&str, &str),
    role: &str,
    admin: bool,
) -> String {
    if boot_id.starts_with(SESSION_BOOT) {
        errors::raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("orch_lease: boot ids beginning with \"{SESSION_BOOT}\" stand for database sessions"),
        );
    }
    // `SELECT 1`, not `SELECT`: on Citus a multi-shard subquery comes back as an intermediate result,
    // which a zero-column one cannot be read from (docs/scale-out.md).
    let found = plans::run(
        client,
        "SELECT (SELECT registered_by FROM orch_lease.boot WHERE instance = $1
                  ORDER BY registered_at DESC LIMIT 1) AS registered_by,
                EXISTS (SELECT 1 FROM orch_lease.boot WHERE instance = $1) AS known,
                EXISTS (SELECT 1 FROM orch_lease.transition_lease
                         WHERE owner_boot_id = $2 AND holder_role IS DISTINCT FROM $3) AS adopted",
        &[instance.into(), boot_id.into(), role.into()],
    )
    .first();
    if column::<bool>(&found, "adopted") && !admin {
        errors::raise_hinted(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("orch_lease: boot \"{boot_id}\" is named by leases of another role"),
            "Each process start needs a fresh boot id of its own.",
            None,
        );
    }
    let registered_by = nullable::<String>(&found, "registered_by");
    match (column::<bool>(&found, "known"), registered_by) {
        (false, _) => role.to_string(),
        (true, Some(owner)) if owner == role => owner,
        (true, Some(owner)) if admin => owner,
        (true, None) if admin => role.to_string(),
        (true, registered_by) => errors::raise_hinted(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("orch_lease: instance \"{instance}\" was registered by another role"),
            "An actor recovers only the instances its own role registered; \
             another role's instance takes a member of orch_lease_admin.",
            Some(format!(
                "Registered by {}; called by role \"{role}\".",
                registered_by.map_or("a role before 0.4.0".into(), |_| "another role".to_string())
            )),
        ),
    }
}

/// An acquire under a boot another role registered: 42501. An admin may have registered it on that
/// role's behalf (runbook section 4), which does not make it the admin's: it is told whose boot it is and
/// what to do. An actor is not told another role's name, only to use a boot of its own.
pub fn refuse_foreign_boot(client: &SpiClient<'_>, boot_id: &str, role: &str) -> ! {
    let message = format!("orch_lease: boot \"{boot_id}\" was registered by another role");
    if !owner::caller_is_member_of(c"orch_lease_admin") {
        errors::raise_hinted(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            message,
            "Acquire with the boot id your own process registered through transition_lease_recover.",
            Some(format!("Called by role \"{role}\".")),
        );
    }
    let boot = plans::run(
        client,
        "SELECT instance, registered_by FROM orch_lease.boot WHERE boot_id = $1",
        &[boot_id.into()],
    )
    .first();
    let (instance, registered_by): (String, String) =
        (column(&boot, "instance"), column(&boot, "registered_by"));
    errors::raise_hinted(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        message,
        &format!(
            "An admin's recover registers a boot on behalf of the instance's role, \"{registered_by}\": \
             only that role acquires with it (the process of instance \"{instance}\"). To hold a lease \
             yourself, recover an instance of your own with a fresh boot id and acquire with that boot."
        ),
        Some(format!(
            "Boot \"{boot_id}\" is of instance \"{instance}\", registered by role \"{registered_by}\"; \
             called by role \"{role}\"."
        )),
    )
}

/// Recover and the reaper must see every lease committed until now, which a transaction snapshot
/// (REPEATABLE READ, SERIALIZABLE) taken earlier does not: there they refuse.
fn read_committed_only(function: &str) {
    if races::one_snapshot() {
        errors::raise_hinted(
            PgSqlErrorCode::ERRCODE_INVALID_TRANSACTION_STATE,
            format!("orch_lease: {function} must run at READ COMMITTED"),
            "Call it in its own transaction at READ COMMITTED (the default isolation level).",
            None,
        );
    }
}

/// Boot ids of session-bound leases: `session:<backend pid>:<backend start, µs since 2000>`.
const SESSION_BOOT: &str = "session:";

/// A `session:` boot id stands for one database session, and only that session may name it: a made-up
/// one of a session long gone made every acquire an announced reclaim (#29 item 14).
pub fn only_this_session(argument: &str, boot_id: &str) {
    if boot_id.starts_with(SESSION_BOOT) && boot_id != this_session_boot_id() {
        errors::raise_hinted(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("orch_lease: {argument} \"{boot_id}\" is not this session's"),
            "Boot ids beginning with \"session:\" stand for database sessions: for a lease bound to \
             this session, call orch_lease.transition_lease_acquire_session.",
            None,
        );
    }
}

/// The boot id that stands for this database session.
pub fn this_session_boot_id() -> String {
    // SAFETY: two plain globals of the backend, set at its start, read on its only thread.
    let (pid, started) = unsafe { (pg_sys::MyProcPid, pg_sys::MyStartTimestamp) };
    format!("{SESSION_BOOT}{pid}:{started}")
}

/// Whether the session behind a session-bound boot id is still connected: a backend with that pid and
/// that start time exists, connected to this database (a copy restored into another database of the
/// same cluster does not see the original's sessions as its own). NULL for a boot id that is not
/// session-bound. The backend list is read afresh, not from the transaction's cached snapshot, so a
/// session started since is seen.
#[pg_extern(volatile, parallel_safe)]
fn session_alive(boot_id: &str) -> Option<bool> {
    let (pid, started) = boot_id.strip_prefix(SESSION_BOOT)?.split_once(':')?;
    let (pid, started): (i32, i64) = (pid.parse().ok()?, started.parse().ok()?);
    // SAFETY: the backend list is this backend's local copy (in its transaction's memory, taken by the
    // first fetch after the clear); each entry is NULL-checked and read while that copy lives.
    Some(unsafe {
        pg_sys::pgstat_clear_backend_activity_snapshot();
        (1..=pg_sys::pgstat_fetch_stat_numbackends()).any(|backend| {
            let entry = local_backend_status(backend);
            !entry.is_null()
                && (*entry).backendStatus.st_procpid == pid
                && (*entry).backendStatus.st_proc_start_timestamp == started
                && (*entry).backendStatus.st_databaseid == pg_sys::MyDatabaseId
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
#[pg_extern(volatile, parallel_unsafe, requires = ["lease_table", "events", "liveness"])]
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
        name!(age_s, AnyNumeric),
        name!(task_table, task_table::TableArg),
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
    read_committed_only("transition_lease_reap");
    let mut reaped = owner::as_owner(|| Spi::connect(|client| lease::reap(client, ceiling)));
    reaped.sort_by(|(a, ..), (b, ..)| {
        (a.task_table.to_u32(), &a.work_item).cmp(&(b.task_table.to_u32(), &b.work_item))
    });
    TableIterator::new(reaped.into_iter().map(|(lease, kind, age_s)| {
        (
            lease.work_item,
            kind.to_string(),
            lease.token,
            lease.owner,
            lease.owner_pid,
            lease.owner_boot_id,
            lease.acquired_at,
            seconds(age_s),
            task_table::TableArg(lease.task_table),
        )
    }))
}

/// An age in seconds as the status view shows it: numeric, three decimals.
fn seconds(age_s: f64) -> AnyNumeric {
    let text = format!("{age_s:.3}");
    text.parse()
        .unwrap_or_else(|error| errors::internal("cannot read an age", &text, error))
}

/// The liveness of the lease on `work_item`, for a reaper that decides job by job: `none` (no lease),
/// `live`, `stale` (its holder's boot was superseded, or its session is gone) or `unknown` (its boot
/// was never registered through recover).
#[pg_extern(
    volatile,
    parallel_unsafe,
    requires = ["lease_table", "liveness"],
    sql = r#"
CREATE FUNCTION orch_lease.transition_lease_liveness(
    work_item text,
    task_table regclass DEFAULT NULL
) RETURNS text VOLATILE PARALLEL UNSAFE LANGUAGE c
AS 'MODULE_PATHNAME', 'transition_lease_liveness_wrapper';
"#
)]
fn transition_lease_liveness(work_item: Option<&str>, fcinfo: pg_sys::FunctionCallInfo) -> String {
    let task_table = task_table::argument(fcinfo, 1);
    let work_item = errors::required("work_item", work_item);
    let item = task_table::item("work_item", work_item, task_table);
    owner::as_owner(|| {
        Spi::connect(|client| {
            let lease = plans::run(
                client,
                "SELECT coalesce(orch_lease.boot_liveness(owner_boot_id), 'unknown') AS liveness
                   FROM orch_lease.transition_lease WHERE task_table = $2 AND work_item = $1",
                &[
                    item.key.as_str().into(),
                    task_table::TableArg(item.table).into(),
                ],
            );
            match lease.is_empty() {
                true => "none".to_string(),
                false => column(&lease.first(), "liveness"),
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

extension_sql!(
    r#"
COMMENT ON FUNCTION orch_lease.transition_lease_recover(text, text, integer) IS
    'At process start: registers a fresh boot of an instance, supersedes the earlier ones and ends their leases (returned); refuses (55006) while the live boot''s session is connected. READ COMMITTED only.';
COMMENT ON FUNCTION orch_lease.transition_lease_takeover(text, text, integer) IS
    'Recover on purpose: supersedes the live boot of an instance even while its session is connected (on call; behind a connection pooler). READ COMMITTED only.';
COMMENT ON FUNCTION orch_lease.transition_lease_hand_over(text, text) IS
    'For the people on call: every boot of an instance becomes the given role''s (the repair for an instance name or boot id another role registered first). Returns how many boots changed hands.';
COMMENT ON FUNCTION orch_lease.transition_lease_reap(integer) IS
    'The reaper: ends leases of dead holders (stale) and leases held longer than max_running_s (ceiling), each recorded and announced. READ COMMITTED only.';
COMMENT ON FUNCTION orch_lease.transition_lease_liveness(text, regclass) IS
    'The liveness of the lease on a work item: none, live, stale or unknown.';
COMMENT ON FUNCTION orch_lease.session_alive(text) IS
    'Whether the database session behind a session-bound boot id is still connected (NULL for other boot ids).';
"#,
    name = "recovery_comments",
    requires = [
        transition_lease_recover,
        transition_lease_takeover,
        transition_lease_hand_over,
        transition_lease_reap,
        transition_lease_liveness,
        session_alive
    ]
);
