//! Hostile workloads for the side-by-side boot test: a fork bomb, a memory hog and a CPU
//! spinner. Each is bounded so that running one by mistake on a build host does no harm.

use std::hint::black_box;
use std::time::Duration;

use crate::cgroup;
use crate::child;
use crate::report::say;
use crate::sys;

/// The fork bomb stops here even if nothing stops it first (a host without a pids limit).
const MAX_CHILDREN: usize = 1024;
/// How often the fork bomb retries while it holds.
const RETRY_EVERY: Duration = Duration::from_millis(100);
/// The hog allocates in chunks of this size.
const MIB: usize = 1 << 20;
/// It reports every this many MiB (often enough to show its size near a 32 MiB limit).
const REPORT_EVERY_MIB: usize = 4;
/// And stops growing (and holds) here if nothing kills it first.
const HOG_CAP_MIB: usize = 1024;

/// `fork-bomb SECONDS`: forks sleeping children until fork fails, holds the pressure for
/// `seconds` (one more fork every 100 ms), then kills and reaps them. Returns the exit code.
pub fn fork_bomb(seconds: u64) -> i32 {
    let mut children = Vec::new();
    let stop = loop {
        if children.len() >= MAX_CHILDREN {
            break format!("cap of {MAX_CHILDREN} children");
        }
        match child::spawn_sleeper() {
            Ok(pid) => children.push(pid),
            Err(e) => break e.name(),
        }
    };
    say(&format!(
        "fork-bomb stopped at {} processes ({stop}) pids.max={} pids.events.max={}",
        children.len() + 1,
        cgroup::word("pids.max"),
        cgroup::keyed("pids.events", "max"),
    ));
    let end = sys::monotonic().saturating_add(Duration::from_secs(seconds));
    let (mut retries, mut failures) = (0u64, 0u64);
    while sys::monotonic() < end {
        let _ = sys::nanosleep(RETRY_EVERY);
        retries += 1;
        match child::spawn_sleeper() {
            Ok(pid) if children.len() < MAX_CHILDREN => children.push(pid),
            Ok(pid) => child::kill_all(&[pid]),
            Err(_) => failures += 1,
        }
    }
    say(&format!(
        "fork-bomb held {seconds}s: {retries} retries, {failures} failed, {} processes, pids.events.max={}",
        children.len() + 1,
        cgroup::keyed("pids.events", "max"),
    ));
    child::kill_all(&children);
    reap_orphans();
    say("fork-bomb done");
    0
}

/// As pid 1, reaps anything else that ended (orphans are reparented to us).
fn reap_orphans() {
    while let Ok((pid, _)) = sys::waitpid(-1, libc::WNOHANG) {
        if pid == 0 {
            break;
        }
    }
}

/// `hog`: allocates and touches memory 1 MiB at a time until killed (the memory limit's OOM
/// kill). It never exits by itself: an allocation failure is reported and retried after a pause.
pub fn hog() -> ! {
    say(&format!("hog start memory.max={}", cgroup::word("memory.max")));
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let mut last_failure = None;
    loop {
        if chunks.len() >= HOG_CAP_MIB {
            say(&format!("hog reached its cap of {HOG_CAP_MIB} MiB without being killed; holding"));
            child::sleep_forever();
        }
        match grow(&mut chunks) {
            Ok(()) => {
                if chunks.len().is_multiple_of(REPORT_EVERY_MIB) {
                    say(&format!("hog {} MiB", chunks.len()));
                }
            }
            Err(what) => {
                if last_failure != Some(chunks.len()) {
                    say(&format!("hog allocation failed at {} MiB ({what}); retrying", chunks.len()));
                    last_failure = Some(chunks.len());
                }
                let _ = sys::nanosleep(Duration::from_secs(1));
            }
        }
    }
}

/// Adds one touched 1 MiB chunk (every byte written, so every page is really backed).
fn grow(chunks: &mut Vec<Vec<u8>>) -> Result<(), &'static str> {
    chunks.try_reserve(1).map_err(|_| "chunk list")?;
    let mut chunk = Vec::new();
    chunk.try_reserve_exact(MIB).map_err(|_| "1 MiB chunk")?;
    chunk.resize(MIB, 0xa5);
    chunks.push(black_box(chunk));
    Ok(())
}

/// `spin SECONDS`: busy-loops for `seconds` of wall time, then reports the CPU share it got.
pub fn spin(seconds: u64) -> i32 {
    let target = Duration::from_secs(seconds);
    let start = sys::monotonic();
    let cpu_start = sys::process_cpu();
    let mut x = 1u64;
    while sys::monotonic().saturating_sub(start) < target {
        for _ in 0..10_000 {
            x = black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407));
        }
    }
    let wall = sys::monotonic().saturating_sub(start);
    let cpu = sys::process_cpu().saturating_sub(cpu_start);
    let share = if wall.is_zero() { 0.0 } else { cpu.as_secs_f64() / wall.as_secs_f64() };
    say(&format!(
        "spin share={share:.3} cpu_usec={} wall_usec={} cpu.max={} nr_throttled={} throttled_usec={}",
        cpu.as_micros(),
        wall.as_micros(),
        cgroup::word("cpu.max"),
        cgroup::keyed("cpu.stat", "nr_throttled"),
        cgroup::keyed("cpu.stat", "throttled_usec"),
    ));
    0
}
