//! The checker: the effect logs and the server read once the actors are done, every invariant measured.
use super::supervisor::{Faults, Plan};
use crate::kit::{applied_commits, count, Mode};
use postgres::Client;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

/// The invariants, measured.
#[derive(Debug, Default)]
pub struct Report {
    pub items: usize,
    pub transitions_committed: i64,
    pub effects: usize,
    /// Effects that ran more than once for the same task and transition (each extra run counts).
    pub duplicate_effects: usize,
    /// Of those, the extra runs of a (task, transition) matched by an incarnation killed inside that same
    /// transition's lease region (its effect started, its commit not answered): one kill explains one.
    pub duplicates_tied_to_a_kill: usize,
    /// The extra runs no such kill explains: any is a violation.
    pub duplicates_without_a_kill: usize,
    /// Incarnations killed inside a lease region: effect started, commit not answered.
    pub killed_inside_effect: usize,
    /// Pairs of runs of one task's effects whose intervals overlap: two owners inside at once.
    pub overlapping_effects: usize,
    /// Tasks whose history is not the pipeline path: a skipped, repeated or backwards transition.
    pub bad_histories: i64,
    /// Tasks not at the last stage.
    pub unfinished: i64,
    /// Commits an actor saw acknowledged (task, token, stage) that the history does not hold as
    /// `cas_applied` under that token.
    pub acknowledged_commits: usize,
    pub lost_commits: usize,
    /// Leases still held by a superseded boot after every recover.
    pub stale_leases: i64,
    pub leftover_leases: i64,
    pub kills: usize,
    pub terminations: usize,
    pub server_restarts: usize,
    pub elapsed: Duration,
}

/// One run of an effect: when it started and when it ended (or its process died), in ns.
type Run = (u128, Option<u128>);

/// What the incarnations' effect logs say.
#[derive(Default)]
struct EffectLogs {
    /// Every run of each (task, transition) effect.
    runs: BTreeMap<(String, String), Vec<Run>>,
    /// The (task, token, stage) commits an actor saw applied under a lease.
    committed: Vec<(String, i64, String)>,
    /// Per (task, transition): when each incarnation killed inside its lease region died (ns).
    killed_inside: HashMap<(String, String), Vec<u128>>,
}

impl EffectLogs {
    /// (extra runs explained by a kill inside their transition's region, extra runs not explained).
    /// The first run of a (task, transition) is the original; every later one is an extra run, and a
    /// kill explains it only if the killed incarnation died before that run started (a kill after it
    /// began cannot be why it ran). Each kill explains one extra run at most: taken in order of start,
    /// each extra run is given the earliest kill not given yet that came before it.
    fn duplicates(&self) -> (usize, usize) {
        let (mut tied, mut untied) = (0, 0);
        for (key, runs) in &self.runs {
            let mut starts: Vec<u128> = runs.iter().map(|run| run.0).collect();
            starts.sort_unstable();
            let mut deaths = self.killed_inside.get(key).cloned().unwrap_or_default();
            deaths.sort_unstable();
            let mut deaths = deaths.into_iter().peekable();
            for start in starts.into_iter().skip(1) {
                if deaths.next_if(|died| *died < start).is_some() {
                    tied += 1;
                } else {
                    untied += 1;
                }
            }
        }
        (tied, untied)
    }
}

/// The duplicate check of effect logs given as text, one per incarnation with when it was killed (if
/// it was): (extra runs tied to a kill before them, extra runs with none). For fabricated logs.
pub fn duplicates_in(logs: &[(&str, Option<u128>)]) -> (usize, usize) {
    let mut effect_logs = EffectLogs::default();
    for (text, died) in logs {
        read_effect_log(text, *died, &mut effect_logs);
    }
    effect_logs.duplicates()
}

/// What the soak's checks read from the server once the actors are done.
#[derive(Debug, PartialEq, Eq)]
pub struct Leftovers {
    /// Tasks not at the last stage.
    pub unfinished: i64,
    /// Leases whose owner's boot is stale (superseded, or its session gone).
    pub stale_leases: i64,
    /// Leases held at all.
    pub leftover_leases: i64,
}

/// The soak's server-side checks, on the database `db` is connected to.
pub fn leftovers(db: &mut Client) -> Leftovers {
    Leftovers {
        unfinished: count(
            db,
            "SELECT count(*) FROM soak_task WHERE stage <> 'deployed'",
        ),
        stale_leases: count(
            db,
            "SELECT count(*) FROM orch_lease.transition_lease_status WHERE liveness = 'stale'",
        ),
        leftover_leases: count(db, "SELECT count(*) FROM orch_lease.transition_lease"),
    }
}

pub(super) fn check(
    db: &mut Client,
    dir: &Path,
    plan: &Plan,
    faults: &Faults,
    elapsed: Duration,
) -> Report {
    let logs = read_effect_logs(dir, faults);
    let (tied, untied) = logs.duplicates();
    let left = leftovers(db);
    Report {
        items: plan.items,
        transitions_committed: count(db, "SELECT count(*) FROM soak_history"),
        effects: logs.runs.values().map(Vec::len).sum(),
        duplicate_effects: logs.runs.values().map(|r| r.len().saturating_sub(1)).sum(),
        duplicates_tied_to_a_kill: tied,
        duplicates_without_a_kill: untied,
        killed_inside_effect: logs.killed_inside.values().map(Vec::len).sum(),
        overlapping_effects: logs.runs.values().map(|list| overlaps(list)).sum(),
        bad_histories: bad_histories(db),
        unfinished: left.unfinished,
        acknowledged_commits: logs.committed.len(),
        lost_commits: lost_commits(db, &logs.committed),
        stale_leases: left.stale_leases,
        leftover_leases: left.leftover_leases,
        kills: faults.kills,
        terminations: faults.terminations,
        server_restarts: faults.server_restarts,
        elapsed,
    }
}

/// Every incarnation's file in `dir`.
fn read_effect_logs(dir: &Path, faults: &Faults) -> EffectLogs {
    let mut logs = EffectLogs::default();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let died = faults.kill_time.get(&path).copied();
        read_effect_log(&std::fs::read_to_string(&path).unwrap(), died, &mut logs);
    }
    logs
}

/// One incarnation's file; `died` is when it was killed, if it was.
fn read_effect_log(text: &str, died: Option<u128>, logs: &mut EffectLogs) {
    let mut open: Option<(String, String, u128)> = None; // started, not ended
    let mut inside: Option<(String, String)> = None; // started, commit not answered
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        match fields.as_slice() {
            ["S", task, from, to, _token, at] => {
                let transition = format!("{from}>{to}");
                open = Some((task.to_string(), transition.clone(), at.parse().unwrap()));
                inside = Some((task.to_string(), transition));
            }
            ["E", task, from, to, _token, at] => {
                let (t, transition, started) = open.take().expect("an end after its start");
                assert_eq!(
                    (t.as_str(), transition.as_str()),
                    (*task, format!("{from}>{to}").as_str())
                );
                logs.runs
                    .entry((t, transition))
                    .or_default()
                    .push((started, Some(at.parse().unwrap())));
            }
            ["D", task, to, outcome, token, _] => {
                inside = None;
                if *outcome == "applied" {
                    if let Ok(token) = token.parse() {
                        logs.committed
                            .push((task.to_string(), token, to.to_string()));
                    }
                }
            }
            _ => {} // a line cut short by SIGKILL
        }
    }
    if let Some((task, transition, started)) = open {
        // Killed mid-effect: the run ended when the process died.
        logs.runs
            .entry((task, transition))
            .or_default()
            .push((started, died));
    }
    if let (Some(key), Some(died)) = (inside, died) {
        logs.killed_inside.entry(key).or_default().push(died);
    }
}

/// Pairs of runs of one effect whose intervals overlap: two owners inside at once.
fn overlaps(runs: &[Run]) -> usize {
    let mut overlapping = 0;
    for (i, a) in runs.iter().enumerate() {
        for b in &runs[i + 1..] {
            let (a_end, b_end) = (a.1.unwrap_or(u128::MAX), b.1.unwrap_or(u128::MAX));
            if a.0 < b_end && b.0 < a_end {
                overlapping += 1;
            }
        }
    }
    overlapping
}

/// Tasks whose history is not the pipeline path.
fn bad_histories(db: &mut Client) -> i64 {
    count(
        db,
        "WITH steps AS (
             SELECT task_id, from_stage, to_stage,
                    row_number() OVER (PARTITION BY task_id ORDER BY seq) AS n
               FROM soak_history),
         path(n, from_stage, to_stage) AS (VALUES (1, 'queued', 'built'), (2, 'built', 'tested'),
                                                 (3, 'tested', 'merged'), (4, 'merged', 'deployed'))
         SELECT count(DISTINCT s.task_id) FROM steps s LEFT JOIN path p USING (n, from_stage, to_stage)
          WHERE p.n IS NULL",
    )
}

/// Commits an actor saw applied that the history does not hold as `cas_applied` under their token, as
/// the failover check matches them: (task, token, stage reached).
fn lost_commits(db: &mut Client, committed: &[(String, i64, String)]) -> usize {
    let applied = applied_commits(db);
    committed.iter().filter(|c| !applied.contains(c)).count()
}

impl Report {
    /// Every invariant of the lease mode holds.
    pub fn holds(&self) -> bool {
        self.overlapping_effects == 0
            && self.bad_histories == 0
            && self.unfinished == 0
            && self.lost_commits == 0
            && self.stale_leases == 0
            && self.leftover_leases == 0
            && self.duplicates_without_a_kill == 0
    }

    pub fn print(&self, mode: Mode) {
        let rows = [
            ("tasks", self.items.to_string()),
            (
                "transitions committed",
                self.transitions_committed.to_string(),
            ),
            ("effects run", self.effects.to_string()),
            ("effects run twice", self.duplicate_effects.to_string()),
            (
                "  tied to a kill inside that transition",
                self.duplicates_tied_to_a_kill.to_string(),
            ),
            (
                "  with no such kill",
                self.duplicates_without_a_kill.to_string(),
            ),
            (
                "actors killed inside an effect",
                self.killed_inside_effect.to_string(),
            ),
            (
                "overlapping effects (two owners inside)",
                self.overlapping_effects.to_string(),
            ),
            (
                "histories off the pipeline path",
                self.bad_histories.to_string(),
            ),
            ("tasks unfinished", self.unfinished.to_string()),
            (
                "commits acknowledged (with a token)",
                self.acknowledged_commits.to_string(),
            ),
            ("acknowledged commits lost", self.lost_commits.to_string()),
            ("stale leases left", self.stale_leases.to_string()),
            ("leases left", self.leftover_leases.to_string()),
            ("faults: actors SIGKILLed", self.kills.to_string()),
            ("faults: sessions terminated", self.terminations.to_string()),
            (
                "faults: immediate server restarts",
                self.server_restarts.to_string(),
            ),
            ("elapsed", format!("{:.1} s", self.elapsed.as_secs_f64())),
        ];
        println!("\n  soak, {} mode", mode.name());
        for (what, figure) in rows {
            println!("  {what:<42} {figure:>8}");
        }
        println!(
            "  verdict: {}",
            if self.holds() {
                "ALL INVARIANTS HOLD"
            } else {
                "VIOLATIONS"
            }
        );
    }
}
