//! What must hold (always), what must be reachable (sometimes) and what must come (eventually), and the
//! stateright model that checks them.
//!
//! Properties of a single step (a commit, a recover, a takeover) are checked in the state before it:
//! for every step enabled there. One analysis per state (`analyse`) runs every enabled step once and is
//! cached, so the step properties and the reachability properties share it.
use crate::contract::{
    spelling_of, Action, Cas, Config, Grant, Outcome, Rules, Step, TakeoverKind,
};
use crate::state::{Orders, Other, Stage, State, MAX};
use stateright::{Model, Property};
use std::cell::RefCell;

/// Properties of one step. Each must hold for every step from every reachable state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepRule {
    /// While the switch is on, a commit whose lease was taken (token no longer held) writes nothing.
    TakenLeaseNeverCommits,
    /// Every grant's token is larger than every token granted before.
    TokensIncrease,
    /// After recover returns, no lease of a superseded boot of that instance remains.
    RecoverLeavesNoSupersededLease,
    /// Every lease taken from its holder (not ended by the holder's own release or commit) is exactly
    /// one takeover event, and every takeover event is such a lease.
    OneEventPerTakeover,
    /// `retry` and `not_held` change neither the stage nor any lease.
    RetryChangesNothing,
    /// A commit that cannot take its task row (locked) changes neither the stage nor any lease.
    BlockedCasChangesNothing,
    /// `stage_mismatch` only when the stage is not the expected one.
    StageMismatchIsTrue,
    /// While the switch is on the stage moves only along the stage graph, and only by `applied`.
    StageMovesAlongGraph,
}

impl StepRule {
    pub const ALL: [StepRule; 8] = [
        StepRule::TakenLeaseNeverCommits,
        StepRule::TokensIncrease,
        StepRule::RecoverLeavesNoSupersededLease,
        StepRule::OneEventPerTakeover,
        StepRule::RetryChangesNothing,
        StepRule::BlockedCasChangesNothing,
        StepRule::StageMismatchIsTrue,
        StepRule::StageMovesAlongGraph,
    ];

    pub fn name(self) -> &'static str {
        match self {
            StepRule::TakenLeaseNeverCommits => {
                "a commit of a holder whose lease was taken answers lease_lost and writes nothing"
            }
            StepRule::TokensIncrease => "tokens strictly increase per work item",
            StepRule::RecoverLeavesNoSupersededLease => {
                "after recover, no lease of a superseded boot of that instance remains"
            }
            StepRule::OneEventPerTakeover => "every takeover records exactly one event",
            StepRule::RetryChangesNothing => "retry and not_held change neither stage nor lease",
            StepRule::BlockedCasChangesNothing => {
                "a CAS that cannot run (its row locked) changes neither stage nor lease"
            }
            StepRule::StageMismatchIsTrue => "stage_mismatch only when the stage differs",
            StepRule::StageMovesAlongGraph => {
                "with the switch on the stage moves only along the graph"
            }
        }
    }

    fn bit(self) -> u32 {
        1 << self as u32
    }

    /// Whether `step` (the result of `action` in `pre`) keeps this rule.
    pub fn holds(self, config: &Config, pre: &State, action: &Action, step: &Step) -> bool {
        let post = &step.next;
        // The committing actor and its attempt, for the rules about a commit.
        let commit = match action {
            Action::Commit(a) => pre.actors[*a as usize].attempt().map(|at| (*a, at)),
            _ => None,
        };
        let same_stages_and_leases = || pre.items == post.items;
        match self {
            StepRule::TakenLeaseNeverCommits => match commit {
                Some((a, attempt)) if pre.enabled && attempt.token.is_some() => {
                    let item = attempt.item as usize;
                    let lease = pre.items[item].leases[config.slot(spelling_of(a))];
                    let taken = lease.map(|l| l.token) != attempt.token;
                    // A lease taken away is a lost race, never a mistake (0.5.0): lease_lost.
                    (step.outcome == Outcome::Cas(Cas::LeaseLost)) == taken
                        && (!taken || pre.items[item].stage == post.items[item].stage)
                }
                _ => true,
            },
            StepRule::TokensIncrease => match step.outcome {
                Outcome::Grant(grant, _) => grant
                    .token()
                    .is_none_or(|token| pre.tokens().all(|earlier| earlier < token)),
                _ => true,
            },
            StepRule::RecoverLeavesNoSupersededLease => match action {
                Action::Recover(a) => post.leases().all(|(_, _, lease)| {
                    let h = lease.holder;
                    h.actor != *a || h.session || !post.actors[*a as usize].is_superseded(h.boot)
                }),
                _ => true,
            },
            StepRule::OneEventPerTakeover => {
                let mut taken: Vec<(u8, u8, u32)> = pre
                    .leases()
                    .filter(|&(item, slot, lease)| {
                        post.items[item as usize].leases[slot as usize].map(|l| l.token)
                            != Some(lease.token)
                    })
                    .map(|(item, slot, lease)| (item, slot, lease.token))
                    .collect();
                // The holder's own release or commit ends its lease without a takeover.
                if let Action::Release(a) | Action::Commit(a) = action {
                    if let Some(at) = pre.actors[*a as usize].attempt() {
                        let own = (at.item, config.slot(spelling_of(*a)) as u8, at.token);
                        taken.retain(|&(item, slot, token)| (item, slot, Some(token)) != own);
                    }
                }
                let mut events: Vec<(u8, u8, u32)> = step
                    .takeovers
                    .iter()
                    .map(|t| (t.item, t.slot, t.token))
                    .collect();
                taken.sort_unstable();
                events.sort_unstable();
                taken == events
            }
            StepRule::RetryChangesNothing => {
                !matches!(step.outcome, Outcome::Cas(Cas::Retry | Cas::NotHeld))
                    || same_stages_and_leases()
            }
            StepRule::BlockedCasChangesNothing => match commit {
                Some((a, _)) if cas_is_blocked(config, pre, a) => same_stages_and_leases(),
                _ => true,
            },
            StepRule::StageMismatchIsTrue => match (step.outcome, commit) {
                (Outcome::Cas(Cas::StageMismatch(_)), Some((_, attempt))) => {
                    pre.items[attempt.item as usize].stage != attempt.expected
                }
                _ => true,
            },
            StepRule::StageMovesAlongGraph => {
                !pre.enabled
                    || pre
                        .items
                        .iter()
                        .zip(post.items.iter())
                        .all(|(before, after)| {
                            before.stage == after.stage
                                || (step.outcome == Outcome::Cas(Cas::Applied)
                                    && Stage::is_edge(before.stage, after.stage))
                                || matches!(action, Action::DeleteRow(_) | Action::InsertRow(_))
                        })
            }
        }
    }
}

/// A commit that must write (switch on, lease held or no token, a graph edge, the stage as expected)
/// while another session holds its task row.
fn cas_is_blocked(config: &Config, pre: &State, a: u8) -> bool {
    let Some(attempt) = pre.actors[a as usize].attempt() else {
        return false;
    };
    let slot = config.slot(spelling_of(a));
    let lease = pre.items[attempt.item as usize].leases[slot].map(|l| l.token);
    pre.enabled
        && (attempt.token.is_none() || lease == attempt.token)
        && Stage::is_edge(attempt.expected, attempt.expected.next())
        && pre.items[attempt.item as usize].stage == attempt.expected
        && pre.other == Other::RowLocked(attempt.item)
}

/// The outcomes (and takeover kinds) that must be reachable, so that no property holds vacuously.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    Acquired,
    Held,
    Reclaimed,
    Busy,
    Superseded,
    Disabled,
    OutOfScope,
    Applied,
    Unconditional,
    StageMismatch,
    LeaseLost,
    NotHeld,
    NotFound,
    InvalidTransition,
    Retry,
    Released,
    Recovered,
    ReapedStale,
    ReapedCeiling,
    Forced,
    InstanceInUse,
    /// A lease acquired while the switch was on, committed after it went off (0.5.0).
    CommitAfterOff,
    /// A grant without a lease (the switch off, or out of scope), committed with the switch on (0.5.0).
    LeaselessCommitWhileOn,
    /// An acquire of an id with no task row (0.5.0).
    AcquireNotFound,
}

impl Reach {
    pub const ALL: [Reach; 24] = [
        Reach::Acquired,
        Reach::Held,
        Reach::Reclaimed,
        Reach::Busy,
        Reach::Superseded,
        Reach::Disabled,
        Reach::OutOfScope,
        Reach::Applied,
        Reach::Unconditional,
        Reach::StageMismatch,
        Reach::LeaseLost,
        Reach::NotHeld,
        Reach::NotFound,
        Reach::InvalidTransition,
        Reach::Retry,
        Reach::Released,
        Reach::Recovered,
        Reach::ReapedStale,
        Reach::ReapedCeiling,
        Reach::Forced,
        Reach::InstanceInUse,
        Reach::CommitAfterOff,
        Reach::LeaselessCommitWhileOn,
        Reach::AcquireNotFound,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Reach::Acquired => "reachable: acquired",
            Reach::Held => "reachable: held",
            Reach::Reclaimed => "reachable: reclaimed",
            Reach::Busy => "reachable: busy",
            Reach::Superseded => "reachable: superseded",
            Reach::Disabled => "reachable: disabled",
            Reach::OutOfScope => "reachable: out_of_scope",
            Reach::Applied => "reachable: applied",
            Reach::Unconditional => "reachable: unconditional",
            Reach::StageMismatch => "reachable: stage_mismatch",
            Reach::LeaseLost => "reachable: lease_lost",
            Reach::NotHeld => "reachable: not_held",
            Reach::NotFound => "reachable: not_found",
            Reach::InvalidTransition => "reachable: invalid_transition",
            Reach::Retry => "reachable: retry",
            Reach::Released => "reachable: release true",
            Reach::Recovered => "reachable: recover takes a lease",
            Reach::ReapedStale => "reachable: reaper takes a stale lease",
            Reach::ReapedCeiling => "reachable: reaper takes a lease at the ceiling",
            Reach::Forced => "reachable: force_release true",
            Reach::InstanceInUse => "reachable: recover refused, instance in use",
            Reach::CommitAfterOff => {
                "reachable: a lease acquired before the switch went off, committed after (unconditional)"
            }
            Reach::LeaselessCommitWhileOn => {
                "reachable: a grant without a lease, committed with the switch on (a plain CAS)"
            }
            Reach::AcquireNotFound => "reachable: acquire not_found",
        }
    }

    fn bit(self) -> u32 {
        1 << self as u32
    }

    /// What one step from `pre` reached.
    fn of(pre: &State, action: &Action, step: &Step) -> u32 {
        // The switch flipped mid-transition, both ways: the attempt's grant and the commit on either side.
        let across = match action {
            Action::Commit(a) => pre.actors[*a as usize].attempt().and_then(|attempt| {
                match (attempt.token.is_some(), pre.enabled, step.outcome) {
                    (true, false, Outcome::Cas(Cas::Unconditional)) => Some(Reach::CommitAfterOff),
                    (false, true, Outcome::Cas(Cas::Applied | Cas::StageMismatch(_))) => {
                        Some(Reach::LeaselessCommitWhileOn)
                    }
                    _ => None,
                }
            }),
            _ => None,
        };
        let outcome = match step.outcome {
            Outcome::Grant(grant, _) => match grant {
                Grant::Acquired(_) => Some(Reach::Acquired),
                Grant::Held(_) => Some(Reach::Held),
                Grant::Reclaimed { .. } => Some(Reach::Reclaimed),
                Grant::Busy => Some(Reach::Busy),
                Grant::Superseded => Some(Reach::Superseded),
                Grant::NotFound => Some(Reach::AcquireNotFound),
                Grant::Disabled => Some(Reach::Disabled),
                Grant::OutOfScope => Some(Reach::OutOfScope),
            },
            Outcome::Cas(cas) => Some(match cas {
                Cas::Applied => Reach::Applied,
                Cas::Unconditional => Reach::Unconditional,
                Cas::StageMismatch(_) => Reach::StageMismatch,
                Cas::NotFound => Reach::NotFound,
                Cas::LeaseLost => Reach::LeaseLost,
                Cas::NotHeld => Reach::NotHeld,
                Cas::InvalidTransition => Reach::InvalidTransition,
                Cas::Retry => Reach::Retry,
            }),
            Outcome::Ended(true) if matches!(action, Action::Release(_)) => Some(Reach::Released),
            Outcome::InstanceInUse => Some(Reach::InstanceInUse),
            _ => None,
        };
        let taken = step.takeovers.iter().map(|t| match t.kind {
            TakeoverKind::Reclaimed => Reach::Reclaimed,
            TakeoverKind::Recovered => Reach::Recovered,
            TakeoverKind::Stale => Reach::ReapedStale,
            TakeoverKind::Ceiling => Reach::ReapedCeiling,
            TakeoverKind::Forced => Reach::Forced,
        });
        outcome
            .into_iter()
            .chain(across)
            .chain(taken)
            .fold(0, |bits, r| bits | r.bit())
    }
}

/// While the switch is on, at most one actor holds a live grant (its token is the lease's) per task.
pub fn one_holder_per_task(config: &Config, state: &State) -> bool {
    !state.enabled
        || (0..config.items as u8).all(|item| {
            let holders = state.actors.iter().enumerate().filter(|(a, actor)| {
                actor.attempt().is_some_and(|attempt| {
                    let slot = config.slot(spelling_of(*a as u8));
                    let lease = state.items[item as usize].leases[slot];
                    attempt.item == item
                        && attempt.token.is_some()
                        && lease.map(|l| l.token) == attempt.token
                })
            });
            holders.count() <= 1
        })
}

/// A lease whose holder is still running belongs to that holder's transition in progress: an
/// attempt that has finished (commit or release returned) left no lease behind.
pub fn finished_attempt_leaves_no_lease(config: &Config, state: &State) -> bool {
    state.leases().all(|(item, slot, lease)| {
        let h = lease.holder;
        let actor = &state.actors[h.actor as usize];
        let running = actor.is_up() && actor.boot == h.boot;
        !running
            || actor.attempt().is_some_and(|attempt| {
                attempt.item == item
                    && attempt.token == Some(lease.token)
                    && config.slot(spelling_of(h.actor)) == slot as usize
            })
    })
}

/// The eventually-property (budgeted runs only): once no actor has anything left to do (attempts
/// spent, crashes recovered from), every task can be acquired again — its lease is gone, or its
/// holder is dead and the next acquire reclaims it.
pub fn released_item_can_be_acquired_again(config: &Config, state: &State) -> bool {
    let actors_done = config.actions(state).iter().all(|action| {
        !matches!(
            action,
            Action::Restart(_)
                | Action::Recover(_)
                | Action::Acquire { .. }
                | Action::Effect(_)
                | Action::Release(_)
                | Action::Commit(_)
                | Action::Crash(_)
        )
    });
    actors_done
        && state
            .leases()
            .all(|(_, _, lease)| state.is_dead(lease.holder))
}

/// What every enabled step of one state showed.
#[derive(Clone, Copy, Default)]
pub struct Analysis {
    /// `Reach` bits.
    pub reached: u32,
    /// `StepRule` bits that some step broke.
    pub broken: u32,
}

/// The checked model: the contract under a configuration.
pub struct OrchLease {
    pub config: Config,
    /// Explore one state per symmetry class (items, and actors where they are interchangeable).
    /// The steps of a discovered path then name the renamed actors and items: counterexamples are
    /// printed from runs without it.
    pub symmetry: Option<Orders>,
}

/// The last state analysed on a thread, what it showed, and the state after each of its steps: the
/// checker evaluates a state's properties one after the other and then asks for its next states.
struct Analysed {
    state: State,
    analysis: Analysis,
    next: Vec<(Action, State)>,
}

thread_local! {
    static LAST: RefCell<Option<Analysed>> = const { RefCell::new(None) };
}

impl OrchLease {
    pub fn new(config: Config) -> OrchLease {
        OrchLease {
            config,
            symmetry: None,
        }
    }

    pub fn with_symmetry(config: Config) -> OrchLease {
        OrchLease {
            config,
            symmetry: Some(Orders::new(MAX)),
        }
    }

    /// Runs every enabled step of `state` once and records what they reached and which rule broke.
    pub fn analyse(&self, state: &State) -> Analysis {
        let seen = LAST.with(|last| {
            let last = last.borrow();
            last.as_ref()
                .filter(|seen| seen.state == *state)
                .map(|seen| seen.analysis)
        });
        if let Some(analysis) = seen {
            return analysis;
        }
        let mut analysis = Analysis::default();
        let mut next = Vec::new();
        for action in self.config.actions(state) {
            let step = self.config.step(state, &action);
            analysis.reached |= Reach::of(state, &action, &step);
            for rule in StepRule::ALL {
                if !rule.holds(&self.config, state, &action, &step) {
                    analysis.broken |= rule.bit();
                }
            }
            next.push((action, step.next));
        }
        LAST.with(|last| {
            *last.borrow_mut() = Some(Analysed {
                state: *state,
                analysis,
                next,
            })
        });
        analysis
    }

    /// The state after `action`, from the analysis when `state` was the last one analysed.
    fn after(&self, state: &State, action: &Action) -> State {
        let analysed = LAST.with(|last| {
            let last = last.borrow();
            let seen = last.as_ref().filter(|seen| seen.state == *state)?;
            seen.next.iter().find(|(a, _)| a == action).map(|(_, s)| *s)
        });
        analysed.unwrap_or_else(|| self.config.step(state, action).next)
    }

    /// The first step from `state` that breaks `rule`, for a counterexample's last line.
    pub fn breaking_step(&self, state: &State, rule: StepRule) -> Option<(Action, Step)> {
        self.config.actions(state).into_iter().find_map(|action| {
            let step = self.config.step(state, &action);
            (!rule.holds(&self.config, state, &action, &step)).then_some((action, step))
        })
    }

    /// The first step from `state` that reaches `reach`.
    pub fn reaching_step(&self, state: &State, reach: Reach) -> Option<(Action, Step)> {
        self.config.actions(state).into_iter().find_map(|action| {
            let step = self.config.step(state, &action);
            (Reach::of(state, &action, &step) & reach.bit() != 0).then_some((action, step))
        })
    }
}

pub const ONE_HOLDER: &str = "while the switch is on, at most one actor holds a grant per task";
pub const NO_ORPHAN: &str = "a finished attempt leaves no lease";
pub const LIVENESS: &str = "eventually: a released item can be acquired again";

/// Step-rule properties by rule, in `StepRule::ALL` order (a property takes a plain `fn`).
const STEP_PROPERTIES: [fn(&OrchLease, &State) -> bool; 8] = [
    |m, s| m.analyse(s).broken & StepRule::ALL[0].bit() == 0,
    |m, s| m.analyse(s).broken & StepRule::ALL[1].bit() == 0,
    |m, s| m.analyse(s).broken & StepRule::ALL[2].bit() == 0,
    |m, s| m.analyse(s).broken & StepRule::ALL[3].bit() == 0,
    |m, s| m.analyse(s).broken & StepRule::ALL[4].bit() == 0,
    |m, s| m.analyse(s).broken & StepRule::ALL[5].bit() == 0,
    |m, s| m.analyse(s).broken & StepRule::ALL[6].bit() == 0,
    |m, s| m.analyse(s).broken & StepRule::ALL[7].bit() == 0,
];

/// Reachability properties by outcome, in `Reach::ALL` order.
const REACH_PROPERTIES: [fn(&OrchLease, &State) -> bool; 22] = [
    |m, s| m.analyse(s).reached & Reach::ALL[0].bit() != 0,
    |m, s| m.analyse(s).reached & Reach::ALL[1].bit() != 0,
    |m, s| m.analyse(s).reached & Reach::ALL[2].bit() != 0,
    |m, s| m.analyse(s).reached & Reach::ALL[3].bit() != 0,
    |m, s| m.analyse(s).reached & Reach::ALL[4].bit() != 0,
    |m, s| m.analyse(s).reached & Reach::ALL[5].bit() != 0,
    |m, s| m.analyse(s).reached & Reach::ALL[6].bit() != 0,
    |m, s| m.analyse(s).reached & Reach::ALL[7].bit() != 0,
    |m, s| m.analyse(s).reached & Reach::ALL[8].bit() != 0,
    |m, s| m.analyse(s).reached & Reach::ALL[9].bit() != 0,
    |m, s| m.analyse(s).reached & Reach::ALL[10].bit() != 0,
    |m, s| m.analyse(s).reached & Reach::ALL[11].bit() != 0,
    |m, s| m.analyse(s).reached & Reach::ALL[12].bit() != 0,
    |m, s| m.analyse(s).reached & Reach::ALL[13].bit() != 0,
    |m, s| m.analyse(s).reached & Reach::ALL[14].bit() != 0,
    |m, s| m.analyse(s).reached & Reach::ALL[15].bit() != 0,
    |m, s| m.analyse(s).reached & Reach::ALL[16].bit() != 0,
    |m, s| m.analyse(s).reached & Reach::ALL[17].bit() != 0,
    |m, s| m.analyse(s).reached & Reach::ALL[18].bit() != 0,
    // InstanceInUse (19) is not asserted here (the zip above always left it out); the switch flipped
    // mid-transition, both ways, is.
    |m, s| m.analyse(s).reached & Reach::ALL[20].bit() != 0,
    |m, s| m.analyse(s).reached & Reach::ALL[21].bit() != 0,
    |m, s| m.analyse(s).reached & Reach::ALL[22].bit() != 0,
];

impl Model for OrchLease {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let mut init = self.config.init();
        init.normalize(|actor| self.config.slot(spelling_of(actor)));
        vec![init]
    }

    fn actions(&self, state: &State, actions: &mut Vec<Action>) {
        self.config.actions_into(state, actions);
    }

    fn next_state(&self, state: &State, action: Action) -> Option<State> {
        let mut next = self.after(state, &action);
        next.normalize(|actor| self.config.slot(spelling_of(actor)));
        Some(match &self.symmetry {
            Some(orders) => next.representative(orders, self.config.rules != Rules::RawTextKeys),
            None => next,
        })
    }

    fn properties(&self) -> Vec<Property<Self>> {
        let mut properties = vec![
            Property::always(ONE_HOLDER, |m: &OrchLease, s: &State| {
                one_holder_per_task(&m.config, s)
            }),
            Property::always(NO_ORPHAN, |m: &OrchLease, s: &State| {
                finished_attempt_leaves_no_lease(&m.config, s)
            }),
        ];
        for (rule, holds) in StepRule::ALL.into_iter().zip(STEP_PROPERTIES) {
            properties.push(Property::always(rule.name(), holds));
        }
        if self.config.budget.is_some() {
            properties.push(Property::eventually(
                LIVENESS,
                |m: &OrchLease, s: &State| released_item_can_be_acquired_again(&m.config, s),
            ));
        } else {
            // In REACH_PROPERTIES' order: every outcome but InstanceInUse (a twin's recover).
            let asserted = Reach::ALL
                .into_iter()
                .filter(|r| *r != Reach::InstanceInUse);
            for (reach, reached) in asserted.zip(REACH_PROPERTIES) {
                properties.push(Property::sometimes(reach.name(), reached));
            }
        }
        properties
    }
}
