//! Conformance: random walks of the model, each step executed against a real server over real
//! connections, every answer, token order, lease, stage and takeover event compared with the model's.
//!
//! One connection per actor (a crash drops it; a restart opens a new one with a new boot id), one for
//! the operator (force_release, the reaper, settings, the zombie's late acquire, the checks), one for
//! the other session (its open transaction) and one that listens for announcements. A walk is a run of episodes; each starts from the
//! model's initial state on a cleaned server (leases deleted, tasks back to `queued`, fresh instance
//! names), so boot numbers stay small.
mod compare;
mod walk;

pub use compare::Mismatch;
pub use walk::{replay, report, shrink, walk, weight, Failure, Random};

use crate::contract::{spelling_of, Action, Config, Step, TakeoverKind};
use crate::state::{Holder, Stage, State};
use crate::trace::{spelling_text, task_id, task_table};
use compare::{compare_bool, compare_cas, failed, mismatch};
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, NoTls};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// The scope actors ask with; `orch_lease.scopes` either covers it ('') or leaves it out.
const SCOPE: &str = "work";
/// How long a CAS waits for a locked task row before it answers `retry`.
const ACTOR_LOCK_TIMEOUT: &str = "50ms";

/// The driver's side of one server: its connections and what it learned of the real tokens.
pub struct Server {
    dsn: String,
    config: Config,
    operator: Client,
    other: Client,
    /// `LISTEN orch_lease`: every takeover is announced once.
    listener: Client,
    /// Each actor's connection (none while it is down), with its backend pid.
    actors: Vec<Option<(Client, i32)>>,
    /// The backend pid each actor incarnation had: names its session-bound leases.
    session_pids: HashMap<(u8, u8), i32>,
    /// Model token -> real token, and the largest real token seen.
    tokens: HashMap<u32, i64>,
    last_token: i64,
    /// The last history event already compared.
    last_event: i64,
    /// Names are unique per run and episode: earlier boots never interfere.
    prefix: String,
    run: String,
    episode: u32,
    /// How often each answer was seen (coverage).
    pub seen: BTreeMap<&'static str, u64>,
}

impl Server {
    /// Connects and prepares the database: the extension, the task table, its registration and the
    /// stage graph the model assumes.
    pub fn connect(dsn: &str, config: Config, run: &str) -> Result<Server, String> {
        let mut operator = connect(dsn).map_err(|e| format!("cannot connect: {e}"))?;
        // Two task tables, each with the stage graph the model assumes (#27). No autovacuum on them:
        // its truncation of emptied pages takes the table's ACCESS EXCLUSIVE lock for a moment, which
        // acquire (never waiting) honestly answers `busy`, a server event the model does not have.
        let setup = "CREATE EXTENSION IF NOT EXISTS orch_lease;
             CREATE TABLE IF NOT EXISTS tasks (id bigint PRIMARY KEY, stage text);
             CREATE TABLE IF NOT EXISTS jobs (id bigint PRIMARY KEY, stage text);
             ALTER TABLE tasks SET (autovacuum_enabled = false);
             ALTER TABLE jobs SET (autovacuum_enabled = false);
             SELECT orch_lease.register_task_table(t, 'id', 'stage')
               FROM unnest(ARRAY['tasks', 'jobs']::regclass[]) t;
             SELECT orch_lease.register_stage_graph(
                        ARRAY['queued -> merged', 'merged -> done'], ARRAY['done'], task_table => t)
               FROM unnest(ARRAY['tasks', 'jobs']::regclass[]) t;";
        operator
            .batch_execute(setup)
            .map_err(|e| failed(setup, e).to_string())?;
        let version: String = operator
            .query_one(
                "SELECT extversion FROM pg_extension WHERE extname = 'orch_lease'",
                &[],
            )
            .map_err(|e| e.to_string())?
            .get(0);
        println!("orch_lease {version} at {dsn}");
        let other = connect(dsn).map_err(|e| format!("cannot connect: {e}"))?;
        let mut listener = connect(dsn).map_err(|e| format!("cannot connect: {e}"))?;
        listener
            .batch_execute("LISTEN orch_lease")
            .map_err(|e| e.to_string())?;
        Ok(Server {
            dsn: dsn.to_string(),
            config,
            operator,
            other,
            listener,
            actors: Vec::new(),
            session_pids: HashMap::new(),
            tokens: HashMap::new(),
            last_token: 0,
            last_event: 0,
            prefix: String::new(),
            run: run.to_string(),
            episode: 0,
            seen: BTreeMap::new(),
        })
    }

    /// A new episode: no lease, every task `queued`, settings at their defaults, fresh connections.
    pub fn reset(&mut self) -> Result<(), Mismatch> {
        self.episode += 1;
        self.prefix = format!("{}-e{}", self.run, self.episode);
        let _ = self.other.batch_execute("ROLLBACK");
        for actor in 0..self.actors.len() {
            self.drop_connection(actor as u8)?;
        }
        let rows: Vec<String> = (0..self.config.items as u8)
            .map(|item| {
                format!(
                    "INSERT INTO {} VALUES ({}, 'queued');",
                    task_table(item),
                    task_id(item)
                )
            })
            .collect();
        let clean = format!(
            "DELETE FROM orch_lease.transition_lease; DELETE FROM tasks; DELETE FROM jobs; {}",
            rows.join(" ")
        );
        self.operator
            .batch_execute(&clean)
            .map_err(|e| failed(&clean, e))?;
        apply_settings(&mut self.operator, true).map_err(|e| failed("SET", e))?;
        let on = "SELECT orch_lease.set_enabled(true, 'a new episode')";
        self.operator
            .query_one(on, &[])
            .map_err(|e| failed(on, e))?;
        self.last_event = self
            .operator
            .query_one(
                "SELECT coalesce(max(event_id), 0) FROM orch_lease.lease_event",
                &[],
            )
            .map_err(|e| failed("SELECT max(event_id)", e))?
            .get(0);
        self.tokens.clear();
        self.session_pids.clear();
        while let Some(late) = self
            .listener
            .notifications()
            .timeout_iter(Duration::from_millis(20))
            .next()
            .map_err(|e| failed("LISTEN", e))?
        {
            let _ = late; // an earlier episode's: not this one's
        }
        self.actors = (0..self.config.actors).map(|_| None).collect();
        for actor in 0..self.config.actors as u8 {
            self.open_connection(actor, 1, true)?;
        }
        Ok(())
    }

    fn instance(&self, actor: u8) -> String {
        format!("{}-actor{actor}", self.prefix)
    }

    fn boot_id(&self, actor: u8, boot: u8) -> String {
        format!("{}-boot{boot}", self.instance(actor))
    }

    fn open_connection(&mut self, actor: u8, boot: u8, covered: bool) -> Result<(), Mismatch> {
        let sql = "connect; SET lock_timeout; SET orch_lease.scopes";
        let mut client = connect(&self.dsn).map_err(|e| failed(sql, e))?;
        client
            .batch_execute(&format!("SET lock_timeout = '{ACTOR_LOCK_TIMEOUT}'"))
            .map_err(|e| failed(sql, e))?;
        apply_settings(&mut client, covered).map_err(|e| failed(sql, e))?;
        let pid: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .map_err(|e| failed(sql, e))?
            .get(0);
        self.session_pids.insert((actor, boot), pid);
        self.actors[actor as usize] = Some((client, pid));
        Ok(())
    }

    /// Drops an actor's connection and waits until its backend is gone, so that its session is dead
    /// for the next step, as it is in the model.
    fn drop_connection(&mut self, actor: u8) -> Result<(), Mismatch> {
        let Some((client, pid)) = self.actors[actor as usize].take() else {
            return Ok(());
        };
        drop(client);
        let sql = "SELECT count(*) FROM pg_stat_activity WHERE pid = $1";
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let alive: i64 = self
                .operator
                .query_one(sql, &[&pid])
                .map_err(|e| failed(sql, e))?
                .get(0);
            if alive == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(mismatch("a dropped connection's backend", sql, 0, alive));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn actor(&mut self, actor: u8) -> &mut Client {
        &mut self.actors[actor as usize]
            .as_mut()
            .expect("the model only lets a running actor call")
            .0
    }

    /// The work item a lease slot has on the server, `table:key`: the canonical text (slot 0), or
    /// under the 0.3.0 raw-text rule the other spelling's own text. The server's are read with
    /// `WORK_ITEM`.
    fn key(&self, item: u8, slot: u8) -> String {
        format!("{}:{}", task_table(item), spelling_text(item, slot))
    }

    /// Runs `action` on the server and compares everything with `step`, the model's prediction.
    pub fn execute(&mut self, state: &State, action: &Action, step: &Step) -> Result<(), Mismatch> {
        let said = self.call(state, action, step)?;
        *self.seen.entry(said).or_default() += 1;
        for taken in &step.takeovers {
            let name = match taken.kind {
                TakeoverKind::Reclaimed => "takeover by acquire",
                TakeoverKind::Recovered => "takeover by recover",
                TakeoverKind::Stale => "takeover by reaper (stale)",
                TakeoverKind::Ceiling => "takeover by reaper (ceiling)",
                TakeoverKind::Forced => "takeover by force_release",
            };
            *self.seen.entry(name).or_default() += 1;
        }
        self.compare_state(&step.next)?;
        self.compare_events(step)?;
        self.compare_announcements(step)
    }

    /// The SQL of one step, with its answer compared; returns the answer's name.
    fn call(
        &mut self,
        state: &State,
        action: &Action,
        step: &Step,
    ) -> Result<&'static str, Mismatch> {
        let covered = step.next.scope_covered;
        match *action {
            Action::Restart(a) => {
                let boot = step.next.actors[a as usize].boot;
                self.open_connection(a, boot, covered)?;
                Ok("restart")
            }
            Action::Crash(a) => {
                self.drop_connection(a)?;
                Ok("crash")
            }
            Action::Effect(_) => Ok("effect"),
            Action::Recover(a) => {
                let sql = "SELECT task_table::text || ':' || work_item, token
                             FROM orch_lease.transition_lease_recover($1, $2, $3)";
                let boot = self.boot_id(a, state.actors[a as usize].boot);
                let instance = self.instance(a);
                let pid = 1000 + a as i32;
                let rows = self
                    .actor(a)
                    .query(sql, &[&boot, &instance, &pid])
                    .map_err(|e| failed(sql, e))?;
                let got: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
                self.compare_taken(sql, step, |_| "recovered", got)?;
                Ok("recover")
            }
            Action::TwinRecover(a) => {
                let sql = "SELECT count(*) FROM orch_lease.transition_lease_recover($1, $2)";
                let twin_boot = format!("twin-of-{}", self.instance(a));
                let instance = self.instance(a);
                let mut twin = connect(&self.dsn).map_err(|e| failed(sql, e))?;
                let refused = twin
                    .query_one(sql, &[&twin_boot, &instance])
                    .err()
                    .and_then(|e| e.code().map(|code| code.code().to_string()));
                if refused.as_deref() != Some("55006") {
                    return Err(mismatch(
                        "a twin's recover",
                        sql,
                        "55006",
                        format!("{refused:?}"),
                    ));
                }
                Ok("recover refused (instance in use)")
            }
            Action::Acquire {
                actor,
                item,
                session,
            } => {
                // The actor reads no stage first: the acquire's answer says it (0.5.0).
                let text = spelling_text(item, spelling_of(actor));
                let owner = format!("actor-{actor}");
                let sql = if session {
                    "SELECT acquired, outcome, token, holder, stage
                       FROM orch_lease.transition_lease_acquire_session($1, $2, $3,
                                                                        task_table => $4::text::regclass)"
                } else {
                    "SELECT acquired, outcome, token, holder, stage
                       FROM orch_lease.transition_lease_acquire($1, $2, $4, $5, $3,
                                                                task_table => $6::text::regclass)"
                };
                let boot = self.boot_id(actor, state.actors[actor as usize].boot);
                let pid = 1000 + actor as i32;
                let table = task_table(item);
                let row = if session {
                    self.actor(actor)
                        .query_one(sql, &[&text, &owner, &SCOPE, &table])
                } else {
                    self.actor(actor)
                        .query_one(sql, &[&text, &owner, &SCOPE, &pid, &boot, &table])
                }
                .map_err(|e| failed(sql, e))?;
                self.compare_grant(sql, step, row)
            }
            Action::ZombieAcquire { actor, item } => {
                let sql = "SELECT acquired, outcome, token, holder, stage
                             FROM orch_lease.transition_lease_acquire($1, $2, $3, $4, $5,
                                                                      task_table => $6::text::regclass)";
                let text = spelling_text(item, spelling_of(actor));
                let owner = format!("actor-{actor}");
                let boot = self.boot_id(actor, state.actors[actor as usize].boot - 1);
                let pid = 1000 + actor as i32;
                let row = self
                    .operator
                    .query_one(
                        sql,
                        &[&text, &owner, &pid, &boot, &SCOPE, &task_table(item)],
                    )
                    .map_err(|e| failed(sql, e))?;
                self.compare_grant(sql, step, row)
            }
            Action::Release(a) => {
                let attempt = state.actors[a as usize].attempt().expect("an attempt");
                let sql = "SELECT orch_lease.transition_lease_release($1, $2, $3::text::regclass)";
                let text = spelling_text(attempt.item, spelling_of(a));
                let token = self.real_token(attempt.token);
                let got: bool = self
                    .actor(a)
                    .query_one(sql, &[&text, &token, &task_table(attempt.item)])
                    .map_err(|e| failed(sql, e))?
                    .get(0);
                compare_bool(sql, step, got, ["release false", "release true"])
            }
            Action::Commit(a) => {
                let attempt = state.actors[a as usize].attempt().expect("an attempt");
                let text = spelling_text(attempt.item, spelling_of(a));
                let (expected, new) = (attempt.expected.name(), attempt.expected.next().name());
                let (sql, row) = match self.real_token(attempt.token) {
                    Some(token) => {
                        let sql = "SELECT applied, outcome, current_stage
                             FROM orch_lease.commit_stage_cas($1, $2, $3, $4, $5::text::regclass)";
                        let table = task_table(attempt.item);
                        (
                            sql,
                            self.actor(a)
                                .query_one(sql, &[&text, &token, &expected, &new, &table]),
                        )
                    }
                    // A grant without a lease writes by name, without a lease check (0.5.0).
                    None => {
                        let sql = "SELECT applied, outcome, current_stage
                             FROM orch_lease.update_task_stage_cas($1, $2, $3, NULL, $4::text::regclass)";
                        let table = task_table(attempt.item);
                        (
                            sql,
                            self.actor(a)
                                .query_one(sql, &[&text, &expected, &new, &table]),
                        )
                    }
                };
                compare_cas(sql, step, row.map_err(|e| failed(sql, e))?)
            }
            Action::CommitStray { actor: a, item } => {
                // Token 0: the token sequence never hands it out.
                let sql = "SELECT applied, outcome, current_stage
                             FROM orch_lease.commit_stage_cas($1, 0, $2, $3, $4::text::regclass)";
                let text = spelling_text(item, spelling_of(a));
                let expected = match state.items[item as usize].stage {
                    Stage::Missing => Stage::Queued,
                    stage => stage,
                };
                let (expected, new) = (expected.name(), expected.next().name());
                let row = self
                    .actor(a)
                    .query_one(sql, &[&text, &expected, &new, &task_table(item)])
                    .map_err(|e| failed(sql, e))?;
                compare_cas(sql, step, row)
            }
            Action::ForceRelease { item, spelling } => {
                let sql = "SELECT orch_lease.transition_lease_force_release($1, NULL, 'model',
                                                                            $2::text::regclass)";
                let text = spelling_text(item, spelling);
                let got: bool = self
                    .operator
                    .query_one(sql, &[&text, &task_table(item)])
                    .map_err(|e| failed(sql, e))?
                    .get(0);
                compare_bool(
                    sql,
                    step,
                    got,
                    ["force_release false", "force_release true"],
                )
            }
            Action::Reap { ceiling } => {
                if ceiling {
                    // Every lease older than the ceiling: backdated by two days, reaped at one.
                    let age = "UPDATE orch_lease.transition_lease
                                  SET acquired_at = acquired_at - interval '2 days'";
                    self.operator
                        .execute(age, &[])
                        .map_err(|e| failed(age, e))?;
                }
                let sql = "SELECT task_table::text || ':' || work_item, kind, token
                             FROM orch_lease.transition_lease_reap(86400)";
                let rows = self.operator.query(sql, &[]).map_err(|e| failed(sql, e))?;
                let mut got = Vec::new();
                for row in &rows {
                    let kind: String = row.get(1);
                    got.push((format!("{}:{kind}", row.get::<_, String>(0)), row.get(2)));
                }
                let kinds = |t: &crate::contract::Takeover| match t.kind {
                    TakeoverKind::Stale => "stale",
                    _ => "ceiling",
                };
                self.compare_taken_kinds(sql, step, kinds, got)?;
                Ok("reap")
            }
            // The database's kill-switch, from the operator's session: the actors' sessions, open all
            // along, are not touched; their next call must see it.
            Action::SetEnabled(on) => {
                let sql = "SELECT orch_lease.set_enabled($1, 'the model')";
                let switched: bool = self
                    .operator
                    .query_one(sql, &[&on])
                    .map_err(|e| failed(sql, e))?
                    .get(0);
                if !switched {
                    return Err(mismatch("set_enabled's answer", sql, true, switched));
                }
                Ok("kill-switch")
            }
            Action::SetScopeCovered(_) => {
                apply_settings(&mut self.operator, covered).map_err(|e| failed("SET", e))?;
                for actor in self.actors.iter_mut().flatten() {
                    apply_settings(&mut actor.0, covered).map_err(|e| failed("SET", e))?;
                }
                Ok("setting")
            }
            Action::LockRow(item) => {
                let lock = format!(
                    "SELECT 1 FROM {} WHERE id = $1 FOR UPDATE",
                    task_table(item)
                );
                let sql = &format!("BEGIN; {lock}");
                self.other
                    .batch_execute("BEGIN")
                    .map_err(|e| failed(sql, e))?;
                let rows = self
                    .other
                    .query(&lock, &[&task_id(item)])
                    .map_err(|e| failed(sql, e))?;
                if rows.len() != 1 {
                    return Err(mismatch("the other session's row lock", sql, 1, rows.len()));
                }
                Ok("lock")
            }
            Action::AcquireElsewhere(item) => {
                let sql = "BEGIN; SELECT outcome FROM orch_lease.transition_lease_acquire($1, 'other', 1, $2, $3, $4::text::regclass)";
                apply_settings(&mut self.other, true).map_err(|e| failed(sql, e))?;
                self.other
                    .batch_execute("BEGIN")
                    .map_err(|e| failed(sql, e))?;
                let boot = format!("{}-other", self.prefix);
                let outcome: String = self
                    .other
                    .query_one(
                        "SELECT outcome FROM orch_lease.transition_lease_acquire($1, 'other', 1, $2, $3, $4::text::regclass)",
                        &[&spelling_text(item, 0), &boot, &SCOPE, &task_table(item)],
                    )
                    .map_err(|e| failed(sql, e))?
                    .get(0);
                if outcome != "acquired" {
                    return Err(mismatch(
                        "the other session's acquire",
                        sql,
                        "acquired",
                        outcome,
                    ));
                }
                Ok("acquire elsewhere")
            }
            Action::EndOther => {
                self.other
                    .batch_execute("ROLLBACK")
                    .map_err(|e| failed("ROLLBACK", e))?;
                Ok("end other")
            }
            Action::DeleteRow(item) => {
                let sql = &format!("DELETE FROM {} WHERE id = $1", task_table(item));
                self.operator
                    .execute(sql, &[&task_id(item)])
                    .map_err(|e| failed(sql, e))?;
                Ok("delete row")
            }
            Action::InsertRow(item) => {
                let sql = &format!("INSERT INTO {} VALUES ($1, 'queued')", task_table(item));
                self.operator
                    .execute(sql, &[&task_id(item)])
                    .map_err(|e| failed(sql, e))?;
                Ok("insert row")
            }
        }
    }

    fn real_token(&self, token: Option<u32>) -> Option<i64> {
        token.map(|t| self.tokens[&t])
    }
}

fn owner_name(holder: Holder) -> String {
    format!("actor-{}", holder.actor)
}

fn connect(dsn: &str) -> Result<Client, postgres::Error> {
    let mut client = Client::connect(dsn, NoTls)?;
    // A step that blocks is a finding, not a hang.
    client.batch_execute(
        "SET statement_timeout = '20s'; SET lock_timeout = '10s'; LOAD 'orch_lease'",
    )?;
    Ok(client)
}

/// The scope list, as the model has it, in one session (the kill-switch is the database's: `set_enabled`).
fn apply_settings(client: &mut Client, covered: bool) -> Result<(), postgres::Error> {
    client.batch_execute(&format!(
        "SET orch_lease.scopes = '{}'",
        if covered { "" } else { "elsewhere" }
    ))
}
