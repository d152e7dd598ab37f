//! PID 1 steadiness: 200 crash-and-restart cycles of one container leave keel-init's resident
//! memory, open descriptors and mounts where they were, and the container's log files on keel-data
//! stay bounded and rotated.
//!
//! `crashy` writes a line to stdout and one to stderr and exits 1, restarted at once
//! (`restart-delay` = `restart-max-delay` = 10 ms), with a writable root (an overlay on a tmpfs
//! made and detached by keel-runtime at every start). keel-init says its own figures at restart 1
//! and every 50th: `keel: init: rss N KiB, F fds, M mounts (restart K of crashy)`. Logs are 4 KiB
//! × 3 files, so they rotate every ~30 cycles. After restart 200 the power button stops the
//! machine; the disk (booted in place) is then read with e2fsck and debugfs.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use keel_plan::Arch;
use keel_tests::scenario::{cat, fsck_clean, power_off, Scenario};
use keel_tests::{both_arches, debugfs, wait_until};

/// Restarts to go through.
const RESTARTS: u32 = 200;
/// Growth of init's RSS allowed between restart 50 and restart 200. Figures move by whole pages;
/// a leak of 1 KiB per restart would add 150 KiB over those 150 restarts.
const RSS_SLACK_KIB: u64 = 64;
/// `[host] log-size` and `log-files` of the config.
const LOG_SIZE: u64 = 4096;
const LOG_FILES: u32 = 3;

/// init's figures at a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Usage {
    rss_kib: u64,
    fds: u64,
    mounts: u64,
}

/// `keel: init: rss N KiB, F fds, M mounts (restart K of crashy)` lines, by K.
fn usage(console: &str) -> BTreeMap<u32, Usage> {
    let mut out = BTreeMap::new();
    for l in console.lines() {
        let Some(rest) = l.split_once("keel: init: rss ").map(|(_, r)| r.trim_end()) else { continue };
        let nums: Vec<u64> = rest
            .split(|c: char| !c.is_ascii_digit())
            .filter(|w| !w.is_empty())
            .filter_map(|w| w.parse().ok())
            .collect();
        if let ([rss_kib, fds, mounts, k], true) = (nums.as_slice(), rest.ends_with("of crashy)")) {
            out.insert(*k as u32, Usage { rss_kib: *rss_kib, fds: *fds, mounts: *mounts });
        }
    }
    out
}

/// A log record: `2025-01-31T12:00:00.123Z STREAM text`.
fn check_record(line: &str) -> Result<(&str, &str), String> {
    let (time, rest) = line.split_once(' ').ok_or("no space")?;
    let b = time.as_bytes();
    let shape = b.len() == 24
        && time.chars().enumerate().all(|(i, c)| match i {
            4 | 7 => c == '-',
            10 => c == 'T',
            13 | 16 => c == ':',
            19 => c == '.',
            23 => c == 'Z',
            _ => c.is_ascii_digit(),
        });
    if !shape {
        return Err(format!("`{time}` is not an RFC 3339 UTC time with milliseconds"));
    }
    let (stream, text) = rest.split_once(' ').ok_or("no stream")?;
    if !["out", "err", "keel"].contains(&stream) {
        return Err(format!("unknown stream `{stream}`"));
    }
    Ok((stream, text))
}

fn pid1_is_steady_over_200_restarts(arch: Arch) {
    let s =
        Scenario::new("steady", arch, &[("log_size", &LOG_SIZE.to_string()), ("log_files", &LOG_FILES.to_string())]);
    let started = Instant::now();
    // Boot the built image itself, so its keel-data can be read afterwards.
    let mut vm = s.start(true);
    let last = format!("(restart {RESTARTS} of crashy)");
    wait_until(&mut vm, &format!("restart {RESTARTS}"), Duration::from_secs(1500), arch, |lines| {
        lines.iter().any(|l| l.text.contains(&last))
    });
    let cycles_took = started.elapsed();
    let console = power_off(vm, arch).console;

    let exits = console.matches("keel: container crashy exited with status 1").count();
    assert!(exits >= RESTARTS as usize, "{arch}: crashy exited {exits} times:\n{console}");
    assert!(!console.contains("failed to restart"), "{arch}: a restart failed:\n{console}");
    assert!(!console.contains("keel: log file"), "{arch}: a log file failed:\n{console}");

    // init's own figures: flat between restart 50 and restart 200.
    let u = usage(&console);
    let at: Vec<u32> = u.keys().copied().collect();
    assert_eq!(at, [1, 50, 100, 150, 200], "{arch}: usage reports at {at:?}:\n{console}");
    let (mid, end) = (u[&50], u[&RESTARTS]);
    assert_eq!(mid.fds, end.fds, "{arch}: init's open descriptors changed: {u:?}");
    assert_eq!(mid.mounts, end.mounts, "{arch}: init's mounts changed: {u:?}");
    assert!(
        end.rss_kib <= mid.rss_kib + RSS_SLACK_KIB,
        "{arch}: init's RSS grew from {} KiB to {} KiB (bound {RSS_SLACK_KIB} KiB): {u:?}",
        mid.rss_kib,
        end.rss_kib
    );
    // No leak in the first 50 either: descriptors and mounts as at the first restart.
    assert_eq!((u[&1].fds, u[&1].mounts), (end.fds, end.mounts), "{arch}: {u:?}");

    // The log files: clean filesystem, LOG_FILES files, each within LOG_SIZE, well-formed.
    let fs = s.keel_data(None);
    fsck_clean(&fs, arch);
    let (listing, err) = debugfs(&fs, "ls -p /logs");
    // `ls -p`: /inode/mode/uid/gid/name/size/
    let files: BTreeMap<String, u64> = listing
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.trim().trim_matches('/').split('/').collect();
            let (name, size) = (f.get(4)?, f.get(5)?.parse().ok()?);
            name.starts_with("crashy.log").then(|| (name.to_string(), size))
        })
        .collect();
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(names, ["crashy.log", "crashy.log.1", "crashy.log.2"], "{arch}: /logs holds:\n{listing}{err}");
    for (name, size) in &files {
        assert!(*size <= LOG_SIZE, "{arch}: {name} is {size} bytes, over log-size {LOG_SIZE}");
    }
    // Full files were rotated: each within one cycle's records of the bound.
    for name in ["crashy.log.1", "crashy.log.2"] {
        assert!(files[name] > LOG_SIZE - 300, "{arch}: {name} is {} bytes: rotated early?", files[name]);
    }
    let (older, _) = cat(&fs, "/logs/crashy.log.2");
    let (newer, _) = cat(&fs, "/logs/crashy.log.1");
    let (current, _) = cat(&fs, "/logs/crashy.log");
    let mut streams = BTreeMap::<String, usize>::new();
    let mut times = Vec::new();
    for l in older.lines().chain(newer.lines()).chain(current.lines()) {
        let (stream, text) = check_record(l).unwrap_or_else(|e| panic!("{arch}: bad log record `{l}`: {e}"));
        let want = match stream {
            "out" => "start",
            "err" => "oops",
            _ => "container crashy exited with status 1",
        };
        assert_eq!(text, want, "{arch}: log record `{l}`");
        *streams.entry(stream.to_string()).or_default() += 1;
        times.push(l.get(..23).unwrap_or_default().to_string());
    }
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{arch}: log records out of order across rotated files");
    let kept = streams.get("keel").copied().unwrap_or(0);
    // Two full files and a started one, at most ~200 bytes per cycle.
    assert!(kept >= 30, "{arch}: only {kept} exits kept in the logs: {streams:?}");
    for s in ["out", "err"] {
        let n = streams.get(s).copied().unwrap_or(0);
        assert!(n + 1 >= kept && n <= kept + 1, "{arch}: {n} `{s}` records for {kept} exits: {streams:?}");
    }

    eprintln!(
        "{arch}: {exits} runs of crashy in {:.1} s of wall time; init at restart 1/50/100/150/200: {}; log files \
         {files:?}, {} records kept ({streams:?}), first {} last {}",
        cycles_took.as_secs_f64(),
        u.values()
            .map(|v| format!("{} KiB {} fds {} mounts", v.rss_kib, v.fds, v.mounts))
            .collect::<Vec<_>>()
            .join(" / "),
        streams.values().sum::<usize>(),
        times.first().map(String::as_str).unwrap_or("-"),
        times.last().map(String::as_str).unwrap_or("-"),
    );
}

both_arches!(pid1_is_steady_over_200_restarts);
