//! `orch-race COMMAND [--option value …]`: the incident race, the demo, the soak and the failover test,
//! and the actor processes they start (see `usage`).
use orch_lease_harness::kit::{connect, Mode};
use orch_lease_harness::{demo, failover, race, soak};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

fn usage() -> ! {
    eprintln!(
        "usage: orch-race race [--mode naive|lease] [--items 20] [--effect-ms 20] [--expect exactly-once|duplicates] [--dsn DSN]\n\
         \x20      orch-race demo          (the incident, kill-switch off and on, then a crash and its recovery)\n\
         \x20      orch-race soak [--mode lease|naive] [--actors 8] [--items 500] [--effect-ms 3] [--faults on|off]\n\
         \x20                     [--restarts 1] [--max-attempts 400] [--budget-s 600] [--expect holds|violations|any]\n\
         \x20                     [--break none|double-effect|phantom-ack] (the lease actors misbehave on purpose:\n\
         \x20                     an effect run twice without a kill, a commit acknowledged under a token that never committed)\n\
         \x20                     (server restarts run $ORCH_LEASE_RESTART_CMD)\n\
         \x20      orch-race failover --primary-dsn DSN [--actors 6] [--items 40] [--before-s 4] [--after-s 4]\n\
         \x20                     [--dir target/failover] [--expect holds|lost-work|any] [--dsn DSN]\n\
         \x20                     (--dsn names both servers; runs $ORCH_LEASE_CRASH_CMD and $ORCH_LEASE_PROMOTE_CMD;\n\
         \x20                     when set, $ORCH_LEASE_FREEZE_CMD a second before the crash and $ORCH_LEASE_CUT_CMD after it)\n\
         the actor processes these start:\n\
         \x20      orch-race actor --mode M --role R --items N --effect-ms E --start-at MS [--crash-after-grant yes] --dsn DSN\n\
         \x20      orch-race soak-actor --mode M --break B --role R --effect-ms E --max-attempts N --dir DIR --dsn DSN\n\
         \x20      orch-race failover-actor --role R --items N --dir DIR --seconds S --dsn DSN\n\
         DSN defaults to $ORCH_LEASE_DSN"
    );
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        usage()
    };
    let options = Options::parse(rest);
    match command.as_str() {
        "race" => run_race(&options),
        "actor" => run_actor(&options),
        "demo" => demo::run(&exe(), &options.dsn()),
        "soak" => run_soak(&options),
        "soak-actor" => run_soak_actor(&options),
        "failover" => run_failover(&options),
        "failover-actor" => run_failover_actor(&options),
        "failover-check" => run_failover_check(&options),
        _ => usage(),
    }
}

/// The `--key value` pairs after the command.
struct Options<'a>(HashMap<&'a str, &'a str>);

impl<'a> Options<'a> {
    fn parse(args: &'a [String]) -> Options<'a> {
        Options(
            args.chunks(2)
                .map(|pair| match pair {
                    [key, value] if key.starts_with("--") => (&key[2..], value.as_str()),
                    _ => usage(),
                })
                .collect(),
        )
    }

    fn get(&self, key: &str, default: &str) -> String {
        self.0.get(key).copied().unwrap_or(default).to_string()
    }

    fn number(&self, key: &str, default: u64) -> u64 {
        self.0
            .get(key)
            .map_or(Ok(default), |text| text.parse())
            .unwrap_or_else(|_| usage())
    }

    fn seconds(&self, key: &str, default: u64) -> Duration {
        Duration::from_secs(self.number(key, default))
    }

    /// `--dsn`, else `$ORCH_LEASE_DSN`.
    fn dsn(&self) -> String {
        self.0
            .get("dsn")
            .map(|dsn| dsn.to_string())
            .or_else(|| std::env::var("ORCH_LEASE_DSN").ok())
            .unwrap_or_else(|| usage())
    }

    fn mode(&self) -> Mode {
        Mode::parse(&self.get("mode", "lease")).unwrap_or_else(|error| {
            eprintln!("{error}");
            usage()
        })
    }

    /// `--break`: a soak actor's deliberate misbehaviour (none by default).
    fn broken(&self) -> soak::Break {
        soak::Break::parse(&self.get("break", "none")).unwrap_or_else(|error| {
            eprintln!("{error}");
            usage()
        })
    }

    fn dir(&self, default: &str) -> PathBuf {
        PathBuf::from(self.get("dir", default))
    }
}

/// This program, which the commands start again as actor processes.
fn exe() -> PathBuf {
    std::env::current_exe().unwrap()
}

/// An environment variable the command cannot do without.
fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| usage())
}

/// Fails the run (exit 1) with `message` when the outcome is not the one `--expect`ed.
fn expect(met: bool, message: impl FnOnce() -> String) {
    if !met {
        eprintln!("{}", message());
        std::process::exit(1);
    }
}

fn run_race(options: &Options) {
    let (dsn, mode) = (options.dsn(), options.mode());
    let items = options.number("items", 20) as usize;
    let mut db = connect(&dsn);
    race::prepare(&mut db, items);
    race::race(&exe(), &dsn, mode, items, options.number("effect-ms", 20));
    let report = race::report(&mut db);
    report.print(&format!("{} mode", mode.name()));
    if let Some(wanted) = options.0.get("expect") {
        let met = match *wanted {
            "exactly-once" => report.exactly_once(),
            "duplicates" => !report.exactly_once(),
            _ => usage(),
        };
        expect(met, || {
            format!("expected {wanted}, but the race gave {report:?}")
        });
    }
}

fn run_actor(options: &Options) {
    race::run_actor(&race::ActorPlan {
        dsn: options.dsn(),
        mode: options.mode(),
        role: options.get("role", "monitor"),
        items: options.number("items", 20) as usize,
        effect_ms: options.number("effect-ms", 20),
        start_at_ms: options.number("start-at", 0) as u128,
        crash_after_grant: options.get("crash-after-grant", "no") == "yes",
    })
}

fn run_soak(options: &Options) {
    let plan = soak::Plan {
        dsn: options.dsn(),
        mode: options.mode(),
        broken: options.broken(),
        actors: options.number("actors", 8) as usize,
        items: options.number("items", 500) as usize,
        effect_ms: options.number("effect-ms", 3),
        faults: options.get("faults", "on") == "on",
        restart_command: std::env::var("ORCH_LEASE_RESTART_CMD").ok(),
        server_restarts: options.number("restarts", 1) as usize,
        max_attempts: options.number("max-attempts", 400),
        budget: options.seconds("budget-s", 600),
    };
    let report = soak::run(&exe(), &plan);
    report.print(plan.mode);
    let wanted = options.get("expect", "any");
    let met = match wanted.as_str() {
        "holds" => report.holds(),
        "violations" => !report.holds(),
        "any" => true,
        _ => usage(),
    };
    expect(met, || {
        format!("expected {wanted}, but the soak gave {report:?}")
    });
}

fn run_soak_actor(options: &Options) {
    soak::run_actor(
        &options.dsn(),
        options.mode(),
        options.broken(),
        &options.get("role", "actor-0"),
        &options.dir("."),
        options.number("effect-ms", 3),
        options.number("max-attempts", 400),
    )
}

fn run_failover(options: &Options) {
    let plan = failover::Plan {
        primary_dsn: options.get("primary-dsn", ""),
        dsn: options.dsn(),
        actors: options.number("actors", 6) as usize,
        items: options.number("items", 40) as usize,
        before: options.seconds("before-s", 4),
        after: options.seconds("after-s", 4),
        crash: required_env("ORCH_LEASE_CRASH_CMD"),
        promote: required_env("ORCH_LEASE_PROMOTE_CMD"),
        freeze: std::env::var("ORCH_LEASE_FREEZE_CMD")
            .ok()
            .map(|freeze| (freeze, required_env("ORCH_LEASE_CUT_CMD"))),
        dir: options.dir("target/failover"),
    };
    failover::prepare(&mut connect(&plan.primary_dsn), plan.items);
    let report = failover::run(&exe(), &plan);
    report.print();
    let wanted = options.get("expect", "holds");
    let met = match wanted.as_str() {
        "holds" => report.holds(),
        "lost-work" => report.lost_work(),
        "any" => true,
        _ => usage(),
    };
    expect(met, || {
        format!("failover: expected {wanted}, but the check gave {report:?}")
    });
}

fn run_failover_actor(options: &Options) {
    failover::run_actor(
        &options.dsn(),
        &options.get("role", "actor-0"),
        options.number("items", 40) as usize,
        &options.dir("."),
        options.number("seconds", 8),
    )
}

fn run_failover_check(options: &Options) {
    let port = |key| i32::try_from(options.number(key, 0)).unwrap_or_else(|_| usage());
    let fault = failover::Fault {
        injected: options.number("injected", 0) as u128,
        old_port: port("old-port"),
        new_port: port("new-port"),
        in_flight: options.0.get("in-flight").map(|item| item.to_string()),
    };
    let report = failover::check_fault(&options.dsn(), &options.dir("target/failover"), &fault);
    print!("{}: ", options.get("name", "fault"));
    report.print();
    expect(report.holds(), || {
        format!("failover: expected holds, but the check gave {report:?}")
    });
}
