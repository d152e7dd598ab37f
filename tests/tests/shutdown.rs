//! Graceful shutdown through the power button: QMP `system_powerdown` (an ACPI power button press
//! on x86_64, the `virt` machine's power key on aarch64) reaches keel-init as a KEY_POWER input
//! event. keel-init sends SIGTERM to the containers, waits `shutdown-grace`, SIGKILLs what is
//! left, and powers off.
//!
//! Two busybox containers: `polite` traps SIGTERM, says so and exits 0; `stubborn` traps it and
//! carries on, so it must be killed by SIGKILL, and not before the 3 s grace has passed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use keel_plan::Arch;
use keel_qemu::{Line, Vm, POWER_DOWN_LINE};
use keel_tests::{build, busybox_image, first_line, kernel_toml, tcg_disk, wait_until};

/// The grace period the config asks for.
const GRACE: Duration = Duration::from_secs(3);
/// keel-init's wait after SIGKILL before it gives up on containers (lifecycle::KILL_GRACE).
const KILL_GRACE: Duration = Duration::from_secs(5);

const POLITE: &str = r#"trap "echo got SIGTERM; exit 0" TERM; echo ready; while true; do sleep 1; done"#;
const STUBBORN: &str = r#"trap "echo ignoring SIGTERM" TERM; echo ready; while true; do sleep 1; done"#;

fn write_config(dir: &Path) -> PathBuf {
    let image = busybox_image();
    let mut c = format!("version = 1\nname = \"shutdown\"\n\n{}cmdline = \"quiet\"\n", kernel_toml());
    c.push_str(&format!("\n[host]\nshutdown-grace = \"{}s\"\n", GRACE.as_secs()));
    for (name, script) in [("polite", POLITE), ("stubborn", STUBBORN)] {
        c.push_str(&format!(
            "\n[[container]]\nname = \"{name}\"\nimage = \"{image}\"\ncommand = [\"/bin/sh\", \"-c\", '{script}']\n"
        ));
    }
    let path = dir.join("shutdown.toml");
    std::fs::write(&path, c).unwrap();
    path
}

/// Wait until every one of `patterns` is on some console line (in any order).
fn wait_all(vm: &mut Vm, patterns: &[&str], timeout: Duration, arch: Arch) {
    let what = format!("all of {patterns:?}");
    wait_until(vm, &what, timeout, arch, |lines| patterns.iter().all(|p| lines.iter().any(|l| l.text.contains(p))));
}

/// The first console line containing `pattern`.
fn line<'a>(lines: &'a [Line], pattern: &str, arch: Arch, console: &str) -> &'a Line {
    &lines[first_line(lines, pattern, arch, console)]
}

fn power_button_stops_gracefully(arch: Arch) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path());
    let b = build(&cfg.to_string_lossy(), arch, &format!("shutdown-{arch}-{}", std::process::id()));
    let vm_cfg = tcg_disk(arch, &b.img);
    let mut vm = Vm::start(&vm_cfg).expect("start QEMU");
    wait_all(&mut vm, &["polite| ready", "stubborn| ready"], Duration::from_secs(300), arch);
    let console = vm.console();
    let found = console.lines().find(|l| l.contains("keel: power button: event")).map(str::to_owned);
    let found = found.unwrap_or_else(|| panic!("{arch}: keel-init found no power button:\n{console}"));

    let pressed = vm.started().elapsed();
    vm.powerdown().expect("QMP system_powerdown");
    let status = vm.wait_exit(Duration::from_secs(120)).expect("the guest powers off");
    let _ = std::fs::remove_dir_all(&b.dir);
    let lines = vm.lines();
    let console = vm.console();
    assert!(status.success(), "{arch}: QEMU exited with {status}:\n{console}");

    let button = line(&lines, "keel: power button pressed: stopping containers", arch, &console);
    let term = line(
        &lines,
        &format!("keel: sending SIGTERM to polite, stubborn; SIGKILL in {} s", GRACE.as_secs()),
        arch,
        &console,
    );
    line(&lines, "polite| got SIGTERM", arch, &console);
    line(&lines, "stubborn| ignoring SIGTERM", arch, &console);
    let polite = line(&lines, "keel: container polite exited with status 0", arch, &console);
    let kill = line(
        &lines,
        &format!("keel: container stubborn still running {} s after SIGTERM: sending SIGKILL", GRACE.as_secs()),
        arch,
        &console,
    );
    let stubborn = line(&lines, "keel: container stubborn killed by signal SIGKILL", arch, &console);
    let off = line(&lines, POWER_DOWN_LINE, arch, &console);
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

#[test]
fn power_button_stops_gracefully_x86_64() {
    power_button_stops_gracefully(Arch::X86_64);
}

#[test]
fn power_button_stops_gracefully_aarch64() {
    power_button_stops_gracefully(Arch::Aarch64);
}
