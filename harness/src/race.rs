//! The incident, replayed with real processes and real connections.
//!
//! Several actors (monitor, webhook, reconciler, job reaper, deploy finalizer) run as separate
//! processes and race to advance the same tasks out of `queued`. Three of them merge (`queued →
//! merged`), two roll back (`queued → rolled_back`); each transition has an irreversible effect that is
//! recorded on its own autocommit statement, outside any lease or CAS transaction, with start and end
//! marks. In `naive` mode an actor reads the stage and writes it with a bare UPDATE; in `lease` mode it
//! acquires the transition lease, which answers the stage read after the grant, and commits with
//! `commit_stage_cas`: two round trips. The tasks live in two registered tables (#27), `demo_task`
//! and `demo_jobs_task`, with the same ids: every call names its table, and one effect per
//! (table, id) is right.
use crate::kit::{add_task_table, connect, count, create_tasks, now_ms, spawn, Mode};
use postgres::Client;
use std::path::Path;
use std::process::Child;
use std::time::Duration;

/// The actors of the incident, and the transition each of them wants to make.
pub const ACTORS: [(&str, &str); 5] = [
    ("monitor", "merged"),
    ("webhook", "merged"),
    ("reconciler", "rolled_back"),
    ("job-reaper", "rolled_back"),
    ("deploy-finalizer", "merged"),
];

/// The race's task tables (the prefixes of `create_tasks`): tasks, and jobs with the same ids.
pub const TABLES: [&str; 2] = ["demo", "demo_jobs"];

/// A race table's task table and history table.
fn tables(prefix: &str) -> (String, String) {
    (format!("{prefix}_task"), format!("{prefix}_history"))
}

/// Creates the application's side of the race: `items` tasks in each of the two task tables with
/// their history (see `create_tasks`), the effect log and the attempt log, all fresh.
pub fn prepare(client: &mut Client, items: usize) {
    create_tasks(client, TABLES[0], items);
    add_task_table(client, TABLES[1], items);
    client
        .batch_execute(
            "DROP TABLE IF EXISTS demo_effect, demo_attempt;
             CREATE TABLE demo_effect (id bigserial PRIMARY KEY, task_table text, task_id text, actor text,
                                       effect text, started_at timestamptz DEFAULT clock_timestamp(),
                                       ended_at timestamptz);
             CREATE TABLE demo_attempt (actor text, task_table text, task_id text, outcome text);",
        )
        .expect("demo logs");
}

/// What one actor process is told.
pub struct ActorPlan {
    pub dsn: String,
    pub mode: Mode,
    pub role: String,
    pub items: usize,
    pub effect_ms: u64,
    /// Wall-clock start, in ms since the epoch, so that every actor starts together.
    pub start_at_ms: u128,
    /// Die (exit 137, no commit, no release) right after the first lease is granted.
    pub crash_after_grant: bool,
}

/// The body of one actor process: walk every task and try to advance it.
pub fn run_actor(plan: &ActorPlan) {
    let target = ACTORS
        .iter()
        .find(|(role, _)| *role == plan.role)
        .map(|(_, target)| *target)
        .unwrap_or("merged");
    let mut db = connect(&plan.dsn);
    let pid = std::process::id() as i32;
    let boot_id = format!("{}-{pid}-{}", plan.role, now_ms());
    if plan.mode == Mode::Lease {
        // A fresh incarnation: register it, and take back whatever an earlier one left behind.
        db.query(
            "SELECT * FROM orch_lease.transition_lease_recover($1, $2, $3)",
            &[&boot_id, &plan.role, &pid],
        )
        .expect("recover");
    }
    let wait = plan.start_at_ms.saturating_sub(now_ms());
    std::thread::sleep(Duration::from_millis(wait as u64));

    for i in 1..=plan.items {
        for prefix in TABLES {
            let (table, _) = tables(prefix);
            let task = Task {
                table: &table,
                id: &format!("task-{i}"),
            };
            let outcome = match plan.mode {
                Mode::Naive => advance_naively(&mut db, plan, &task, target),
                Mode::Lease => advance_with_lease(&mut db, plan, &task, target, pid, &boot_id),
            };
            db.execute(
                "INSERT INTO demo_attempt VALUES ($1, $2, $3, $4)",
                &[&plan.role, &task.table, &task.id, &outcome],
            )
            .expect("attempt log");
        }
    }
}

/// A work item of the race: a task table (one of `TABLES`' task tables) and an id.
struct Task<'a> {
    table: &'a str,
    id: &'a str,
}

fn stage_of(db: &mut Client, task: &Task) -> String {
    let read = format!("SELECT stage FROM {} WHERE id = $1", task.table);
    db.query_one(&read, &[&task.id]).expect("stage").get(0)
}

/// The irreversible effect: marked on its own autocommit statements, before and after.
fn apply_effect(db: &mut Client, plan: &ActorPlan, task: &Task, target: &str) {
    let effect = if target == "merged" {
        "merge_pr"
    } else {
        "rollback"
    };
    let id: i64 = db
        .query_one(
            "INSERT INTO demo_effect (task_table, task_id, actor, effect) VALUES ($1, $2, $3, $4)
             RETURNING id",
            &[&task.table, &task.id, &plan.role, &effect],
        )
        .expect("effect start")
        .get(0);
    std::thread::sleep(Duration::from_millis(plan.effect_ms));
    db.execute(
        "UPDATE demo_effect SET ended_at = clock_timestamp() WHERE id = $1",
        &[&id],
    )
    .expect("effect end");
}

fn advance_naively(db: &mut Client, plan: &ActorPlan, task: &Task, target: &str) -> String {
    if stage_of(db, task) != "queued" {
        return "skipped".into();
    }
    apply_effect(db, plan, task, target);
    let write = format!("UPDATE {} SET stage = $2 WHERE id = $1", task.table);
    db.execute(&write, &[&task.id, &target])
        .expect("bare update");
    "applied".into()
}

fn advance_with_lease(
    db: &mut Client,
    plan: &ActorPlan,
    task: &Task,
    target: &str,
    pid: i32,
    boot_id: &str,
) -> String {
    // Two tables are registered: every call names its work item's table.
    let grant = db
        .query_one(
            "SELECT acquired, outcome, token, stage
               FROM orch_lease.transition_lease_acquire($1, $2, $3, $4, task_table => $5::text::regclass)",
            &[&task.id, &plan.role, &pid, &boot_id, &task.table],
        )
        .expect("acquire");
    let (acquired, outcome, token, stage): (bool, String, Option<i64>, Option<String>) =
        (grant.get(0), grant.get(1), grant.get(2), grant.get(3));
    if !acquired {
        return outcome; // held, busy or superseded: someone else owns this transition
    }
    if plan.crash_after_grant {
        println!(
            "  {} (pid {pid}) was granted {} of {} (token {token:?}) and crashed before its merge",
            plan.role, task.id, task.table
        );
        std::process::exit(137);
    }
    // Under the lease, nobody else can be here: the stage the grant said is the one to move from.
    if stage.as_deref() != Some("queued") {
        db.execute(
            "SELECT orch_lease.transition_lease_release($1, $2, task_table => $3::text::regclass)",
            &[&task.id, &token, &task.table],
        )
        .expect("release");
        return "skipped".into();
    }
    apply_effect(db, plan, task, target);
    let result = db
        .query_one(
            "SELECT outcome
               FROM orch_lease.commit_stage_cas($1, $2, 'queued', $3, task_table => $4::text::regclass)",
            &[&task.id, &token, &target, &task.table],
        )
        .expect("commit");
    result.get(0)
}

/// Starts one process per actor, running `orch-race actor …`, and waits for them all.
pub fn race(exe: &Path, dsn: &str, mode: Mode, items: usize, effect_ms: u64) {
    race_of(
        exe,
        dsn,
        mode,
        &ACTORS.map(|(role, _)| role),
        items,
        effect_ms,
        false,
    )
}

/// Starts one `orch-race actor` process per role and waits for them all; with `crash_after_grant`,
/// each dies holding its first lease.
pub fn race_of(
    exe: &Path,
    dsn: &str,
    mode: Mode,
    roles: &[&str],
    items: usize,
    effect_ms: u64,
    crash_after_grant: bool,
) {
    let start_at = now_ms() + 700;
    let children: Vec<Child> = roles
        .iter()
        .map(|role| {
            let mut options = vec![
                ("mode", mode.name().to_string()),
                ("role", role.to_string()),
                ("items", items.to_string()),
                ("effect-ms", effect_ms.to_string()),
                ("start-at", start_at.to_string()),
                ("dsn", dsn.to_string()),
            ];
            if crash_after_grant {
                options.push(("crash-after-grant", "yes".to_string()));
            }
            spawn(exe, "actor", &options)
        })
        .collect();
    for mut child in children {
        let status = child.wait().expect("actor exit");
        let crashed_on_purpose = crash_after_grant && status.code() == Some(137);
        assert!(
            status.success() || crashed_on_purpose,
            "an actor failed: {status}"
        );
    }
}

/// What the race left behind, measured from the database. A task is a (table, id) pair.
#[derive(Debug, Default)]
pub struct Report {
    pub items: i64,
    pub effects: i64,
    /// Per task table: (table, its tasks, effects applied on them).
    pub per_table: Vec<(String, i64, i64)>,
    /// Tasks whose transition effect ran more than once.
    pub duplicated_items: i64,
    /// Pairs of effects on one task whose start–end intervals overlap (two owners inside at once).
    pub overlapping_effects: i64,
    /// Tasks whose history holds more than one transition, or both `merged` and `rolled_back`.
    pub contradictory_items: i64,
    /// Tasks that left `queued` exactly once.
    pub moved_once: i64,
    /// Per actor: (actor, effects applied, refusals as "outcome×n").
    pub per_actor: Vec<(String, i64, String)>,
}

pub fn report(db: &mut Client) -> Report {
    // Every table's history, each row naming its task table.
    let history = TABLES
        .map(|prefix| {
            let (table, history) = tables(prefix);
            format!("SELECT '{table}' AS task_table, task_id, from_stage FROM {history}")
        })
        .join(" UNION ALL ");
    let moves = TABLES
        .map(|prefix| {
            let (table, history) = tables(prefix);
            format!("SELECT '{table}' AS task_table, task_id, to_stage FROM {history}")
        })
        .join(" UNION ALL ");
    let per_table = TABLES
        .iter()
        .map(|prefix| {
            let (table, _) = tables(prefix);
            let tasks = count(db, &format!("SELECT count(*) FROM {table}"));
            let effects = count(
                db,
                &format!("SELECT count(*) FROM demo_effect WHERE task_table = '{table}'"),
            );
            (table, tasks, effects)
        })
        .collect::<Vec<_>>();
    let per_actor = db
        .query(
            "SELECT a.actor,
                    (SELECT count(*) FROM demo_effect e WHERE e.actor = a.actor),
                    coalesce(string_agg(a.outcome || '×' || a.n, ' ' ORDER BY a.outcome)
                             FILTER (WHERE a.outcome NOT IN ('applied')), '')
               FROM (SELECT actor, outcome, count(*) AS n FROM demo_attempt GROUP BY 1, 2) a
              GROUP BY a.actor ORDER BY a.actor",
            &[],
        )
        .expect("per actor")
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    Report {
        items: per_table.iter().map(|(_, tasks, _)| tasks).sum(),
        effects: count(db, "SELECT count(*) FROM demo_effect"),
        per_table,
        duplicated_items: count(
            db,
            "SELECT count(*) FROM (SELECT FROM demo_effect GROUP BY task_table, task_id
                                   HAVING count(*) > 1) d",
        ),
        overlapping_effects: count(
            db,
            "SELECT count(*) FROM demo_effect a JOIN demo_effect b
                ON a.task_table = b.task_table AND a.task_id = b.task_id AND a.id < b.id
               AND a.started_at < coalesce(b.ended_at, 'infinity') AND b.started_at < coalesce(a.ended_at, 'infinity')",
        ),
        contradictory_items: count(
            db,
            &format!(
                "SELECT count(*) FROM (SELECT FROM ({moves}) h GROUP BY task_table, task_id
                    HAVING count(*) > 1 OR count(DISTINCT to_stage) > 1) c"
            ),
        ),
        moved_once: count(
            db,
            &format!(
                "WITH h AS ({history})
                 SELECT count(*) FROM (SELECT task_table, task_id FROM h GROUP BY 1, 2
                                        HAVING count(*) = 1 AND bool_and(from_stage = 'queued')) m"
            ),
        ),
        per_actor,
    }
}

impl Report {
    /// Each transition's effect ran exactly once, and every task moved exactly once.
    pub fn exactly_once(&self) -> bool {
        self.effects == self.items
            && self
                .per_table
                .iter()
                .all(|(_, tasks, effects)| effects == tasks)
            && self.duplicated_items == 0
            && self.overlapping_effects == 0
            && self.contradictory_items == 0
            && self.moved_once == self.items
    }

    pub fn print(&self, title: &str) {
        let tables: Vec<String> = self
            .per_table
            .iter()
            .map(|(table, tasks, _)| format!("{tasks} in {table}"))
            .collect();
        println!(
            "\n  {title}: {} tasks ({}, the same ids), {} actors racing on every one",
            self.items,
            tables.join(", "),
            self.per_actor.len()
        );
        println!("  {:<18} {:>8}  refused / skipped", "actor", "effects");
        for (actor, effects, refusals) in &self.per_actor {
            println!("  {actor:<18} {effects:>8}  {refusals}");
        }
        println!(
            "  effects applied            {:>5}  (one per (table, task) is right: {})",
            self.effects, self.items
        );
        for (table, tasks, effects) in &self.per_table {
            println!("    on {table:<23} {effects:>5}  (of {tasks})");
        }
        println!(
            "  tasks with duplicate effects {:>3}",
            self.duplicated_items
        );
        println!(
            "  overlapping effects        {:>5}  (two owners inside one task at once)",
            self.overlapping_effects
        );
        println!(
            "  contradictory histories    {:>5}  (moved twice, or merged and rolled back)",
            self.contradictory_items
        );
        println!("  tasks moved exactly once   {:>5}", self.moved_once);
        println!(
            "  verdict: {}",
            if self.exactly_once() {
                "EXACTLY ONCE"
            } else {
                "DUPLICATED EFFECTS / CONTRADICTORY HISTORY"
            }
        );
    }
}
