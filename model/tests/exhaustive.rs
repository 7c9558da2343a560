//! The model checked exhaustively (`cargo test --release`): the 0.4.0 contract keeps every property
//! and reaches every outcome; each 0.3.0 rule it replaced breaks one, and the checker says which.
use orch_lease_model::check::{self, Until};
use orch_lease_model::contract::{Budget, Config, Rules};
use orch_lease_model::properties::{StepRule, LIVENESS, NO_ORPHAN, ONE_HOLDER};

/// One checker thread: stateright's parallel breadth-first search is slower than one thread on this
/// model (docs/model.md, "Figures").
const THREADS: usize = 1;

/// Every state of `config`: no property fails and every outcome is reached.
fn exhaust(config: Config) {
    let run = check::run(config, Until::Exhausted, THREADS);
    println!("{}", run.figures());
    for name in &run.failures {
        println!("{}", run.counterexample(name).unwrap_or_default());
    }
    assert!(run.failures.is_empty(), "failed: {:?}", run.failures);
    assert!(
        run.unreached.is_empty(),
        "never reached: {:?}",
        run.unreached
    );
}

/// The 0.3.0 rule `rules` must break `property`: the checker finds it and prints the trace.
fn caught(rules: Rules, config: Config, property: &'static str) {
    let config = Config { rules, ..config };
    let run = check::run(config, Until::Failure(property), THREADS);
    println!("{}", run.figures());
    let trace = run.counterexample(property);
    assert!(
        trace.is_some(),
        "{}: no counterexample to \"{property}\"",
        rules.name()
    );
    println!("{}", trace.unwrap());
}

#[test]
fn contract_2_actors_2_items_2_crashes() {
    exhaust(Config::new(2, 2, 2, Rules::Contract));
}

/// The largest size that finishes in under two minutes on two cores (docs/model.md).
#[test]
fn contract_2_actors_3_items_1_crash() {
    exhaust(Config::new(2, 3, 1, Rules::Contract));
}

/// Liveness: with every path made finite by budgets, once the actors are done every task can be
/// acquired again.
#[test]
fn contract_liveness_under_budgets() {
    let budget = Budget {
        attempts: 3,
        environment: 3,
    };
    exhaust(Config::new(2, 2, 1, Rules::Contract).with_budget(budget));
}

#[test]
fn raw_text_keys_give_two_holders_of_one_task() {
    caught(
        Rules::RawTextKeys,
        Config::new(2, 2, 2, Rules::Contract),
        ONE_HOLDER,
    );
}

#[test]
fn lease_dropped_on_lock_timeout_is_caught() {
    let config = Config::new(2, 2, 2, Rules::Contract);
    let rules = Rules::LeaseDroppedOnLockTimeout;
    caught(rules, config, StepRule::BlockedCasChangesNothing.name());
    caught(rules, config, StepRule::StageMismatchIsTrue.name());
}

#[test]
fn lease_kept_when_disabled_is_caught() {
    let config = Config::new(2, 2, 2, Rules::Contract);
    caught(Rules::LeaseKeptWhenDisabled, config, NO_ORPHAN);
    // And as liveness: the item stays held by a holder that has finished.
    let budget = Budget {
        attempts: 2,
        environment: 2,
    };
    caught(
        Rules::LeaseKeptWhenDisabled,
        Config::new(2, 1, 0, Rules::Contract).with_budget(budget),
        LIVENESS,
    );
}
