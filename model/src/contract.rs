//! The orch_lease 0.4.0 SQL contract as a state machine: one `step` per SQL call, outcome for outcome.
//!
//! Every SQL function runs in its own short transaction, so each call is one atomic step. Concurrency
//! that the contract turns into outcomes is modelled by "another session" holding an open transaction:
//! a row lock on a task row (a CAS that must write it cannot run: `retry`) or an acquire in flight
//! (`busy`).
//!
//! Tokens here are model numbers drawn from a counter in grant order; the checker renumbers them
//! after each step (see `State::normalize`) so that the state space stays finite, while the
//! conformance driver keeps them as they are and maps each one to the server's real token.

use crate::state::{Actor, Attempt, Few, Holder, Item, Lease, Other, Pc, Stage, State, MAX};

/// Which rules the model follows: the 0.4.0 contract, or one of the 0.3.0 rules it replaced (the
/// checker must find a counterexample for each of those).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rules {
    /// The 0.4.0 contract (docs/sql-reference.md; docs/model.md has the table of steps).
    Contract,
    /// 0.3.0 (a): work item keys are the raw text, so "7" and "07" are two leases on one task.
    RawTextKeys,
    /// 0.3.0 (b): a CAS that cannot take the task row's lock answers `stage_mismatch`, and
    /// `commit_stage_cas` drops the lease.
    LeaseDroppedOnLockTimeout,
    /// 0.3.0 (c): `commit_stage_cas` with the kill-switch off writes the stage but keeps the lease.
    LeaseKeptWhenDisabled,
}

impl Rules {
    pub const ALL: [Rules; 4] = [
        Rules::Contract,
        Rules::RawTextKeys,
        Rules::LeaseDroppedOnLockTimeout,
        Rules::LeaseKeptWhenDisabled,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Rules::Contract => "contract",
            Rules::RawTextKeys => "raw-text-keys",
            Rules::LeaseDroppedOnLockTimeout => "lease-dropped-on-lock-timeout",
            Rules::LeaseKeptWhenDisabled => "lease-kept-when-disabled",
        }
    }

    pub fn from_name(name: &str) -> Option<Rules> {
        Rules::ALL.into_iter().find(|rules| rules.name() == name)
    }
}

/// Budgets that make every path finite, for the eventually-property (stateright reports a liveness
/// violation only at a state with no successor).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Acquire calls per actor.
    pub attempts: u8,
    /// Environment steps (switch, scope, locks, rows, operator, reaper) in all.
    pub environment: u8,
}

/// The size of the model and the rules it follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    pub actors: usize,
    pub items: usize,
    /// Crashes in all, over every actor.
    pub crashes: u8,
    pub rules: Rules,
    pub budget: Option<Budget>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// A crashed actor starts again with a fresh boot id and a new connection.
    Restart(u8),
    /// `transition_lease_recover(boot, instance)`.
    Recover(u8),
    /// A second process started with the actor's instance name calls `transition_lease_recover` while
    /// the actor's registered incarnation is up (its session connected): refused, nothing changes.
    TwinRecover(u8),
    /// `transition_lease_acquire` (or `_acquire_session`), which answers the task's stage (0.5.0: the
    /// actor no longer reads it first).
    Acquire {
        actor: u8,
        item: u8,
        session: bool,
    },
    /// The irreversible effect (no SQL).
    Effect(u8),
    /// `transition_lease_release(item, token)`: the re-check found the stage moved, or it gave up.
    Release(u8),
    /// `commit_stage_cas(item, token, expected, next)`; an attempt without a token (a disabled or
    /// out-of-scope grant) writes through `update_task_stage_cas(item, expected, next)` (0.5.0).
    Commit(u8),
    /// A programming mistake (0.5.0): a ready actor commits on `item` with a token no lease of it was
    /// ever granted with (read from the wrong field, or its own already ended). `not_held`, nothing
    /// changes: not a lost race.
    CommitStray {
        actor: u8,
        item: u8,
    },
    /// The process dies: its connection drops.
    Crash(u8),
    /// A late acquire from the actor's previous incarnation (a zombie, or a request delayed in flight).
    ZombieAcquire {
        actor: u8,
        item: u8,
    },
    /// `transition_lease_force_release(spelling)` by an operator.
    ForceRelease {
        item: u8,
        spelling: u8,
    },
    /// `transition_lease_reap`: `ceiling` when every lease is older than the ceiling.
    Reap {
        ceiling: bool,
    },
    /// `set_enabled(on, reason)` by an operator in a session of its own: the database's kill-switch, which
    /// every actor's open session sees at its very next call, in the middle of an attempt too (between
    /// acquire and commit). The model offers only the other state, so it always switches: one `switched`
    /// event, announced.
    SetEnabled(bool),
    /// `orch_lease.scopes` changed in every session (a setting: not an incident lever).
    SetScopeCovered(bool),
    LockRow(u8),
    AcquireElsewhere(u8),
    /// The other session's transaction ends (rolled back).
    EndOther,
    DeleteRow(u8),
    InsertRow(u8),
}

/// What an acquire answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    Acquired(u32),
    Held(Holder),
    Reclaimed {
        token: u32,
        from: Holder,
    },
    Busy,
    Superseded,
    /// The task has no row (0.5.0): no lease, no token.
    NotFound,
    Disabled,
    OutOfScope,
}

impl Grant {
    pub fn name(self) -> &'static str {
        match self {
            Grant::Acquired(_) => "acquired",
            Grant::Held(_) => "held",
            Grant::Reclaimed { .. } => "reclaimed",
            Grant::Busy => "busy",
            Grant::Superseded => "superseded",
            Grant::NotFound => "not_found",
            Grant::Disabled => "disabled",
            Grant::OutOfScope => "out_of_scope",
        }
    }

    /// Whether the caller may go ahead (the `acquired` column).
    pub fn acquired(self) -> bool {
        matches!(
            self,
            Grant::Acquired(_) | Grant::Reclaimed { .. } | Grant::Disabled | Grant::OutOfScope
        )
    }

    pub fn token(self) -> Option<u32> {
        match self {
            Grant::Acquired(token) | Grant::Reclaimed { token, .. } => Some(token),
            _ => None,
        }
    }

    /// The stage the answer says (0.5.0): the task's, read after the grant, on every answer that lets
    /// the caller go ahead; none on a refusal, nor when the task has no row.
    pub fn stage(self, task: Stage) -> Option<Stage> {
        (self.acquired() && task != Stage::Missing).then_some(task)
    }
}

/// What a stage CAS answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cas {
    Applied,
    Unconditional,
    /// With the stage actually read (none when the CAS could not read it).
    StageMismatch(Option<Stage>),
    NotFound,
    LeaseLost,
    /// The token is not one this item's lease was taken away with (0.5.0).
    NotHeld,
    InvalidTransition,
    Retry,
}

impl Cas {
    pub fn name(self) -> &'static str {
        match self {
            Cas::Applied => "applied",
            Cas::Unconditional => "unconditional",
            Cas::StageMismatch(_) => "stage_mismatch",
            Cas::NotFound => "not_found",
            Cas::LeaseLost => "lease_lost",
            Cas::NotHeld => "not_held",
            Cas::InvalidTransition => "invalid_transition",
            Cas::Retry => "retry",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// An acquire's answer and the stage it said.
    Grant(Grant, Option<Stage>),
    Cas(Cas),
    /// `transition_lease_release` / `_force_release` answered this boolean.
    Ended(bool),
    /// A call that returns the leases it took (recover, reap): listed in `Step::takeovers`.
    Took,
    /// A step with no SQL outcome (effect, crash, restart, settings, the other session).
    Done,
    /// Recover refused (55006): the instance's live boot is registered by a session still connected.
    InstanceInUse,
    /// `set_enabled` switched (answered true): one `switched` event, announced (0.5.0).
    Switched,
}

/// How a lease was taken away from its holder; each is one history event (and a NOTIFY).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TakeoverKind {
    /// An acquire took a dead holder's lease: event `reclaimed`, outcome `reclaimed`.
    Reclaimed,
    /// Recover ended a superseded boot's lease: `reclaimed` / `recovered`.
    Recovered,
    /// The reaper's dead-holder tier: `reclaimed` / `stale`.
    Stale,
    /// The reaper's age ceiling: `reaped` / `ceiling`.
    Ceiling,
    /// `transition_lease_force_release`: `forced` / `forced`.
    Forced,
}

impl TakeoverKind {
    /// The history event's (event, outcome).
    pub fn event(self) -> (&'static str, &'static str) {
        match self {
            TakeoverKind::Reclaimed => ("reclaimed", "reclaimed"),
            TakeoverKind::Recovered => ("reclaimed", "recovered"),
            TakeoverKind::Stale => ("reclaimed", "stale"),
            TakeoverKind::Ceiling => ("reaped", "ceiling"),
            TakeoverKind::Forced => ("forced", "forced"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Takeover {
    pub item: u8,
    pub slot: u8,
    pub token: u32,
    pub kind: TakeoverKind,
}

/// One step: what the call answered, the state after it, and the leases it took from their holders.
#[derive(Clone, Debug)]
pub struct Step {
    pub outcome: Outcome,
    pub next: State,
    pub takeovers: Vec<Takeover>,
}

/// The spelling of an item id an actor uses: webhooks spell ids one way ("07"), monitors another
/// ("7"). The other session and spelling-less callers use spelling 0.
pub fn spelling_of(actor: u8) -> u8 {
    actor % 2
}

impl Config {
    pub fn new(actors: usize, items: usize, crashes: u8, rules: Rules) -> Config {
        // Boot numbers go up to 1 + crashes, and the registry is a bit set in a u8.
        assert!((1..=MAX).contains(&actors) && (1..=MAX).contains(&items) && crashes <= 6);
        Config {
            actors,
            items,
            crashes,
            rules,
            budget: None,
        }
    }

    pub fn with_budget(self, budget: Budget) -> Config {
        Config {
            budget: Some(budget),
            ..self
        }
    }

    /// The lease slot of a spelling: one canonical key, or one key per raw spelling.
    pub fn slot(&self, spelling: u8) -> usize {
        match self.rules {
            Rules::RawTextKeys => spelling as usize,
            _ => 0,
        }
    }

    pub fn init(&self) -> State {
        let budget = self.budget.unwrap_or(Budget {
            attempts: 0,
            environment: 0,
        });
        let actor = Actor {
            boot: 1,
            registered: 0,
            pc: Pc::Booted,
            attempts_left: budget.attempts,
        };
        let item = Item {
            stage: Stage::Queued,
            leases: [None, None],
        };
        State {
            actors: Few::filled(actor, self.actors),
            items: Few::filled(item, self.items),
            enabled: true,
            scope_covered: true,
            other: Other::Idle,
            crashes: 0,
            environment_left: budget.environment,
            next_token: 1,
        }
    }

    /// Every step enabled in `state`, in a fixed order.
    pub fn actions(&self, state: &State) -> Vec<Action> {
        let mut actions = Vec::new();
        self.actions_into(state, &mut actions);
        actions
    }

    /// `actions`, into a vector the caller reuses.
    pub fn actions_into(&self, state: &State, actions: &mut Vec<Action>) {
        let items = 0..self.items as u8;
        for (index, actor) in state.actors.iter().enumerate() {
            let a = index as u8;
            match actor.pc {
                Pc::Down => actions.push(Action::Restart(a)),
                Pc::Booted => actions.push(Action::Recover(a)),
                Pc::Ready if self.budget.is_none() || actor.attempts_left > 0 => {
                    for item in items.clone() {
                        // An actor picks up a task it can see (one with a row); since 0.5.0 it may
                        // also name one that is gone, or a wrong id, and is answered not_found
                        // (whatever the lease's kind: one kind is enough).
                        let missing = state.items[item as usize].stage == Stage::Missing;
                        let sessions: &[bool] = match (missing, self.rules) {
                            (false, _) => &[false, true],
                            (true, Rules::Contract) => &[false],
                            (true, _) => &[],
                        };
                        {
                            for &session in sessions {
                                actions.push(Action::Acquire {
                                    actor: a,
                                    item,
                                    session,
                                });
                            }
                        }
                    }
                }
                Pc::Ready => {}
                Pc::Holding(_) => {
                    actions.push(Action::Effect(a));
                    actions.push(Action::Release(a));
                }
                Pc::Effected(_) => actions.push(Action::Commit(a)),
            }
            if actor.pc == Pc::Ready && state.enabled {
                for item in items.clone() {
                    actions.push(Action::CommitStray { actor: a, item });
                }
            }
            if actor.is_up() && state.crashes < self.crashes {
                actions.push(Action::Crash(a));
            }
            // A twin changes nothing, so it would keep the bounded liveness runs from ending.
            if actor.is_registered_and_up() && self.budget.is_none() {
                actions.push(Action::TwinRecover(a));
            }
            // A zombie's acquire would leave a lease of a never-registered boot that only the ceiling
            // or an operator ends: left out of the bounded liveness runs.
            if actor.boot > 1 && self.budget.is_none() {
                for item in items.clone() {
                    actions.push(Action::ZombieAcquire { actor: a, item });
                }
            }
        }
        if let Other::RowLocked(_) | Other::Acquiring(_) = state.other {
            actions.push(Action::EndOther);
        }
        if self.budget.is_some() && state.environment_left == 0 {
            return;
        }
        for item in items.clone() {
            for spelling in 0..2 {
                actions.push(Action::ForceRelease { item, spelling });
            }
        }
        actions.push(Action::Reap { ceiling: false });
        actions.push(Action::Reap { ceiling: true });
        actions.push(Action::SetEnabled(!state.enabled));
        actions.push(Action::SetScopeCovered(!state.scope_covered));
        for item in items {
            let stage = state.items[item as usize].stage;
            if state.other == Other::Idle && state.enabled {
                if stage != Stage::Missing {
                    actions.push(Action::LockRow(item));
                }
                let free = state.items[item as usize].leases[self.slot(0)].is_none();
                if state.scope_covered && free && stage != Stage::Missing {
                    actions.push(Action::AcquireElsewhere(item));
                }
            }
            match stage {
                Stage::Missing => actions.push(Action::InsertRow(item)),
                _ if state.other != Other::RowLocked(item) => actions.push(Action::DeleteRow(item)),
                _ => {}
            }
        }
    }

    /// The contract: what `action` answers in `state`, and the state after it.
    pub fn step(&self, state: &State, action: &Action) -> Step {
        let mut next = *state;
        let mut takeovers = Vec::new();
        if self.budget.is_some() && is_environment(action) {
            next.environment_left -= 1;
        }
        let outcome = match *action {
            Action::Restart(a) => {
                let actor = &mut next.actors[a as usize];
                actor.boot += 1;
                actor.pc = Pc::Booted;
                Outcome::Done
            }
            Action::Recover(a) => {
                self.recover(&mut next, a, &mut takeovers);
                Outcome::Took
            }
            Action::TwinRecover(_) => Outcome::InstanceInUse,
            Action::Acquire {
                actor: a,
                item,
                session,
            } => {
                let boot = next.actors[a as usize].boot;
                let grant = self.acquire(&mut next, a, boot, item, session, &mut takeovers);
                let stage = grant.stage(next.items[item as usize].stage);
                let actor = &mut next.actors[a as usize];
                if self.budget.is_some() {
                    actor.attempts_left -= 1;
                }
                // The actor acts on the stage the grant said: with none there is nothing to act on.
                if let Some(expected) = stage {
                    actor.pc = Pc::Holding(Attempt {
                        item,
                        token: grant.token(),
                        expected,
                    });
                }
                Outcome::Grant(grant, stage)
            }
            Action::ZombieAcquire { actor: a, item } => {
                let boot = next.actors[a as usize].boot - 1;
                let grant = self.acquire(&mut next, a, boot, item, false, &mut takeovers);
                Outcome::Grant(grant, grant.stage(next.items[item as usize].stage))
            }
            Action::Effect(a) => {
                let actor = &mut next.actors[a as usize];
                if let Pc::Holding(attempt) = actor.pc {
                    actor.pc = Pc::Effected(attempt);
                }
                Outcome::Done
            }
            Action::Release(a) => {
                let attempt = next.actors[a as usize].attempt().expect("holding");
                next.actors[a as usize].pc = Pc::Ready;
                let slot = self.slot(spelling_of(a));
                let lease = &mut next.items[attempt.item as usize].leases[slot];
                let held = attempt.token.is_some() && lease.map(|l| l.token) == attempt.token;
                if held {
                    *lease = None;
                }
                Outcome::Ended(held)
            }
            Action::Commit(a) => Outcome::Cas(self.commit(&mut next, a)),
            // The lease check comes first and finds no lease taken with that token: nothing changes.
            Action::CommitStray { .. } => Outcome::Cas(Cas::NotHeld),
            Action::Crash(a) => {
                next.actors[a as usize].pc = Pc::Down;
                next.crashes += 1;
                Outcome::Done
            }
            Action::ForceRelease { item, spelling } => {
                let slot = self.slot(spelling);
                let taken = next.items[item as usize].leases[slot].take();
                if let Some(lease) = taken {
                    takeovers.push(takeover(item, slot, lease, TakeoverKind::Forced));
                }
                Outcome::Ended(taken.is_some())
            }
            Action::Reap { ceiling } => {
                for item in 0..self.items as u8 {
                    for slot in 0..2 {
                        let Some(lease) = next.items[item as usize].leases[slot] else {
                            continue;
                        };
                        let kind = if next.is_dead(lease.holder) {
                            TakeoverKind::Stale
                        } else if ceiling {
                            TakeoverKind::Ceiling
                        } else {
                            continue;
                        };
                        next.items[item as usize].leases[slot] = None;
                        takeovers.push(takeover(item, slot, lease, kind));
                    }
                }
                Outcome::Took
            }
            Action::SetEnabled(on) => {
                next.enabled = on;
                Outcome::Switched
            }
            Action::SetScopeCovered(covered) => {
                next.scope_covered = covered;
                Outcome::Done
            }
            Action::LockRow(item) => {
                next.other = Other::RowLocked(item);
                Outcome::Done
            }
            Action::AcquireElsewhere(item) => {
                next.other = Other::Acquiring(item);
                Outcome::Done
            }
            Action::EndOther => {
                next.other = Other::Idle;
                Outcome::Done
            }
            Action::DeleteRow(item) => {
                next.items[item as usize].stage = Stage::Missing;
                Outcome::Done
            }
            Action::InsertRow(item) => {
                next.items[item as usize].stage = Stage::Queued;
                Outcome::Done
            }
        };
        Step {
            outcome,
            next,
            takeovers,
        }
    }

    /// `transition_lease_acquire` (or `_acquire_session`) of `item` by `actor`'s boot `boot`, in the
    /// contract's order of checks.
    fn acquire(
        &self,
        state: &mut State,
        actor: u8,
        boot: u8,
        item: u8,
        session: bool,
        takeovers: &mut Vec<Takeover>,
    ) -> Grant {
        if !state.enabled {
            return Grant::Disabled;
        }
        if !state.scope_covered {
            return Grant::OutOfScope;
        }
        // An id with no task row is no task (0.5.0): checked before anything else is looked at.
        if self.rules == Rules::Contract && state.items[item as usize].stage == Stage::Missing {
            return Grant::NotFound;
        }
        // A session-bound lease names the session, not the boot: its boot is never superseded.
        if !session && state.actors[actor as usize].is_superseded(boot) {
            return Grant::Superseded;
        }
        let slot = self.slot(spelling_of(actor));
        if state.other == Other::Acquiring(item) && slot == self.slot(0) {
            return Grant::Busy;
        }
        let holder = Holder {
            actor,
            boot,
            session,
        };
        match state.items[item as usize].leases[slot] {
            None => {
                let token = state.take_token();
                state.items[item as usize].leases[slot] = Some(Lease { token, holder });
                Grant::Acquired(token)
            }
            Some(lease) if state.is_dead(lease.holder) => {
                takeovers.push(takeover(item, slot, lease, TakeoverKind::Reclaimed));
                let token = state.take_token();
                state.items[item as usize].leases[slot] = Some(Lease { token, holder });
                Grant::Reclaimed {
                    token,
                    from: lease.holder,
                }
            }
            Some(lease) => Grant::Held(lease.holder),
        }
    }

    /// `transition_lease_recover`: registers the actor's boot, supersedes the earlier ones and ends
    /// their leases. Session-bound leases and leases of never-registered boots stay.
    fn recover(&self, state: &mut State, a: u8, takeovers: &mut Vec<Takeover>) {
        let actor = &mut state.actors[a as usize];
        actor.registered |= 1 << actor.boot;
        actor.pc = Pc::Ready;
        let actor = *actor;
        for (item, slots) in state.items.iter_mut().enumerate() {
            for (slot, lease) in slots.leases.iter_mut().enumerate() {
                let Some(held) = *lease else { continue };
                let h = held.holder;
                if h.actor == a && !h.session && actor.is_superseded(h.boot) {
                    *lease = None;
                    takeovers.push(takeover(item as u8, slot, held, TakeoverKind::Recovered));
                }
            }
        }
    }

    /// `commit_stage_cas(item, token, expected, next)`, in the contract's order of checks.
    fn commit(&self, state: &mut State, a: u8) -> Cas {
        let attempt = state.actors[a as usize].attempt().expect("effected");
        let item = attempt.item as usize;
        let slot = self.slot(spelling_of(a));
        let new = attempt.expected.next();
        let holds = attempt.token.is_some()
            && state.items[item].leases[slot].map(|l| l.token) == attempt.token;
        let end_lease = |state: &mut State| {
            if holds {
                state.items[item].leases[slot] = None;
            }
        };
        let cas = if !state.enabled {
            // The old unconditional write; the commit still ends its lease. A row another session holds
            // is contention even then: retry, nothing written, the lease kept.
            match state.items[item].stage {
                Stage::Missing => {
                    if self.rules != Rules::LeaseKeptWhenDisabled {
                        end_lease(state);
                    }
                    Cas::NotFound
                }
                _ if state.other == Other::RowLocked(attempt.item) => Cas::Retry,
                _ => {
                    if self.rules != Rules::LeaseKeptWhenDisabled {
                        end_lease(state);
                    }
                    state.items[item].stage = new;
                    Cas::Unconditional
                }
            }
        } else if attempt.token.is_some() && !holds {
            Cas::LeaseLost
        } else if !Stage::is_edge(attempt.expected, new) {
            end_lease(state);
            Cas::InvalidTransition
        } else {
            match state.items[item].stage {
                Stage::Missing => {
                    end_lease(state);
                    Cas::NotFound
                }
                // The UPDATE's condition fails on the row as it reads it: no row lock is needed, so
                // another session's lock on the row does not stop it.
                stage if stage != attempt.expected => {
                    end_lease(state);
                    Cas::StageMismatch(Some(stage))
                }
                // The write must lock the row: held by another session, the CAS cannot run.
                _ if state.other == Other::RowLocked(attempt.item) => {
                    if self.rules == Rules::LeaseDroppedOnLockTimeout {
                        end_lease(state);
                        Cas::StageMismatch(None)
                    } else {
                        Cas::Retry
                    }
                }
                _ => {
                    end_lease(state);
                    state.items[item].stage = new;
                    Cas::Applied
                }
            }
        };
        // Every answer but `retry` ends the attempt: `retry` is tried again later.
        if cas != Cas::Retry {
            state.actors[a as usize].pc = Pc::Ready;
        }
        cas
    }
}

fn takeover(item: u8, slot: usize, lease: Lease, kind: TakeoverKind) -> Takeover {
    Takeover {
        item,
        slot: slot as u8,
        token: lease.token,
        kind,
    }
}

/// Steps taken by the environment (operator, settings, other sessions), which a budget bounds.
fn is_environment(action: &Action) -> bool {
    matches!(
        action,
        Action::ForceRelease { .. }
            | Action::Reap { .. }
            | Action::SetEnabled(_)
            | Action::SetScopeCovered(_)
            | Action::LockRow(_)
            | Action::AcquireElsewhere(_)
            | Action::DeleteRow(_)
            | Action::InsertRow(_)
    )
}
