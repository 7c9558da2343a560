//! `cargo run --release --bin conform -- --dsn DSN --steps N --seed S [--seeds S1,S2,…]
//! [--actors A] [--items I] [--crashes C] [--episode E] [--rules R]`
//!
//! Random walks of the model, each step executed against the server at DSN and compared with the
//! model: every answer, the token order, the leases, the stages, the boot registry and the takeover
//! events. On a mismatch it replays shorter walks to find a shorter one that still fails, prints it
//! and exits non-zero. `--rules` picks a 0.3.0 rule instead of the contract: then it must fail.
use orch_lease_model::conform::{self, Server};
use orch_lease_model::contract::{Config, Rules};
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| orch_lease_model::option(&args, name);
    let number = |name: &str, default: u64| value(name).map_or(default, |v| v.parse().expect(name));
    let Some(dsn) = value("--dsn")
        .map(str::to_string)
        .or_else(|| std::env::var("ORCH_LEASE_DSN").ok())
    else {
        eprintln!("conform: --dsn (or ORCH_LEASE_DSN) is required");
        return ExitCode::from(2);
    };
    let rules = value("--rules").map_or(Rules::Contract, |name| {
        Rules::from_name(name).unwrap_or_else(|| panic!("--rules: unknown rule {name}"))
    });
    let config = Config::new(
        number("--actors", 3) as usize,
        number("--items", 2) as usize,
        number("--crashes", 4) as u8,
        rules,
    );
    let steps = number("--steps", 20_000);
    let episode = number("--episode", 250);
    let seeds: Vec<u64> = match value("--seeds") {
        Some(list) => list
            .split(',')
            .map(|s| s.trim().parse().expect("--seeds"))
            .collect(),
        None => vec![number("--seed", 1)],
    };

    let run = format!("r{}", std::process::id());
    let mut server = match Server::connect(&dsn, config, &run) {
        Ok(server) => server,
        Err(error) => {
            eprintln!("conform: {error}");
            return ExitCode::from(2);
        }
    };
    println!(
        "model: {} actors, {} items, up to {} crashes per episode of {episode} steps, {} rules",
        config.actors,
        config.items,
        config.crashes,
        rules.name()
    );
    for seed in seeds {
        let started = Instant::now();
        if let Err(failure) = conform::walk(&mut server, seed, steps, episode) {
            println!(
                "seed {seed}: MISMATCH after {:.1} s at step {} of an episode",
                started.elapsed().as_secs_f64(),
                failure.actions.len()
            );
            println!("{}", conform::report(&config, &failure));
            // A mismatch must come back, the same, when the same steps run again on a clean server.
            let failure = match conform::replay(&mut server, &failure.actions) {
                Err(again) if again.mismatch.what == failure.mismatch.what => again,
                Err(other) => {
                    println!("NOT REPRODUCED: the same steps failed otherwise on a second run:");
                    println!("{}", conform::report(&config, &other));
                    return ExitCode::FAILURE;
                }
                Ok(()) => {
                    println!(
                        "NOT REPRODUCED: the same steps conform on a second run (a flaky server?)"
                    );
                    return ExitCode::FAILURE;
                }
            };
            let (shortest, replays) = conform::shrink(&mut server, failure, 400);
            println!("shortest failing walk found ({replays} replays):");
            println!("{}", conform::report(&config, &shortest));
            return ExitCode::FAILURE;
        }
        println!(
            "seed {seed}: {steps} steps conform ({:.1} s)",
            started.elapsed().as_secs_f64()
        );
    }
    let seen: Vec<String> = server
        .seen
        .iter()
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
    println!("answers seen: {}", seen.join(", "));
    ExitCode::SUCCESS
}
