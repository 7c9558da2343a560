//! The security regression tests: one per hole found in 0.3.0, by the red team in the first 0.4.0 build
//! and in issues #12 and #29, over real connections and real roles. Each test asserts the current
//! contract; it collects every violation it sees before failing, so that a red run says all that is
//! wrong, not only the first thing.
//!
//! One module per subject: [`rights`] (privileges: the owner switch, tokens, boot ids, schemas),
//! [`keys`] (keys, id types and settings), [`stages`] (the stage graph and the CAS), [`transactions`]
//! (snapshots, isolation levels, locks and waits) and [`history`] (announcements, the history,
//! dump/restore). Each test's comment starts with the finding it guards, which says where it was red:
//! `0.3.0's hole N` on 0.3.0's own build (scripts/security-0.3.0-test.sh measures it on every run),
//! `F<n>` on the first 0.4.0 build (the red team's findings, docs/security.md), `#12` on 0.3.0 (issue
//! #12's second list, found by reading 0.3.0), `#29.<n>` on 0.4.0 (the commit that adds it says how).
#[path = "../common/mod.rs"]
mod common;
mod history;
mod keys;
mod rights;
mod stages;
mod transactions;

use common::*;
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, Error, IsolationLevel, Row};
use std::fmt::Debug;
use std::time::{Duration, Instant};

/// The contract violations one test found.
#[derive(Default)]
struct Verdict(Vec<String>);

impl Verdict {
    fn check(&mut self, ok: bool, what: impl std::fmt::Display) {
        if !ok {
            self.0.push(what.to_string());
        }
    }

    fn eq<T: PartialEq + Debug>(&mut self, what: &str, actual: T, expected: T) {
        if actual != expected {
            self.0
                .push(format!("{what}: expected {expected:?}, got {actual:?}"));
        }
    }

    /// A call that must succeed: its value, or None with the error recorded.
    fn ok<T>(&mut self, what: &str, result: Result<T, Error>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                let error = self.describe(&error);
                self.0
                    .push(format!("{what}: expected success, got {error}"));
                None
            }
        }
    }

    /// A call whose first column must be `expected` (as text).
    fn answers(&mut self, what: &str, result: Result<String, Error>, expected: &str) {
        if let Some(actual) = self.ok(what, result) {
            self.eq(what, actual.as_str(), expected);
        }
    }

    /// A call that must fail with SQLSTATE `code`.
    fn sqlstate<T: Debug>(&mut self, what: &str, result: Result<T, Error>, code: &str) {
        match result {
            Ok(value) => self.0.push(format!(
                "{what}: expected SQLSTATE {code}, got success: {value:?}"
            )),
            Err(error) => {
                let described = self.describe(&error);
                if error.code().map(|state| state.code()) != Some(code) {
                    self.0
                        .push(format!("{what}: expected SQLSTATE {code}, got {described}"));
                }
            }
        }
    }

    /// Text that reaches users (an error, a tool's stderr) must not expose Rust internals.
    fn no_internals(&mut self, text: &str) {
        if text.contains("backtrace") || text.contains(".rs:") {
            let start: String = text.trim().chars().take(160).collect();
            self.0.push(format!(
                "a message exposes Rust internals ({} bytes): {start:?}…",
                text.len()
            ));
        }
    }

    /// An error as `SQLSTATE: message (detail)`; its every text field is checked by `no_internals`.
    fn describe(&mut self, error: &Error) -> String {
        let Some(db) = error.as_db_error() else {
            return error.to_string();
        };
        for text in [Some(db.message()), db.detail(), db.hint(), db.where_()]
            .into_iter()
            .flatten()
        {
            self.no_internals(text);
        }
        let mut described = format!("{}: {}", db.code().code(), db.message());
        if let Some(detail) = db.detail() {
            let detail: String = detail.trim().chars().take(160).collect();
            described.push_str(&format!(" (detail: {detail})"));
        }
        described
    }

    fn finish(self) {
        assert!(
            self.0.is_empty(),
            "{} contract violation(s):\n  - {}",
            self.0.len(),
            self.0.join("\n  - ")
        );
    }
}

/// The token of the lease on `item`, read by the superuser; None when there is no lease.
fn lease_token(superuser: &mut Client, item: &str) -> Option<i64> {
    superuser
        .query_opt(
            "SELECT token FROM orch_lease.transition_lease WHERE work_item = $1",
            &[&item],
        )
        .unwrap()
        .map(|row| row.get(0))
}

/// A fresh database with the `tasks` table, and a session of each of two actor roles (login roles, members
/// of orch_lease_actor): (its DSN, `first`'s session, `second`'s).
fn two_actors(database: &str, first: &str, second: &str) -> (String, Client, Client) {
    let dsn = fresh_database_with(database, TEXT_TASKS);
    login_role(first, &["orch_lease_actor"]);
    login_role(second, &["orch_lease_actor"]);
    let a = connect_timed(&dsn_as(&dsn, first));
    let b = connect_timed(&dsn_as(&dsn, second));
    (dsn, a, b)
}

fn first_texts(rows: &[Row]) -> Vec<String> {
    rows.iter().map(|row| row.get(0)).collect()
}
