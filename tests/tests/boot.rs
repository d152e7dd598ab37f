//! Boot tests: configs/hello.toml, built as a disk image, booted through UEFI firmware (OVMF on
//! x86_64, AAVMF on aarch64) under QEMU with TCG. The greeting, the container's exit status and
//! a clean power-off must all appear on the serial console.

use std::time::Duration;

use keel_plan::Arch;
use keel_tests::hello;

const GREETING: &str = "Hello from keel!";

fn boot_hello(arch: Arch) {
    let b = hello(arch);
    let cfg = keel_tests::tcg_disk(arch, &b.img);
    let outcome = keel_qemu::run_to_exit(&cfg, Duration::from_secs(300)).expect("boot");
    let console = &outcome.console;
    let greeting = outcome
        .lines
        .iter()
        .find(|l| l.text.contains(GREETING))
        .unwrap_or_else(|| panic!("{arch}: no greeting on the console:\n{console}"));
    // The greeting comes from the container, prefixed with its name, and it ran as pid 1 of its
    // own pid namespace with the container's host name.
    assert!(greeting.text.contains("hello"), "{arch}: greeting not prefixed: {}", greeting.text);
    assert!(greeting.text.contains("pid 1"), "{arch}: container is not pid 1 of its namespace: {}", greeting.text);
    assert!(greeting.text.contains("in hello"), "{arch}: container host name not set: {}", greeting.text);
    let uname = match arch {
        Arch::X86_64 => "x86_64",
        Arch::Aarch64 => "aarch64",
    };
    assert!(greeting.text.contains(uname), "{arch}: greeting from the wrong machine: {}", greeting.text);
    assert!(console.contains("container hello exited with status 0"), "{arch}: no exit status report:\n{console}");
    for event in [
        "init-start",
        "modules-loaded",
        "disks-mounted",
        "container-start hello",
        "container-first-output hello",
        "shutdown-begin",
        "shutdown-end",
    ] {
        assert!(
            outcome.lines.iter().any(|l| l.text.starts_with(keel_plan::TIMELINE_PREFIX) && l.text.contains(event)),
            "{arch}: no `{event}` in the boot timeline:\n{console}"
        );
    }
    assert!(outcome.clean_poweroff, "{arch}: the guest did not power off cleanly:\n{console}");
    eprintln!("{arch}: booted, greeted and powered off in {:.1}s", outcome.wall.as_secs_f64());
}

#[test]
fn hello_boots_x86_64() {
    boot_hello(Arch::X86_64);
}

#[test]
fn hello_boots_aarch64() {
    boot_hello(Arch::Aarch64);
}
