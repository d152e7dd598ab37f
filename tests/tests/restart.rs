//! Restart policies: keel-init starts a crashing `on-failure` container again after a backoff
//! that doubles (1 s, 2 s, 4 s, ...), reports the crash loop, and leaves a `restart = "no"`
//! container dead.
//!
//! `crashy` prints `start` and exits 3, forever; `once` prints `once` and exits 4. The test waits
//! for four starts of crashy and the crash-loop report, then presses the power button (QMP
//! `system_powerdown`): the pending restart is dropped and the machine powers off cleanly.

use std::time::Duration;

use keel_plan::Arch;
use keel_qemu::Line;
use keel_tests::scenario::{power_off, Scenario};
use keel_tests::{both_arches, wait_until};

/// Starts of crashy to see before stopping the machine.
const STARTS: usize = 4;

fn starts(lines: &[Line]) -> Vec<&Line> {
    lines.iter().filter(|l| l.text.trim_end().ends_with("crashy| start")).collect()
}

fn on_failure_restarts_with_backoff(arch: Arch) {
    let s = Scenario::new("restart", arch, &[]);
    let mut vm = s.start(false);
    wait_until(&mut vm, "crash loop", Duration::from_secs(400), arch, |lines| {
        starts(lines).len() >= STARTS
            && lines.iter().any(|l| l.text.contains("keel: container crashy is crash-looping"))
    });
    let run = power_off(vm, arch);
    let (lines, console) = (&run.lines, &run.console);

    // crashy: restarted with a growing delay, announced, and reported as a crash loop once.
    let seen = starts(lines);
    assert!(seen.len() >= STARTS, "{arch}: crashy started {} times:\n{console}", seen.len());
    // On the guest clock, from each exit to the next start: the backoff itself, 1 s, 2 s, 4 s...
    // (plus the time keel-runtime takes to start a container under TCG).
    let started = run.timeline("container-start", "crashy");
    let exited = run.timeline("container-exit", "crashy");
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
    let pressed = run.first("keel: power button pressed");
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

both_arches!(on_failure_restarts_with_backoff);
