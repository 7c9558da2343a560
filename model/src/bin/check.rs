//! `cargo run --release --bin check -- --actors A --items I --crashes C [--rules R] [--budget N,E]
//! [--threads T]`
//!
//! Explores every reachable state of the model of that size and prints the states explored, the
//! maximum depth and the time, then each property's verdict. Exits non-zero when a property fails
//! or an outcome is never reached.
use orch_lease_model::check;
use orch_lease_model::contract::{Budget, Config, Rules};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| orch_lease_model::option(&args, name);
    let number = |name: &str, default: u8| {
        value(name).map_or(default, |v| v.parse().expect("a small number"))
    };
    let rules = value("--rules").map_or(Rules::Contract, |name| {
        Rules::from_name(name).unwrap_or_else(|| {
            let known: Vec<_> = Rules::ALL.iter().map(|r| r.name()).collect();
            panic!("--rules: one of {known:?}")
        })
    });
    let mut config = Config::new(
        number("--actors", 2) as usize,
        number("--items", 2) as usize,
        number("--crashes", 2),
        rules,
    );
    if let Some(budget) = value("--budget") {
        let (attempts, environment) = budget.split_once(',').expect("--budget ATTEMPTS,ENV");
        config = config.with_budget(Budget {
            attempts: attempts.parse().expect("attempts"),
            environment: environment.parse().expect("environment steps"),
        });
    }

    // One thread by default: stateright's parallel search is slower on this model (docs/model.md).
    let threads = value("--threads").map_or(1, |n| n.parse().expect("--threads N"));
    let until = match rules {
        Rules::Contract => check::Until::Exhausted,
        _ => check::Until::AnyFailure,
    };
    let run = check::run(config, until, threads);
    println!("{}", run.figures());
    for name in &run.failures {
        println!("FAILED  {name}");
        if let Some(text) = run.counterexample(name) {
            print!("{text}");
        }
    }
    for name in &run.unreached {
        println!("UNREACHED  {name}");
    }
    let verdict = run.failures.is_empty() && run.unreached.is_empty();
    println!(
        "{}: {} properties checked, {} failed, {} outcomes unreached",
        if verdict { "ok" } else { "FAILED" },
        run.properties,
        run.failures.len(),
        run.unreached.len()
    );
    if verdict {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
