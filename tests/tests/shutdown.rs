//! Graceful shutdown through the power button: QMP `system_powerdown` (an ACPI power button press
//! on x86_64, the `virt` machine's power key on aarch64) reaches keel-init as a KEY_POWER input
//! event. keel-init sends SIGTERM to the containers, waits `shutdown-grace`, SIGKILLs what is
//! left, and powers off.
//!
//! Two busybox containers: `polite` traps SIGTERM, says so and exits 0; `stubborn` traps it and
//! carries on, so it must be killed by SIGKILL, and not before the 3 s grace has passed.

use std::time::Duration;

use keel_plan::Arch;
use keel_qemu::POWER_DOWN_LINE;
use keel_tests::both_arches;
use keel_tests::scenario::{power_off, wait_all, Scenario};

/// The grace period the config asks for.
const GRACE: Duration = Duration::from_secs(3);
/// keel-init's wait after SIGKILL before it gives up on containers (lifecycle::KILL_GRACE).
const KILL_GRACE: Duration = Duration::from_secs(5);

fn power_button_stops_gracefully(arch: Arch) {
    let s = Scenario::new("shutdown", arch, &[("grace", &GRACE.as_secs().to_string())]);
    let mut vm = s.start(false);
    wait_all(&mut vm, &["polite| ready", "stubborn| ready"], Duration::from_secs(300), arch);
    let console = vm.console();
    let found = console.lines().find(|l| l.contains("keel: power button: event")).map(str::to_owned);
    let found = found.unwrap_or_else(|| panic!("{arch}: keel-init found no power button:\n{console}"));

    let pressed = vm.started().elapsed();
    let run = power_off(vm, arch);
    let console = &run.console;
    let line = |p: &str| run.line(p);

    let button = line("keel: power button pressed: stopping containers");
    let term = line(&format!("keel: sending SIGTERM to polite, stubborn; SIGKILL in {} s", GRACE.as_secs()));
    line("polite| got SIGTERM");
    line("stubborn| ignoring SIGTERM");
    let polite = line("keel: container polite exited with status 0");
    let kill =
        line(&format!("keel: container stubborn still running {} s after SIGTERM: sending SIGKILL", GRACE.as_secs()));
    let stubborn = line("keel: container stubborn killed by signal SIGKILL");
    let off = line(POWER_DOWN_LINE);
    assert!(
        !console.contains("containers still running after SIGKILL"),
        "{arch}: keel-init gave up on a container:\n{console}"
    );

    // In order, and on time (console arrival times on the host clock: a line may arrive a little
    // late, never early, so each bound allows a margin on its late side only).
    assert!(pressed <= button.at && button.at <= term.at, "{arch}: the press was not acted on:\n{console}");
    assert!(term.at <= polite.at && polite.at < term.at + GRACE, "{arch}: polite did not exit within the grace period");
    let killed_after = stubborn.at - term.at;
    assert!(
        kill.at >= term.at + GRACE - Duration::from_millis(200),
        "{arch}: SIGKILL came {:.2}s after SIGTERM, before the {GRACE:?} grace",
        (kill.at - term.at).as_secs_f64()
    );
    assert!(killed_after < GRACE + KILL_GRACE, "{arch}: stubborn outlived SIGKILL");
    assert!(stubborn.at <= off.at, "{arch}: powered off before stubborn was reaped");
    eprintln!("{arch}: {}", found.trim());
    eprintln!(
        "{arch}: press→SIGTERM {:.2}s, SIGTERM→polite exit {:.2}s, SIGTERM→SIGKILL {:.2}s, SIGTERM→stubborn reaped {:.2}s, \
         SIGTERM→power off {:.2}s",
        (term.at - pressed).as_secs_f64(),
        (polite.at - term.at).as_secs_f64(),
        (kill.at - term.at).as_secs_f64(),
        killed_after.as_secs_f64(),
        (off.at - term.at).as_secs_f64(),
    );
}

both_arches!(power_button_stops_gracefully);
