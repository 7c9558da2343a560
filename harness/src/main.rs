//! `orch-race race --mode naive|lease` replays the incident and prints what happened;
//! `orch-race actor …` is one actor process (started by `race`).
use orch_lease_harness::{
    connect, demo, failover, prepare, race, report, run_actor, soak, ActorPlan, Mode,
};
use std::collections::HashMap;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        usage()
    };
    let options: HashMap<&str, &str> = rest
        .chunks(2)
        .map(|pair| match pair {
            [key, value] if key.starts_with("--") => (&key[2..], value.as_str()),
            _ => usage(),
        })
        .collect();
    let get = |key: &str, default: &str| options.get(key).copied().unwrap_or(default).to_string();
    let number =
        |key: &str, default: &str| get(key, default).parse::<u64>().unwrap_or_else(|_| usage());
    let dsn = options
        .get("dsn")
        .map(|dsn| dsn.to_string())
        .or_else(|| std::env::var("ORCH_LEASE_DSN").ok())
        .unwrap_or_else(|| usage());
    let mode = Mode::parse(&get("mode", "lease")).unwrap_or_else(|error| {
        eprintln!("{error}");
        usage()
    });
    let items = number("items", "20") as usize;
    let effect_ms = number("effect-ms", "20");
    match command.as_str() {
        "race" => {
            let mut db = connect(&dsn);
            prepare(&mut db, items);
            race(
                &std::env::current_exe().unwrap(),
                &dsn,
                mode,
                items,
                effect_ms,
            );
            let report = report(&mut db);
            report.print(&format!("{} mode", mode.name()));
            if let Some(expect) = options.get("expect") {
                let held = match *expect {
                    "exactly-once" => report.exactly_once(),
                    "duplicates" => !report.exactly_once(),
                    _ => usage(),
                };
                if !held {
                    eprintln!("expected {expect}, but the race gave {report:?}");
                    std::process::exit(1);
                }
            }
        }
        "soak" => {
            let plan = soak::Plan {
                dsn,
                mode,
                actors: number("actors", "8") as usize,
                items: number("items", "500") as usize,
                effect_ms: number("effect-ms", "3"),
                faults: get("faults", "on") == "on",
                restart_command: std::env::var("ORCH_LEASE_RESTART_CMD").ok(),
                server_restarts: number("restarts", "1") as usize,
                max_attempts: number("max-attempts", "400"),
                budget: std::time::Duration::from_secs(number("budget-s", "600")),
            };
            let report = soak::run(&std::env::current_exe().unwrap(), &plan);
            report.print(mode);
            let wanted = get("expect", "any");
            let ok = match wanted.as_str() {
                "holds" => report.holds(),
                "violations" => !report.holds(),
                "any" => true,
                _ => usage(),
            };
            if !ok {
                eprintln!("expected {wanted}, but the soak gave {report:?}");
                std::process::exit(1);
            }
        }
        "soak-actor" => soak::run_actor(
            &dsn,
            mode,
            &get("role", "actor-0"),
            std::path::Path::new(&get("dir", ".")),
            number("effect-ms", "3"),
            number("max-attempts", "400"),
        ),
        "actor" => run_actor(&ActorPlan {
            dsn,
            mode,
            role: get("role", "monitor"),
            items,
            effect_ms,
            start_at_ms: number("start-at", "0") as u128,
            crash_after_grant: get("crash-after-grant", "no") == "yes",
        }),
        "demo" => demo::run(&std::env::current_exe().unwrap(), &dsn),
        "failover" => {
            let command = |name: &str| std::env::var(name).unwrap_or_else(|_| usage());
            let plan = failover::Plan {
                primary_dsn: get("primary-dsn", ""),
                dsn,
                actors: number("actors", "6") as usize,
                items: number("items", "40") as usize,
                before: std::time::Duration::from_secs(number("before-s", "4")),
                after: std::time::Duration::from_secs(number("after-s", "4")),
                crash: command("ORCH_LEASE_CRASH_CMD"),
                promote: command("ORCH_LEASE_PROMOTE_CMD"),
                freeze: std::env::var("ORCH_LEASE_FREEZE_CMD")
                    .ok()
                    .map(|freeze| (freeze, command("ORCH_LEASE_THAW_CMD"))),
                dir: std::path::PathBuf::from(get("dir", "target/failover")),
            };
            let mut db = connect(&plan.primary_dsn);
            failover::prepare(&mut db, plan.items);
            let report = failover::run(&std::env::current_exe().unwrap(), &plan);
            report.print();
            if get("expect", "holds") == "holds" && !report.holds() {
                eprintln!("failover: committed work was lost or a token repeated: {report:?}");
                std::process::exit(1);
            }
        }
        "failover-actor" => failover::run_actor(
            &dsn,
            &get("role", "actor-0"),
            number("items", "40") as usize,
            std::path::Path::new(&get("dir", ".")),
            number("seconds", "8"),
        ),
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: orch-race race [--mode naive|lease] [--items 20] [--effect-ms 20] [--expect exactly-once|duplicates] [--dsn DSN]\n\
         \x20      orch-race soak [--mode lease|naive] [--actors 8] [--items 500] [--effect-ms 3] [--faults on|off]\n\
         \x20                     [--restarts 1] [--max-attempts 400] [--budget-s 600] [--expect holds|violations]\n\
         \x20                     (server restarts run $ORCH_LEASE_RESTART_CMD)\n\
         \x20      orch-race demo          (the incident, kill-switch off and on, then a crash and its recovery)\n\
         \x20      orch-race actor --mode M --role R --items N --effect-ms E --start-at MS --dsn DSN\n\
         DSN defaults to $ORCH_LEASE_DSN"
    );
    std::process::exit(2)
}
