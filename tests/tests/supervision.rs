//! `depends-on` and health checks, in one boot per arch.
//!
//! - `db` listens on TCP 5432 two seconds after it starts; its health check is `tcp = 5432`.
//! - `api` depends on db, so it starts only once db is healthy; `web` depends on api (no health
//!   check: running is enough).
//! - `flaky` passes its `cmd` health check (`test -f /tmp/ok`, run inside its namespaces, where
//!   /tmp is its own tmpfs) until it deletes the file; two failures in a row make it unhealthy,
//!   keel-init stops it, and restarts it although it exits 0 (an unhealthy run is a failure).
//!
//! - `oneshot` exits 0 while its slow health check runs: the check, killed with the container's
//!   pid namespace, counts for nothing, and on-failure does not restart it.
//!
//! Then the power button: web, flaky, then api, then db get SIGTERM, each only once everything
//! that depends on it has exited. Every container traps SIGTERM, says so, and takes half a second
//! to exit, so an order mistake shows on the console.

use std::time::Duration;

use keel_plan::Arch;
use keel_tests::scenario::{cat, power_off, Scenario};
use keel_tests::{both_arches, wait_until};

fn dependencies_and_health(arch: Arch) {
    let s = Scenario::new("supervision", arch, &[]);
    // In place, so the log files on keel-data can be read afterwards.
    let mut vm = s.start(true);
    wait_until(&mut vm, "web up and flaky restarted", Duration::from_secs(400), arch, |lines| {
        lines.iter().any(|l| l.text.contains("web| web up"))
            && lines.iter().filter(|l| l.text.contains("flaky| flaky up")).count() >= 2
            && lines.iter().any(|l| l.text.contains("keel: container oneshot exited"))
    });
    let run = power_off(vm, arch);
    // The health verdicts are in flaky's log file on keel-data, too.
    let (flaky_log, err) = cat(&s.keel_data(None), "/logs/flaky.log");
    let console = &run.console;

    // Start order: api waits for db's first passing TCP check, web for api.
    let line = |p: &str| run.first(p);
    let waits = line("keel: container api waits for db");
    let listening = line("db| db listening");
    let healthy = line("keel: container db is healthy");
    let api_up = line("api| api up");
    let web_up = line("web| web up");
    assert!(waits < listening && listening < healthy, "{arch}: db healthy before it listened:\n{console}");
    assert!(healthy < api_up && api_up < web_up, "{arch}: started out of dependency order:\n{console}");
    let start = |n: &str| run.timeline("container-start", n);
    let (db, api, web) = (start("db"), start("api"), start("web"));
    assert!(db.len() == 1 && api.len() == 1 && web.len() == 1, "{arch}: each started once:\n{console}");
    assert!(db[0] + 2.0 <= api[0], "{arch}: api started {:.2}s after db, before db listened", api[0] - db[0]);
    assert!(api[0] <= web[0], "{arch}: web started before api");

    // flaky: healthy, then 2 failures, stopped as unhealthy, restarted although it exited 0.
    let flaky_healthy = line("keel: container flaky is healthy");
    let failed = line("keel: container flaky failed its health check (1 of 2): exited with status 1");
    let unhealthy = line("keel: container flaky is unhealthy: 2 health checks failed in a row");
    let exited = line("keel: container flaky exited with status 0");
    let restarting = line("keel: container flaky restarting in 1 s (restart 1)");
    assert!(
        flaky_healthy < failed && failed < unhealthy && unhealthy < exited && exited < restarting,
        "{arch}: flaky's health story is out of order:\n{console}"
    );
    assert!(start("flaky").len() >= 2, "{arch}: flaky was not started again:\n{console}");
    for verdict in
        ["keel container flaky is healthy", "keel container flaky is unhealthy: 2 health checks failed in a row"]
    {
        assert!(flaky_log.contains(verdict), "{arch}: no `{verdict}` in logs/flaky.log ({err}):\n{flaky_log}");
    }

    // oneshot: its check was in flight when it exited 0; that check counts for nothing.
    line("keel: container oneshot exited with status 0");
    assert!(
        !console.contains("container oneshot failed its health check")
            && !console.contains("container oneshot is unhealthy"),
        "{arch}: a check cut short by the container's exit counted:\n{console}"
    );
    assert_eq!(start("oneshot").len(), 1, "{arch}: oneshot was restarted:\n{console}");

    // Stop order: web before api before db (each traps SIGTERM and takes 0.5 s to exit).
    let stop = |n: &str| {
        *run.timeline("container-exit", n).last().unwrap_or_else(|| panic!("{arch}: no exit of {n}:\n{console}"))
    };
    let (web_exit, api_exit, db_exit) = (stop("web"), stop("api"), stop("db"));
    assert!(web_exit < api_exit && api_exit < db_exit, "{arch}: stopped out of reverse dependency order:\n{console}");
    let term_db = line("db| db got SIGTERM");
    let api_exits = line("api| api exits");
    let term_api = line("api| api got SIGTERM");
    let web_exits = line("web| web exits");
    assert!(web_exits < term_api && api_exits < term_db, "{arch}: a dependency got SIGTERM too early:\n{console}");
    assert!(!console.contains("sending SIGKILL"), "{arch}: a container needed SIGKILL:\n{console}");
    eprintln!(
        "{arch}: db start→api start {:.2}s (db listens after 2 s); stop: web exit→api exit {:.2}s, api exit→db exit {:.2}s",
        api[0] - db[0],
        api_exit - web_exit,
        db_exit - api_exit
    );
}

both_arches!(dependencies_and_health);
