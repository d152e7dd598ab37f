//! Restart policies: keel-init starts a crashing `on-failure` container again after a backoff
//! that doubles (1 s, 2 s, 4 s, ...), reports the crash loop, and leaves a `restart = "no"`
//! container dead.
//!
//! `crashy` prints `start` and exits 3, forever; `once` prints `once` and exits 4. The test waits
//! for four starts of crashy and the crash-loop report, then presses the power button (QMP
//! `system_powerdown`): the pending restart is dropped and the machine powers off cleanly.

use std::path::{Path, PathBuf};
use std::time::Duration;

use keel_plan::Arch;
use keel_qemu::{Line, Vm, POWER_DOWN_LINE};
use keel_tests::{build, busybox_image, kernel_toml, tcg_disk, timeline, wait_until};

/// Starts of crashy to see before stopping the machine.
const STARTS: usize = 4;

fn write_config(dir: &Path) -> PathBuf {
    let image = busybox_image();
    let mut c = format!("version = 1\nname = \"restart\"\n\n{}cmdline = \"quiet\"\n", kernel_toml());
    c.push_str("\n[host]\non-exit = \"poweroff\"\nshutdown-grace = \"3s\"\n");
    for (name, script, restart) in [("crashy", "echo start; exit 3", "on-failure"), ("once", "echo once; exit 4", "no")]
    {
        c.push_str(&format!(
            "\n[[container]]\nname = \"{name}\"\nimage = \"{image}\"\ncommand = [\"/bin/sh\", \"-c\", \"{script}\"]\n\
             restart = \"{restart}\"\n"
        ));
    }
    let path = dir.join("restart.toml");
    std::fs::write(&path, c).unwrap();
    path
}

fn starts(lines: &[Line]) -> Vec<&Line> {
    lines.iter().filter(|l| l.text.trim_end().ends_with("crashy| start")).collect()
}

fn crashy_restarts_with_backoff(arch: Arch) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path());
    let b = build(&cfg.to_string_lossy(), arch, &format!("restart-{arch}-{}", std::process::id()));
    let vm_cfg = tcg_disk(arch, &b.img);
    let mut vm = Vm::start(&vm_cfg).expect("start QEMU");
    wait_until(&mut vm, "crash loop", Duration::from_secs(400), arch, |lines| {
        starts(lines).len() >= STARTS
            && lines.iter().any(|l| l.text.contains("keel: container crashy is crash-looping"))
    });
    vm.powerdown().expect("QMP system_powerdown");
    let status = vm.wait_exit(Duration::from_secs(120)).expect("the guest powers off");
    let _ = std::fs::remove_dir_all(&b.dir);
    let lines = vm.lines();
    let console = vm.console();
    assert!(status.success(), "{arch}: QEMU exited with {status}:\n{console}");
    assert!(lines.iter().any(|l| l.text.contains(POWER_DOWN_LINE)), "{arch}: no clean power-off:\n{console}");

    // crashy: restarted with a growing delay, announced, and reported as a crash loop once.
    let seen = starts(&lines);
    assert!(seen.len() >= STARTS, "{arch}: crashy started {} times:\n{console}", seen.len());
    // On the guest clock, from each exit to the next start: the backoff itself, 1 s, 2 s, 4 s...
    // (plus the time keel-runtime takes to start a container under TCG).
    let started = timeline(&lines, "container-start", "crashy");
    let exited = timeline(&lines, "container-exit", "crashy");
    assert_eq!(started.len(), seen.len(), "{arch}: one container-start event per start:\n{console}");
    let delays: Vec<f64> = exited.iter().zip(started.iter().skip(1)).map(|(e, s)| s - e).collect();
    assert_eq!(delays.len(), seen.len() - 1, "{arch}: a container-exit event per run:\n{console}");
    for (i, d) in delays.iter().enumerate() {
        let want = f64::from(1u32 << i);
        assert!(
            (want - 0.05..want + 1.5).contains(d),
            "{arch}: restart {} came {d:.3} s after the exit, want {want} s: {delays:.3?}\n{console}",
            i + 1
        );
    }
    // On the console (host arrival times, a line may be a little late): the gaps between starts
    // (run time plus backoff) grow, each at least the backoff.
    let gaps: Vec<f64> = seen.windows(2).map(|w| (w[1].at - w[0].at).as_secs_f64()).collect();
    for (i, g) in gaps.iter().enumerate() {
        assert!(
            *g >= f64::from(1u32 << i) - 0.3,
            "{arch}: console gaps {gaps:.2?} shorter than the backoff\n{console}"
        );
    }
    assert!(gaps.windows(2).all(|w| w[1] > w[0]), "{arch}: console gaps {gaps:.2?} do not grow\n{console}");
    for (k, delay) in [(1, 1), (2, 2), (3, 4)] {
        let want = format!("keel: container crashy restarting in {delay} s (restart {k})");
        assert!(console.contains(&want), "{arch}: no `{want}`:\n{console}");
    }
    assert_eq!(
        console.matches("keel: container crashy exited with status 3").count(),
        seen.len(),
        "{arch}: every run of crashy exits 3:\n{console}"
    );
    let loops: Vec<&str> = console.lines().filter(|l| l.contains("keel: container crashy is crash-looping")).collect();
    assert_eq!(loops.len(), 1, "{arch}: the crash loop is reported once:\n{console}");
    assert!(loops[0].contains(": 5 restarts in "), "{arch}: {}", loops[0]);

    // The stop drops the pending restart: no start after the power button.
    let pressed = lines.iter().position(|l| l.text.contains("keel: power button pressed")).unwrap_or_else(|| {
        panic!("{arch}: the power button press was not seen:\n{console}");
    });
    assert!(
        !lines[pressed..].iter().any(|l| l.text.contains("container-start crashy") || l.text.contains("crashy| start")),
        "{arch}: crashy restarted during the stop:\n{console}"
    );

    // once: ran once, exit status reported, never restarted.
    assert_eq!(console.matches("once| once").count(), 1, "{arch}: once ran more than once:\n{console}");
    assert!(
        console.contains("keel: container once exited with status 4"),
        "{arch}: no exit report of once:\n{console}"
    );
    assert!(!console.contains("container once restarting"), "{arch}: once was restarted:\n{console}");

    eprintln!(
        "{arch}: crashy started {} times; exit-to-restart on the guest clock {delays:.3?} s, start-to-start on the \
         console {gaps:.2?} s; {}",
        seen.len(),
        loops[0].trim()
    );
}

#[test]
fn on_failure_restarts_with_backoff_x86_64() {
    crashy_restarts_with_backoff(Arch::X86_64);
}

#[test]
fn on_failure_restarts_with_backoff_aarch64() {
    crashy_restarts_with_backoff(Arch::Aarch64);
}
