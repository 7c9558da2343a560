//! orch-race: orch_lease driven by real processes over real connections.
//!
//! - [`race`]: the incident — five actor processes race to advance the same tasks, with a bare UPDATE
//!   or with the lease and the CAS — and the report of what it left behind;
//! - [`demo`]: `make demo`, the incident with the kill-switch off and on, then a crash and its recovery;
//! - [`soak`]: actor processes under injected faults, checked against every invariant;
//! - [`failover`]: actors across a primary's hard stop and its standby's promotion;
//! - [`kit`]: what they share (connecting again, the task table, the random generator, the clock,
//!   starting actor processes, the scripts' shell commands).
pub mod demo;
pub mod failover;
pub mod kit;
pub mod race;
pub mod soak;

pub use kit::{connect, Mode};
pub use race::{prepare, race, report, Report};
