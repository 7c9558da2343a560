//! Steps in words, for counterexamples and for the conformance driver's reports.
use crate::contract::{spelling_of, Action, Config, Grant, Outcome, Step, TakeoverKind};
use crate::state::{Pc, Stage, State};

/// Items are (task table, id) pairs (#27): even items are rows of `tasks`, odd ones of `jobs`, with the
/// ids 7, 7, 8, 8, …, so that items 0 and 1 are the same id in two tables, two work items.
pub fn task_table(item: u8) -> &'static str {
    ["tasks", "jobs"][item as usize % 2]
}

/// The id of an item as its task table has it: 7, 7, 8, 8, …
pub fn task_id(item: u8) -> i64 {
    7 + item as i64 / 2
}

/// How a spelling writes an item's id: spelling 0 is the canonical text ("7"), spelling 1 another
/// text the bigint input accepts ("07", "+8", " 9").
pub fn spelling_text(item: u8, spelling: u8) -> String {
    let id = task_id(item);
    match (spelling, item % 3) {
        (0, _) => id.to_string(),
        (_, 0) => format!("0{id}"),
        (_, 1) => format!("+{id}"),
        _ => format!(" {id}"),
    }
}

fn quoted(item: u8, spelling: u8) -> String {
    format!("'{}'", spelling_text(item, spelling))
}

/// One step as a line: who did what, and what it answered.
pub fn describe(state: &State, action: &Action, step: &Step) -> String {
    let actor = |a: u8| format!("actor {a} (boot {})", state.actors[a as usize].boot);
    let attempt_of = |a: u8| match state.actors[a as usize].pc {
        Pc::Holding(at) | Pc::Effected(at) => Some(at),
        _ => None,
    };
    let what = match *action {
        Action::Restart(a) => format!(
            "actor {a} restarts with boot {}",
            step.next.actors[a as usize].boot
        ),
        Action::Recover(a) => format!("{} recover", actor(a)),
        Action::TwinRecover(a) => format!("a second process named like actor {a} recovers"),
        Action::Acquire {
            actor: a,
            item,
            session,
        } => format!(
            "{} {} {} (stage {})",
            actor(a),
            if session {
                "acquire_session"
            } else {
                "acquire"
            },
            quoted(item, spelling_of(a)),
            state.items[item as usize].stage.name()
        ),
        Action::ZombieAcquire { actor: a, item } => format!(
            "zombie of actor {a} (boot {}) acquire {}",
            state.actors[a as usize].boot - 1,
            quoted(item, spelling_of(a))
        ),
        Action::Effect(a) => format!("{} does the effect", actor(a)),
        Action::CommitStray { actor: a, item } => format!(
            "{} commit_stage_cas({}, a token it never held)",
            actor(a),
            quoted(item, spelling_of(a))
        ),
        Action::Release(a) | Action::Commit(a) => {
            let at = attempt_of(a).expect("an attempt");
            let token = at.token.map_or("NULL".into(), |t| format!("t{t}"));
            let target = quoted(at.item, spelling_of(a));
            if matches!(action, Action::Release(_)) {
                format!("{} release({target}, {token})", actor(a))
            } else {
                format!(
                    "{} commit_stage_cas({target}, {token}, {} -> {})",
                    actor(a),
                    at.expected.name(),
                    at.expected.next().name()
                )
            }
        }
        Action::Crash(a) => format!("{} crashes", actor(a)),
        Action::ForceRelease { item, spelling } => {
            format!("operator force_release({})", quoted(item, spelling))
        }
        Action::Reap { ceiling: false } => "reaper (no lease over the ceiling)".into(),
        Action::Reap { ceiling: true } => "reaper (every lease over the ceiling)".into(),
        Action::SetEnabled(on) => format!(
            "operator set_enabled({on}): the kill-switch {}",
            if on { "on" } else { "off" }
        ),
        Action::SetScopeCovered(true) => "orch_lease.scopes covers the actors' scope".into(),
        Action::SetScopeCovered(false) => "orch_lease.scopes leaves the actors' scope out".into(),
        Action::LockRow(item) => format!("another session locks task {}", task_id(item)),
        Action::AcquireElsewhere(item) => {
            format!(
                "another session's transaction is acquiring {}",
                quoted(item, 0)
            )
        }
        Action::EndOther => "the other session's transaction ends".into(),
        Action::DeleteRow(item) => format!("task {} is deleted", task_id(item)),
        Action::InsertRow(item) => format!("task {} is inserted (queued)", task_id(item)),
    };
    let answer = match step.outcome {
        Outcome::Grant(grant, stage) => match grant {
            Grant::Acquired(t) => format!("acquired t{t} (stage {})", stage_name(stage)),
            Grant::Reclaimed { token, from } => {
                format!(
                    "reclaimed t{token} from actor {} boot {} (stage {})",
                    from.actor,
                    from.boot,
                    stage_name(stage)
                )
            }
            Grant::Held(h) => format!("held by actor {} boot {}", h.actor, h.boot),
            other => other.name().to_string(),
        },
        Outcome::Cas(cas) => match cas {
            crate::contract::Cas::StageMismatch(Some(stage)) => {
                format!("stage_mismatch (stage {})", stage.name())
            }
            other => other.name().to_string(),
        },
        Outcome::Ended(ended) => ended.to_string(),
        Outcome::InstanceInUse => "refused: instance in use (55006)".into(),
        Outcome::Switched => "switched".into(),
        Outcome::Took | Outcome::Done => String::new(),
    };
    let taken: Vec<String> = step
        .takeovers
        .iter()
        .map(|t| {
            let kind = match t.kind {
                TakeoverKind::Reclaimed => "reclaimed",
                TakeoverKind::Recovered => "recovered",
                TakeoverKind::Stale => "stale",
                TakeoverKind::Ceiling => "ceiling",
                TakeoverKind::Forced => "forced",
            };
            format!("{kind} t{} of {}", t.token, quoted(t.item, t.slot))
        })
        .collect();
    let mut line = what;
    if !answer.is_empty() {
        line += &format!(" -> {answer}");
    }
    if !taken.is_empty() {
        line += &format!(" [takes {}]", taken.join(", "));
    }
    line
}

/// A sequence of steps from the initial state, one numbered line each, with the leases and stages
/// after the last one.
/// A stage an answer said, or "none".
fn stage_name(stage: Option<Stage>) -> &'static str {
    stage.map_or("none", Stage::name)
}

pub fn render(config: &Config, actions: &[Action]) -> String {
    let mut state = config.init();
    let mut out = String::new();
    for (n, action) in actions.iter().enumerate() {
        let step = config.step(&state, action);
        out += &format!("  {:>3}. {}\n", n + 1, describe(&state, action, &step));
        state = step.next;
    }
    out += &format!("  then: {}\n", summary(&state));
    out
}

/// The leases, stages and settings of a state on one line.
pub fn summary(state: &State) -> String {
    let items: Vec<String> = state
        .items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let leases: Vec<String> = item
                .leases
                .iter()
                .enumerate()
                .filter_map(|(slot, lease)| {
                    lease.map(|l| {
                        format!(
                            "{}: t{} actor {} boot {}{}",
                            quoted(i as u8, slot as u8),
                            l.token,
                            l.holder.actor,
                            l.holder.boot,
                            if l.holder.session { " session" } else { "" }
                        )
                    })
                })
                .collect();
            format!(
                "task {} {} [{}]",
                task_id(i as u8),
                item.stage.name(),
                leases.join("; ")
            )
        })
        .collect();
    format!(
        "{}; switch {}, scope {}",
        items.join(", "),
        if state.enabled { "on" } else { "off" },
        if state.scope_covered {
            "covered"
        } else {
            "out"
        }
    )
}
