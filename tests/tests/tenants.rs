//! PID 1 under hostile tenants (x86_64; tests/scenarios/tenants.toml). While `flood` writes as
//! fast as its half CPU lets it, `fill` fills keel-data through a volume until ENOSPC (and frees
//! it 15 s later), and `stopper` SIGSTOPs every other process in its pid namespace, health checks
//! included:
//! - `beat` keeps its 500 ms beat: its log records, stamped by keel-init as it reads each line,
//!   are never more than [`BEAT_BOUND`] apart, and they go on while keel-data is full;
//! - `crash` keeps its restart schedule (1 s, then 2 s) within [`RESTART_BOUND`];
//! - the console says how many container lines it dropped, and no log file write failed;
//! - the stopped checks are failed and killed at their timeout, not waited for.
//!
//! QEMU's console is read at [`SERIAL_LINE`] bytes a second, the speed of the 115200-baud line
//! keel's console runs on, so a guest that waits for the console waits here too.
//!
//! Each figure is printed: the worst beat gap is PID 1's worst stall plus the 500 ms beat.

use std::time::Duration;

use keel_plan::Arch;
use keel_qemu::Vm;
use keel_tests::scenario::{cat, fsck_clean, power_off, Scenario};
use keel_tests::{record_ms, timeline, wait_until};

/// The worst gap allowed between two beats (500 ms apart when nothing is late).
const BEAT_BOUND: Duration = Duration::from_millis(2500);
/// What a 115200-baud serial line carries per second (8N1: ten bits a byte).
const SERIAL_LINE: u32 = 11_520;
/// The worst interval allowed between two starts of `crash` (restart-max-delay is 2 s).
const RESTART_BOUND: f64 = 4.0;

/// The times of the records of `log` whose text is `text`.
fn times(log: &str, text: &str) -> Vec<i64> {
    log.lines().filter(|l| l.ends_with(text)).filter_map(record_ms).collect()
}

#[test]
fn pid1_keeps_time_under_hostile_tenants() {
    let arch = Arch::X86_64;
    let s = Scenario::new("tenants", arch, &[]);
    // The console drains as a 115200-baud line does, so a console write that waits for the line
    // stalls PID 1 here as it would on hardware (QEMU's UART is otherwise as fast as its reader).
    let mut cfg = s.vm_config(s.img(), true);
    cfg.serial_rate = Some(SERIAL_LINE);
    let mut vm = Vm::start(&cfg).expect("start QEMU");
    // keel's own lines always reach the console (container lines are what it drops).
    wait_until(&mut vm, "fill to finish", Duration::from_secs(600), arch, |lines| {
        lines.iter().any(|l| l.text.contains("keel: container fill exited"))
    });
    let run = power_off(vm, arch);
    let console = &run.console;
    let dropped = console.lines().filter(|l| l.contains("keel: console: ") && l.contains("dropped")).count();
    assert!(dropped > 0, "{arch}: the flood dropped no console line, or it was not said:\n{console}");
    assert!(!console.contains("keel: log file"), "{arch}: a log file write failed:\n{console}");

    let fs = s.keel_data(None);
    fsck_clean(&fs, arch);
    let log = |name: &str| {
        let (cur, _) = cat(&fs, &format!("/logs/{name}.log"));
        let (old, _) = cat(&fs, &format!("/logs/{name}.log.1"));
        format!("{old}{cur}")
    };
    let fill = log("fill");
    assert!(fill.contains("No space left on device"), "{arch}: fill never reached ENOSPC:\n{fill}");
    let (full, freed) = (times(&fill, " out FILL-FULL"), times(&fill, " out FILL-FREED"));
    let ([full], [freed]) = (full.as_slice(), freed.as_slice()) else {
        panic!("{arch}: fill's log lacks FILL-FULL or FILL-FREED:\n{fill}")
    };
    let (full, freed) = (*full, *freed);

    // The beat, over the whole hostile stretch: from fill's start (10 s after boot) to its end.
    let beats = times(&log("beat"), " out beat");
    let window: Vec<i64> = beats.iter().copied().filter(|t| *t >= full - 12_000 && *t <= freed + 5_000).collect();
    let worst = window.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(i64::MAX);
    let while_full = beats.iter().filter(|&&t| t > full && t < freed).count();
    // Before fill starts (it sleeps 10 s first), only flood and stopper are at work.
    let first = beats.first().copied().unwrap_or(0);
    let early: Vec<i64> = beats.iter().copied().filter(|t| *t < first + 9_000).collect();
    let worst_early = early.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    // The same figures for the stretch when keel-data was full (flood and stopper still on).
    let full_window: Vec<i64> = beats.iter().copied().filter(|t| *t >= full && *t <= freed).collect();
    let worst_full = full_window.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    // keel's own records while keel-data was full: crash's exits.
    let crash_notes = times(&log("crash"), "exited with status 1");
    let notes_while_full = crash_notes.iter().filter(|t| **t > full && **t < freed).count();
    let full_notes: Vec<i64> = crash_notes.iter().copied().filter(|t| *t > full && *t < freed).collect();
    let worst_exit_full = full_notes.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);

    let starts: Vec<f64> = timeline(&run.lines, "container-start", "crash");
    let worst_restart = starts.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    let checks_failed = console.matches("keel: container stopper failed its health check").count();
    println!(
        "{arch}: {} beats over {:.1} s, worst gap {worst} ms (beat every 500 ms), {while_full} while keel-data was \
         full ({:.1} s); crash: {} starts, worst interval {worst_restart:.2} s (delay 1-2 s), {notes_while_full} \
         exit notes logged while full, at most {worst_exit_full} ms apart; worst beat gap before the fill \
         {worst_early} ms, while keel-data was full {worst_full} ms; stopper: {checks_failed} checks failed; console: {dropped} drop report(s)",
        window.len(),
        (freed - full) as f64 / 1000.0 + 17.0,
        (freed - full) as f64 / 1000.0,
        starts.len(),
    );
    assert!(window.len() >= 20, "{arch}: too few beats in the window: {window:?}");
    assert!(worst <= BEAT_BOUND.as_millis() as i64, "{arch}: the heartbeat was late by {worst} ms:\n{console}");
    assert!(while_full >= 10, "{arch}: only {while_full} beats logged while keel-data was full");
    assert!(notes_while_full >= 2, "{arch}: keel's notes stopped while keel-data was full:\n{}", log("crash"));
    assert!(starts.len() >= 10 && worst_restart < RESTART_BOUND, "{arch}: crash's starts: {starts:?}");
    assert!(checks_failed >= 3, "{arch}: stopper's checks did not fail:\n{console}");
}
