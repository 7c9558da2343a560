//! One exhaustive run of the checker, with the figures docs/model.md reports.
use crate::contract::{Action, Config};
use crate::properties::{self, OrchLease, Reach, StepRule};
use crate::trace;
use stateright::{Checker, HasDiscoveries, Model};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What a run found.
pub struct Run {
    pub config: Config,
    pub unique_states: usize,
    pub max_depth: usize,
    pub elapsed: Duration,
    /// Every property that has a discovery, with the steps that lead to it.
    pub discoveries: BTreeMap<&'static str, Vec<Action>>,
    /// Names of the properties whose discovery is a failure (always, eventually).
    pub failures: Vec<&'static str>,
    /// Names of the sometimes-properties that found no example (an outcome never reached).
    pub unreached: Vec<&'static str>,
    /// How many properties were checked.
    pub properties: usize,
}

/// How far a run goes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// Every reachable state, one per symmetry class: for the rules that must hold.
    Exhausted,
    /// The first counterexample to any property (the 0.3.0 rules must have one).
    AnyFailure,
    /// The first counterexample to this property.
    Failure(&'static str),
}

/// Explores the reachable states of `config` breadth first on `threads` threads, so that a
/// counterexample is a shortest one.
pub fn run(config: Config, until: Until, threads: usize) -> Run {
    let started = Instant::now();
    // Symmetry reduction only where nothing should be found: a path found under it names renamed
    // actors and items, which reads badly in a counterexample.
    let model = match until {
        Until::Exhausted => OrchLease::with_symmetry(config),
        _ => OrchLease::new(config),
    };
    let properties = model.properties();
    let builder = model.checker().threads(threads.max(1));
    let builder = match until {
        Until::Exhausted => builder,
        Until::AnyFailure => builder.finish_when(HasDiscoveries::AnyFailures),
        Until::Failure(name) => builder.finish_when(HasDiscoveries::AnyOf([name].into())),
    };
    let checker = builder.spawn_bfs().join();
    if until == Until::Exhausted && !checker.discoveries().is_empty() {
        let failed = properties.iter().find(|p| {
            p.expectation.discovery_is_failure() && checker.discoveries().contains_key(p.name)
        });
        if let Some(failed) = failed {
            // Found under symmetry: find it again without, for a path that reads as it happened.
            let mut again = run(config, Until::Failure(failed.name), threads);
            again.unique_states = checker.unique_state_count();
            again.max_depth = checker.max_depth();
            again.elapsed = started.elapsed();
            return again;
        }
    }
    let found = checker.discoveries();
    let mut run = Run {
        config,
        unique_states: checker.unique_state_count(),
        max_depth: checker.max_depth(),
        elapsed: started.elapsed(),
        discoveries: BTreeMap::new(),
        failures: Vec::new(),
        unreached: Vec::new(),
        properties: properties.len(),
    };
    for property in &properties {
        let found = found.get(property.name);
        let is_failure = property.expectation.discovery_is_failure();
        match (found, is_failure) {
            (Some(_), true) => run.failures.push(property.name),
            (None, false) => run.unreached.push(property.name),
            _ => {}
        }
        if let Some(path) = found {
            let mut actions = path.clone().into_actions();
            if is_failure {
                actions = shortened(&config, property.name, actions);
            }
            run.discoveries.insert(property.name, actions);
        }
    }
    run
}

impl Run {
    /// The figures on one line.
    pub fn figures(&self) -> String {
        format!(
            "{} actors x {} items x {} crashes{}: {} states, max depth {}, {:.1} s",
            self.config.actors,
            self.config.items,
            self.config.crashes,
            match self.config.budget {
                Some(b) => format!(
                    " (budget {} attempts per actor, {} environment steps)",
                    b.attempts, b.environment
                ),
                None => String::new(),
            },
            self.unique_states,
            self.max_depth,
            self.elapsed.as_secs_f64()
        )
    }

    /// The counterexample of a failed property in words, ending with the step that breaks it when
    /// it is a property of a step.
    pub fn counterexample(&self, property: &str) -> Option<String> {
        let actions = self.discoveries.get(property)?;
        let mut text = format!(
            "counterexample to \"{property}\" ({} rules):\n{}",
            self.config.rules.name(),
            trace::render(&self.config, actions)
        );
        let state = replay(&self.config, actions);
        let model = OrchLease::new(self.config);
        if let Some(rule) = StepRule::ALL.into_iter().find(|r| r.name() == property) {
            if let Some((action, step)) = model.breaking_step(&state, rule) {
                text += &format!(
                    "  and this step breaks it: {}\n",
                    trace::describe(&state, &action, &step)
                );
            }
        }
        Some(text)
    }

    /// An example of a reached outcome in words.
    pub fn example(&self, reach: Reach) -> Option<String> {
        let actions = self.discoveries.get(reach.name())?;
        let state = replay(&self.config, actions);
        let (action, step) = OrchLease::new(self.config).reaching_step(&state, reach)?;
        Some(format!(
            "{}  {}\n",
            trace::render(&self.config, actions),
            trace::describe(&state, &action, &step)
        ))
    }
}

/// A shorter counterexample: the checker keeps the last violation of a block of states it found,
/// not the first, so the path is cut at its first violation, then runs of steps that are not needed
/// are dropped (halves, quarters, … single steps) for as long as the rest still breaks `property`.
fn shortened(config: &Config, property: &str, mut actions: Vec<Action>) -> Vec<Action> {
    if !breaks(config, property, &actions) {
        return actions; // an eventually-property, or a rule this cannot judge
    }
    if let Some(first) = (0..=actions.len()).find(|&n| breaks(config, property, &actions[..n])) {
        actions.truncate(first);
    }
    let mut run = actions.len().max(1);
    while run > 0 {
        let mut at = 0;
        while at + run <= actions.len() {
            let mut without = actions.clone();
            without.drain(at..at + run);
            if breaks(config, property, &without) {
                actions = without;
            } else {
                at += 1;
            }
        }
        run /= 2;
    }
    actions
}

/// Whether `actions` can be taken one after the other from the initial state, and the state they
/// reach breaks `property` (or has a step that breaks it).
fn breaks(config: &Config, property: &str, actions: &[Action]) -> bool {
    let mut state = config.init();
    for action in actions {
        if !config.actions(&state).contains(action) {
            return false;
        }
        state = config.step(&state, action).next;
    }
    if property == properties::ONE_HOLDER {
        return !properties::one_holder_per_task(config, &state);
    }
    if property == properties::NO_ORPHAN {
        return !properties::finished_attempt_leaves_no_lease(config, &state);
    }
    StepRule::ALL
        .into_iter()
        .find(|rule| rule.name() == property)
        .is_some_and(|rule| {
            OrchLease::new(*config)
                .breaking_step(&state, rule)
                .is_some()
        })
}

/// The state after `actions` from the initial state (tokens as numbered then, not renumbered).
pub fn replay(config: &Config, actions: &[Action]) -> crate::state::State {
    actions.iter().fold(config.init(), |state, action| {
        config.step(&state, action).next
    })
}
