//! PID 1 against two colluding containers (x86_64; tests/scenarios/colluders.toml), issue 12
//! finding 1. `passer` passes its stdout pipe to `writer` over a unix socket on a shared volume
//! and exits while `writer` fills the pipe as fast as it can. When keel-init reaps `passer` it
//! drains that pipe at most 1 MiB and 200 ms, then closes it. So:
//! - keel-init says the passer's output was still held open and closed it, and the writer's next
//!   write fails with EPIPE within [`CUT_BOUND`] of the passer leaving, long before its 20 s;
//! - `beat` keeps its 500 ms beat: its log records, stamped by keel-init as it reads each line,
//!   are never more than [`BEAT_BOUND`] apart around the collusion;
//! - `crash` keeps its restart schedule (1 s, then 2 s) within [`RESTART_BOUND`], across it;
//! - the guest powers off cleanly.
//!
//! Each figure is printed: the worst beat gap is PID 1's worst stall plus the 500 ms beat.

use std::time::Duration;

use keel_plan::Arch;
use keel_tests::scenario::{cat, fsck_clean, power_off, Scenario};
use keel_tests::{record_ms, timeline, wait_until};

/// The worst gap allowed between two beats (500 ms apart when nothing is late).
const BEAT_BOUND: Duration = Duration::from_millis(2500);
/// The worst interval allowed between two starts of `crash` (restart-max-delay is 2 s).
const RESTART_BOUND: f64 = 4.0;
/// From the passer hanging up to the writer's EPIPE: the reap, the 200 ms drain, the close.
const CUT_BOUND: Duration = Duration::from_secs(2);
/// Bytes the writer may put into the pipe after the passer left: the drain's 1 MiB, the pipe's
/// 64 KiB, and what keel-init reads in the wakeups before the reap (64 KiB each), with room.
const AFTER_LEFT_BOUND: u64 = 2 << 20;
/// How long the writer writes if nothing cuts it (`write-passed … 20` in the scenario).
const WRITER_SECONDS: u64 = 20;
/// The line keel-init prints when it cut the passer's pipe.
const CUT_LINE: &str = "keel: container passer: its output is still held open by another process; closed";

/// The times of the records of `log` whose text contains `text`.
fn times(log: &str, text: &str) -> Vec<i64> {
    log.lines().filter(|l| l.contains(text)).filter_map(record_ms).collect()
}

/// The value of `key=` in the writer's summary line.
fn field<'a>(summary: &'a str, key: &str) -> Option<&'a str> {
    summary.split(' ').find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

#[test]
fn pid1_cuts_a_pipe_passed_between_colluders() {
    let arch = Arch::X86_64;
    let s = Scenario::new("colluders", arch, &[]);
    let mut vm = s.start(true);
    // keel's own lines always reach the console (container lines are what it drops). The writer
    // stops at its first EPIPE, or after 20 s if nothing cuts the pipe.
    wait_until(&mut vm, "writer to finish", Duration::from_secs(600), arch, |lines| {
        lines.iter().any(|l| l.text.contains("keel: container writer exited"))
    });
    // Three more starts of `crash` after the writer ended, so its schedule is seen on both sides.
    wait_until(&mut vm, "three starts of crash after the writer", Duration::from_secs(60), arch, |lines| {
        let exit = timeline(lines, "container-exit", "writer").first().copied().unwrap_or(f64::MAX);
        timeline(lines, "container-start", "crash").iter().filter(|t| **t > exit).count() >= 3
    });
    let run = power_off(vm, arch);
    let console = &run.console;

    let fs = s.keel_data(None);
    fsck_clean(&fs, arch);
    let log = |name: &str| {
        let (cur, _) = cat(&fs, &format!("/logs/{name}.log"));
        let (old, _) = cat(&fs, &format!("/logs/{name}.log.1"));
        format!("{old}{cur}")
    };
    let writer = log("writer");
    let (started, summary) =
        (times(&writer, "probe: write-passed got a descriptor"), times(&writer, "write-passed wrote="));
    let ([started], [ended]) = (started.as_slice(), summary.as_slice()) else {
        panic!("{arch}: the writer's log lacks its start or its summary:\n{writer}")
    };
    let (started, ended) = (*started, *ended);
    let summary = writer.lines().find(|l| l.contains("write-passed wrote=")).unwrap_or_default();
    let num = |key: &str| field(summary, key).and_then(|v| v.parse::<u64>().ok());
    let end = field(summary, "end").unwrap_or("none");

    // The beat, from 3 s before the flood began to 3 s after the writer stopped.
    let beats = times(&log("beat"), " out beat");
    let window: Vec<i64> = beats.iter().copied().filter(|t| *t >= started - 3_000 && *t <= ended + 3_000).collect();
    let worst = window.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(i64::MAX);

    let starts = timeline(&run.lines, "container-start", "crash");
    let worst_restart = starts.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    let passer_exit = run.timeline("container-exit", "passer").first().copied().unwrap_or(f64::NAN);
    let across = starts.windows(2).find(|w| w[0] <= passer_exit && passer_exit < w[1]).map(|w| w[1] - w[0]);
    println!(
        "{arch}: writer: {} bytes, end {end} at {} ms, passer left at {} ms, {} bytes after it left, cut {} ms \
         after it left; beat: {} beats over {:.1} s, worst gap {worst} ms (beat every 500 ms); crash: {} starts, \
         worst interval {worst_restart:.2} s, {} s across the passer's exit (delay 1-2 s)",
        num("wrote").unwrap_or(0),
        field(summary, "end_ms").unwrap_or("none"),
        field(summary, "passer_left_ms").unwrap_or("none"),
        field(summary, "after_left").unwrap_or("none"),
        field(summary, "cut_after_left_ms").unwrap_or("none"),
        window.len(),
        (ended - started + 6_000) as f64 / 1000.0,
        starts.len(),
        across.map_or("no interval".to_string(), |a| format!("{a:.2}")),
    );

    assert!(window.len() >= 8, "{arch}: too few beats in the window: {window:?}");
    assert!(worst <= BEAT_BOUND.as_millis() as i64, "{arch}: the heartbeat was late by {worst} ms:\n{console}");
    assert!(across.is_some(), "{arch}: no two starts of crash around the passer's exit ({passer_exit}): {starts:?}");
    assert!(starts.len() >= 5 && worst_restart < RESTART_BOUND, "{arch}: crash's starts: {starts:?}");

    run.expect("keel: container passer exited with status 0");
    run.expect(CUT_LINE);
    assert_eq!(run.count(CUT_LINE), 1, "{arch}: the cut was said more than once:\n{console}");
    assert!(log("passer").contains(&CUT_LINE["keel: ".len()..]), "{arch}: the cut is not in passer's log");
    assert_eq!(end, "EPIPE", "{arch}: the writer was not cut off: {summary}");
    let cut_ms = num("cut_after_left_ms").unwrap_or(u64::MAX);
    assert!(
        cut_ms <= CUT_BOUND.as_millis() as u64,
        "{arch}: the cut came {cut_ms} ms after the passer left: {summary}"
    );
    assert!(num("end_ms").unwrap_or(u64::MAX) < WRITER_SECONDS * 1000, "{arch}: {summary}");
    let after = num("after_left").unwrap_or(u64::MAX);
    assert!(after <= AFTER_LEFT_BOUND, "{arch}: {after} bytes went in after the passer left: {summary}");
    run.expect("keel: container writer exited with status 0");
}
