//! The mandatory regression of the incident class: five actor processes race to advance the same
//! tasks. With a bare UPDATE the harness must see duplicated effects and contradictory histories
//! (this is the red run, which also proves the harness can fail); with acquire + commit_stage_cas,
//! every transition's effect runs exactly once.
mod common;
use orch_lease_harness::{prepare, race, report, Mode};

// Both modes share the demo tables, so they run one after the other in one test.
#[test]
fn the_lease_and_cas_close_the_duplicate_effect_race() {
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_orch-race"));
    let mut db = common::connect();

    prepare(&mut db, 20);
    race(exe, &common::dsn(), Mode::Naive, 20, 20);
    let naive = report(&mut db);
    assert!(
        naive.duplicated_items > 0,
        "the bare UPDATE path must show duplicates: {naive:?}"
    );
    assert!(
        naive.contradictory_items > 0,
        "and contradictory histories: {naive:?}"
    );
    assert!(!naive.exactly_once());

    prepare(&mut db, 20);
    race(exe, &common::dsn(), Mode::Lease, 20, 20);
    let leased = report(&mut db);
    // Two tables, the same 20 ids in each (#27): one effect per (table, id).
    assert_eq!(leased.effects, 40, "{leased:?}");
    for (table, tasks, effects) in &leased.per_table {
        assert_eq!((*tasks, *effects), (20, 20), "{table}: {leased:?}");
    }
    assert_eq!(leased.duplicated_items, 0, "{leased:?}");
    assert_eq!(leased.overlapping_effects, 0, "{leased:?}");
    assert_eq!(leased.contradictory_items, 0, "{leased:?}");
    assert_eq!(leased.moved_once, 40, "{leased:?}");
    let leases: i64 = db
        .query_one("SELECT count(*) FROM orch_lease.transition_lease", &[])
        .unwrap()
        .get(0);
    assert_eq!(leases, 0, "every lease was released by its commit");
}
