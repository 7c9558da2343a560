//! Random walks of the model on the server, replays, and the search for a shorter failing walk.
use super::{Mismatch, Server};
use crate::contract::{Action, Config};
use crate::trace;

/// A small, seeded generator (SplitMix64): the same seed, the same walk.
pub struct Random(u64);

impl Random {
    pub fn new(seed: u64) -> Random {
        Random(seed)
    }

    pub fn draw(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// One of `choices`, each as likely as its weight.
    pub fn pick<T: Copy>(&mut self, choices: &[(T, u64)]) -> T {
        let total: u64 = choices.iter().map(|(_, w)| w).sum();
        let mut at = self.draw() % total;
        for &(choice, weight) in choices {
            if at < weight {
                return choice;
            }
            at -= weight;
        }
        unreachable!("a weight covers every draw")
    }
}

/// How likely a step is in a walk: the actors' own program most, crashes and the environment
/// less, so that walks get deep into transitions instead of flipping settings.
/// A twin's recover is the rarest: the server answers it only after its grace for a crashed session.
pub fn weight(action: &Action) -> u64 {
    match action {
        Action::Recover(_) | Action::Restart(_) | Action::Effect(_) | Action::Commit(_) => 36,
        Action::Acquire { .. } => 18,
        Action::Release(_) | Action::EndOther => 12,
        // Mostly on and covered: a walk spends most of its steps where the lease is at work.
        Action::SetEnabled(true) | Action::SetScopeCovered(true) => 12,
        Action::TwinRecover(_) => 1,
        _ => 3,
    }
}

/// Where a walk or a replay stopped.
pub struct Failure {
    /// The steps of the episode, the failing one last.
    pub actions: Vec<Action>,
    pub mismatch: Mismatch,
}

/// Runs `actions` from the model's initial state on a cleaned server.
pub fn replay(server: &mut Server, actions: &[Action]) -> Result<(), Failure> {
    let config = server.config;
    let fail = |n: usize, mismatch| Failure {
        actions: actions[..=n].to_vec(),
        mismatch,
    };
    server.reset().map_err(|m| fail(0, m))?;
    let mut state = config.init();
    for (n, action) in actions.iter().enumerate() {
        let step = config.step(&state, action);
        server
            .execute(&state, action, &step)
            .map_err(|m| fail(n, m))?;
        state = step.next;
    }
    Ok(())
}

/// A random walk of `steps` steps in episodes of `episode` steps.
pub fn walk(server: &mut Server, seed: u64, steps: u64, episode: u64) -> Result<(), Failure> {
    let config = server.config;
    let mut random = Random::new(seed);
    let mut done = 0;
    while done < steps {
        server.reset().map_err(|m| Failure {
            actions: Vec::new(),
            mismatch: m,
        })?;
        let mut state = config.init();
        let mut actions = Vec::new();
        for _ in 0..episode.min(steps - done) {
            let enabled = config.actions(&state);
            let choices: Vec<(Action, u64)> = enabled.iter().map(|a| (*a, weight(a))).collect();
            let action = random.pick(&choices);
            actions.push(action);
            let step = config.step(&state, &action);
            if let Err(mismatch) = server.execute(&state, &action, &step) {
                return Err(Failure { actions, mismatch });
            }
            state = step.next;
            done += 1;
        }
    }
    Ok(())
}

/// The shortest failing sequence found by replaying shorter ones: the failing step's prefix, then
/// without runs of steps (halves, quarters, … single steps) for as long as a replay still fails the
/// same way (the same comparison) and the sequence is still a walk of the model. At most `budget`
/// replays.
pub fn shrink(server: &mut Server, failure: Failure, budget: usize) -> (Failure, usize) {
    let config = server.config;
    let valid = |actions: &[Action]| {
        let mut state = config.init();
        actions.iter().all(|action| {
            let enabled = config.actions(&state).contains(action);
            if enabled {
                state = config.step(&state, action).next;
            }
            enabled
        })
    };
    let mut best = failure;
    let mut replays = 0;
    // Passes over ever shorter runs, again from the longest while a pass still shortened it.
    let mut shortened = true;
    while shortened && replays < budget {
        shortened = false;
        let mut run = best.actions.len().max(2) / 2;
        while run > 0 && replays < budget {
            let mut at = 0;
            while at + run <= best.actions.len() && replays < budget {
                let mut candidate = best.actions.clone();
                candidate.drain(at..at + run);
                if candidate.is_empty() || !valid(&candidate) {
                    at += 1;
                    continue;
                }
                replays += 1;
                match replay(server, &candidate) {
                    Err(failure) if failure.mismatch.what == best.mismatch.what => {
                        best = failure;
                        shortened = true;
                    }
                    _ => at += 1,
                }
            }
            run /= 2;
        }
    }
    (best, replays)
}

/// A failure in words: the steps with the model's answers, and where the server disagreed.
pub fn report(config: &Config, failure: &Failure) -> String {
    format!(
        "{} steps from the initial state (model answers shown):\n{}  the server disagreed at step {}: {}\n",
        failure.actions.len(),
        trace::render(config, &failure.actions),
        failure.actions.len(),
        failure.mismatch
    )
}
