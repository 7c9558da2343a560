//! The detectors no full run shows firing, each fed an input made to trip it (issue #30): the soak's
//! duplicate attribution (a kill explains an extra run only if it came before that run).
use orch_lease_harness::soak;

/// One incarnation's effect log: `S`/`E` around the effect of `task-1` queued → built at `start`..`end`,
/// then the commit's answer `D` unless `answered` is false (it was killed before hearing it).
fn effect_log(token: i64, start: u128, end: u128, answered: bool) -> String {
    let mut log =
        format!("S task-1 queued built {token} {start}\nE task-1 queued built {token} {end}\n");
    if answered {
        log.push_str(&format!("D task-1 built applied {token} {}\n", end + 1));
    }
    log
}

#[test]
fn a_soak_duplicate_is_tied_only_to_a_kill_that_came_before_it() {
    let killed = effect_log(1, 100, 200, false);
    let rerun = effect_log(2, 400, 500, true);
    // The killed incarnation died at 300, before the rerun started at 400: explained.
    assert_eq!(
        soak::duplicates_in(&[(&killed, Some(300)), (&rerun, None)]),
        (1, 0)
    );
    // The same logs, the kill at 450: the rerun had started at 400, so the kill is not why it ran.
    assert_eq!(
        soak::duplicates_in(&[(&killed, Some(450)), (&rerun, None)]),
        (0, 1)
    );
    // One kill, two extra runs after it: it explains one of them, not both.
    let again = effect_log(3, 600, 700, true);
    assert_eq!(
        soak::duplicates_in(&[(&killed, Some(300)), (&rerun, None), (&again, None)]),
        (1, 1)
    );
    // No kill at all: the extra run is a violation.
    let answered = effect_log(1, 100, 200, true);
    assert_eq!(
        soak::duplicates_in(&[(&answered, None), (&rerun, None)]),
        (0, 1)
    );
}
