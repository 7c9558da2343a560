//! What the driver compares after each step, and how it says where the model and the server parted.
use super::{owner_name, Server};
use crate::contract::{Cas, Grant, Outcome, Step, Takeover};
use crate::state::{Stage, State};
use crate::trace::task_id;
use postgres::fallible_iterator::FallibleIterator;
use std::time::{Duration, Instant};

/// Where the model and the server parted.
#[derive(Debug)]
pub struct Mismatch {
    /// What was compared: the step's answer, the leases, the stages, the history…
    pub what: String,
    /// The SQL that was run.
    pub sql: String,
    pub expected: String,
    pub got: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}\n    SQL:      {}\n    expected: {}\n    got:      {}",
            self.what, self.sql, self.expected, self.got
        )
    }
}

pub(super) fn mismatch(
    what: &str,
    sql: &str,
    expected: impl ToString,
    got: impl ToString,
) -> Mismatch {
    Mismatch {
        what: what.to_string(),
        sql: sql.to_string(),
        expected: expected.to_string(),
        got: got.to_string(),
    }
}

/// A database error as a mismatch: the contract has no error on these paths.
pub(super) fn failed(sql: &str, error: postgres::Error) -> Mismatch {
    let got = match error.as_db_error() {
        Some(db) => format!("ERROR {}: {}", db.code().code(), db.message()),
        None => format!("error: {error}"),
    };
    mismatch("the call failed", sql, "an answer", got)
}

impl Server {
    /// An acquire's answer: outcome, `acquired`, the token (new and larger than every earlier one),
    /// and the holder named by `held` and `reclaimed`.
    pub(super) fn compare_grant(
        &mut self,
        sql: &str,
        step: &Step,
        row: postgres::Row,
    ) -> Result<&'static str, Mismatch> {
        let Outcome::Grant(grant, stage) = step.outcome else {
            unreachable!("an acquire answers a grant")
        };
        let (acquired, outcome): (bool, String) = (row.get(0), row.get(1));
        let (token, holder): (Option<i64>, Option<String>) = (row.get(2), row.get(3));
        let said: Option<String> = row.get(4);
        let expected_stage = stage.map(|s| s.name().to_string());
        let expected_holder = match grant {
            Grant::Held(h) | Grant::Reclaimed { from: h, .. } => Some(owner_name(h)),
            _ => None,
        };
        let expected = format!(
            "{} acquired={} token={} holder={:?} stage={expected_stage:?}",
            grant.name(),
            grant.acquired(),
            if grant.token().is_some() {
                "new"
            } else {
                "NULL"
            },
            expected_holder
        );
        let got = format!(
            "{outcome} acquired={acquired} token={} holder={holder:?} stage={said:?}",
            token.map_or("NULL".into(), |t| t.to_string())
        );
        let same = outcome == grant.name()
            && acquired == grant.acquired()
            && token.is_some() == grant.token().is_some()
            && holder == expected_holder
            && said == expected_stage;
        if !same {
            return Err(mismatch("the acquire's answer", sql, expected, got));
        }
        if let (Some(model), Some(real)) = (grant.token(), token) {
            if real <= self.last_token {
                return Err(mismatch(
                    "the token order",
                    sql,
                    format!("a token larger than {}", self.last_token),
                    real,
                ));
            }
            self.last_token = real;
            self.tokens.insert(model, real);
        }
        Ok(grant.name())
    }

    /// Leases a call returned (recover): (work_item, token) pairs against the model's takeovers.
    pub(super) fn compare_taken(
        &self,
        sql: &str,
        step: &Step,
        kind: impl Fn(&Takeover) -> &'static str,
        got: Vec<(String, i64)>,
    ) -> Result<(), Mismatch> {
        let got = got
            .into_iter()
            .map(|(item, token)| (format!("{item}:recovered"), token))
            .collect();
        self.compare_taken_kinds(sql, step, kind, got)
    }

    pub(super) fn compare_taken_kinds(
        &self,
        sql: &str,
        step: &Step,
        kind: impl Fn(&Takeover) -> &'static str,
        mut got: Vec<(String, i64)>,
    ) -> Result<(), Mismatch> {
        let mut expected: Vec<(String, i64)> = step
            .takeovers
            .iter()
            .map(|t| {
                (
                    format!("{}:{}", self.key(t.item, t.slot), kind(t)),
                    self.tokens[&t.token],
                )
            })
            .collect();
        expected.sort();
        got.sort();
        if expected != got {
            return Err(mismatch(
                "the leases the call took",
                sql,
                format!("{expected:?}"),
                format!("{got:?}"),
            ));
        }
        Ok(())
    }

    /// The leases, the stages and the boot registry after a step.
    pub(super) fn compare_state(&mut self, model: &State) -> Result<(), Mismatch> {
        let sql = "SELECT work_item, token, owner, owner_boot_id FROM orch_lease.transition_lease ORDER BY work_item";
        let rows = self.operator.query(sql, &[]).map_err(|e| failed(sql, e))?;
        let got: Vec<String> = rows
            .iter()
            .map(|r| {
                let boot: String = r.get(3);
                let boot = match boot.strip_prefix("session:") {
                    Some(session) => format!("session:{}", session.split(':').next().unwrap_or("")),
                    None => boot,
                };
                format!(
                    "{} t{} {} {}",
                    r.get::<_, String>(0),
                    r.get::<_, i64>(1),
                    r.get::<_, String>(2),
                    boot
                )
            })
            .collect();
        let mut expected: Vec<String> = model
            .leases()
            .map(|(item, slot, lease)| {
                let h = lease.holder;
                let boot = match h.session {
                    true => format!("session:{}", self.session_pids[&(h.actor, h.boot)]),
                    false => self.boot_id(h.actor, h.boot),
                };
                let token = self.tokens.get(&lease.token).copied().unwrap_or(-1);
                format!("{} t{token} {} {boot}", self.key(item, slot), owner_name(h))
            })
            .collect();
        expected.sort();
        if expected != got {
            return Err(mismatch(
                "the leases",
                sql,
                format!("{expected:?}"),
                format!("{got:?}"),
            ));
        }

        let sql = "SELECT id, stage FROM tasks ORDER BY id";
        let rows = self.operator.query(sql, &[]).map_err(|e| failed(sql, e))?;
        let got: Vec<String> = rows
            .iter()
            .map(|r| {
                format!(
                    "{} {}",
                    r.get::<_, i64>(0),
                    r.get::<_, Option<String>>(1).unwrap_or_default()
                )
            })
            .collect();
        let expected: Vec<String> = model
            .items
            .iter()
            .enumerate()
            .filter(|(_, item)| item.stage != Stage::Missing)
            .map(|(i, item)| format!("{} {}", task_id(i as u8), item.stage.name()))
            .collect();
        if expected != got {
            return Err(mismatch(
                "the stages",
                sql,
                format!("{expected:?}"),
                format!("{got:?}"),
            ));
        }

        let sql = "SELECT boot_id, superseded_at IS NOT NULL FROM orch_lease.boot
                    WHERE boot_id LIKE $1 || '-%' ORDER BY boot_id";
        let rows = self
            .operator
            .query(sql, &[&self.prefix])
            .map_err(|e| failed(sql, e))?;
        let got: Vec<String> = rows
            .iter()
            .map(|r| {
                format!(
                    "{}{}",
                    r.get::<_, String>(0),
                    if r.get(1) { " superseded" } else { "" }
                )
            })
            .collect();
        let mut expected = Vec::new();
        for (a, actor) in model.actors.iter().enumerate() {
            for boot in 1..8 {
                if actor.registered & (1 << boot) != 0 {
                    let superseded = if actor.is_superseded(boot) {
                        " superseded"
                    } else {
                        ""
                    };
                    expected.push(format!("{}{superseded}", self.boot_id(a as u8, boot)));
                }
            }
        }
        expected.sort();
        if expected != got {
            return Err(mismatch(
                "the boot registry",
                sql,
                format!("{expected:?}"),
                format!("{got:?}"),
            ));
        }
        Ok(())
    }

    /// Every takeover of the step is exactly one history event, and there is no other; and no `held` or
    /// `busy` refusal is recorded (the default `orch_lease.history = changes` counts them only).
    pub(super) fn compare_events(&mut self, step: &Step) -> Result<(), Mismatch> {
        let sql = "SELECT count(*) FROM orch_lease.lease_event
                    WHERE event_id > $1 AND event = 'refused' AND outcome IN ('held', 'busy')";
        let polling: i64 = self
            .operator
            .query_one(sql, &[&self.last_event])
            .map_err(|e| failed(sql, e))?
            .get(0);
        if polling != 0 {
            return Err(mismatch("the refusals recorded", sql, 0, polling));
        }
        let sql =
            "SELECT event_id, event, outcome, work_item, old_token FROM orch_lease.lease_event
                    WHERE event_id > $1 AND event IN ('reclaimed', 'reaped', 'forced', 'switched')
                    ORDER BY event_id";
        let rows = self
            .operator
            .query(sql, &[&self.last_event])
            .map_err(|e| failed(sql, e))?;
        let mut got: Vec<String> = rows
            .iter()
            .map(|r| {
                let token: Option<i64> = r.get(4);
                format!(
                    "{}/{} {} t{}",
                    r.get::<_, String>(1),
                    r.get::<_, String>(2),
                    r.get::<_, String>(3),
                    token.map_or("null".to_string(), |t| t.to_string())
                )
            })
            .collect();
        let mut expected = self.expected_takeovers(step);
        got.sort();
        expected.sort();
        if expected != got {
            return Err(mismatch(
                "the takeover events",
                sql,
                format!("{expected:?}"),
                format!("{got:?}"),
            ));
        }
        let sql = "SELECT coalesce(max(event_id), 0) FROM orch_lease.lease_event";
        self.last_event = self
            .operator
            .query_one(sql, &[])
            .map_err(|e| failed(sql, e))?
            .get(0);
        Ok(())
    }
}

impl Server {
    /// The takeovers the model made in `step`, as `event/outcome key tN`, the way the server's are read.
    /// The takeovers of the step, and its switch of the kill-switch (work item '', no token).
    fn expected_takeovers(&self, step: &Step) -> Vec<String> {
        let switched = (step.outcome == Outcome::Switched).then(|| {
            format!(
                "switched/{}  tnull",
                if step.next.enabled { "on" } else { "off" }
            )
        });
        step.takeovers
            .iter()
            .map(|t| {
                let (event, outcome) = t.kind.event();
                format!(
                    "{event}/{outcome} {} t{}",
                    self.key(t.item, t.slot),
                    self.tokens[&t.token]
                )
            })
            .chain(switched)
            .collect()
    }

    /// Every takeover of the step is announced once on channel `orch_lease`, and nothing else is.
    pub(super) fn compare_announcements(&mut self, step: &Step) -> Result<(), Mismatch> {
        let mut expected = self.expected_takeovers(step);
        let listen = "LISTEN orch_lease";
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut notifications = self.listener.notifications();
        while got.len() < expected.len() {
            let wait = deadline.saturating_duration_since(Instant::now());
            match notifications
                .timeout_iter(wait)
                .next()
                .map_err(|e| failed(listen, e))?
            {
                Some(note) => got.extend(announced(note.payload())),
                None => break,
            }
        }
        // Anything more that has already arrived is one too many.
        while let Some(note) = notifications.iter().next().map_err(|e| failed(listen, e))? {
            got.extend(announced(note.payload()));
        }
        expected.sort();
        got.sort();
        if expected != got {
            return Err(mismatch(
                "the announcements (NOTIFY orch_lease)",
                listen,
                format!("{expected:?}"),
                format!("{got:?}"),
            ));
        }
        Ok(())
    }
}

/// The events of an announcement (payload format version 2: `{"version":2,"events":[{…},…]}`, one
/// statement's takeovers), each as its event, outcome, work item and old token.
fn announced(payload: &str) -> Vec<String> {
    match payload.strip_prefix("{\"version\":2,\"events\":[") {
        Some(events) => events.split("{\"event_id\":").skip(1).map(event).collect(),
        None => vec![format!("not a version 2 payload: {payload}")],
    }
}

/// One event of an announcement, read from its JSON text.
fn event(payload: &str) -> String {
    let field = |name: &str| {
        let start = payload
            .find(&format!("\"{name}\":"))
            .map(|at| at + name.len() + 3);
        start.map_or("?".to_string(), |at| {
            let rest = &payload[at..];
            match rest.strip_prefix('"') {
                Some(quoted) => quoted.split('"').next().unwrap_or("").to_string(),
                None => rest.split([',', '}']).next().unwrap_or("").to_string(),
            }
        })
    };
    format!(
        "{}/{} {} t{}",
        field("event"),
        field("outcome"),
        field("work_item"),
        field("old_token")
    )
}

/// A release's answer; `names` are how each answer is counted.
pub(super) fn compare_bool(
    sql: &str,
    step: &Step,
    got: bool,
    names: [&'static str; 2],
) -> Result<&'static str, Mismatch> {
    let Outcome::Ended(expected) = step.outcome else {
        unreachable!("a release answers a boolean")
    };
    if got != expected {
        return Err(mismatch("the release's answer", sql, expected, got));
    }
    Ok(names[got as usize])
}

pub(super) fn compare_cas(
    sql: &str,
    step: &Step,
    row: postgres::Row,
) -> Result<&'static str, Mismatch> {
    let Outcome::Cas(cas) = step.outcome else {
        unreachable!("a commit answers a CAS result")
    };
    let (applied, outcome, current): (bool, String, Option<String>) =
        (row.get(0), row.get(1), row.get(2));
    let expected_current = match cas {
        Cas::StageMismatch(stage) => stage.map(|s| s.name().to_string()),
        _ => None,
    };
    let expected_applied = matches!(cas, Cas::Applied | Cas::Unconditional);
    if outcome != cas.name() || applied != expected_applied || current != expected_current {
        return Err(mismatch(
            "the commit's answer",
            sql,
            format!(
                "{} applied={expected_applied} current_stage={expected_current:?}",
                cas.name()
            ),
            format!("{outcome} applied={applied} current_stage={current:?}"),
        ));
    }
    Ok(cas.name())
}
