//! An exhaustive model of orch_lease, machine-checked with stateright and replayed against a real
//! server (docs/model.md).
//!
//! - `state`: what the model remembers, small and hashable;
//! - `contract`: the 0.4.0 SQL contract as a state machine, and the 0.3.0 rules it replaced;
//! - `properties`: what must always, sometimes and eventually hold, and the stateright model;
//! - `trace`: counterexamples and walks in words;
//! - `check`: one exhaustive run with its figures;
//! - `conform`: random walks of the model replayed against a real server.
pub mod check;

/// The value after `--name` among the command-line `args` (both binaries take `--name value` pairs).
pub fn option<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|arg| arg == name)
        .and_then(|at| args.get(at + 1))
        .map(String::as_str)
}

pub mod conform;
pub mod contract;
pub mod properties;
pub mod state;
pub mod trace;
