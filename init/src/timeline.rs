//! The boot timeline: machine-readable lines the builder's benchmarks and tests parse.
//!
//! `keel-timeline: <seconds since boot (CLOCK_BOOTTIME), 6 decimals> <event> [detail]`

use std::fmt;
use std::time::Duration;

use keel_plan::TIMELINE_PREFIX;
use keel_runtime::ExitStatus;

use crate::{console, sys};

/// A point of the boot worth timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// keel-init started.
    InitStart,
    /// Every module of the plan is loaded (how many).
    ModulesLoaded(usize),
    /// Images and data partitions are mounted.
    DisksMounted,
    /// The uplink's DHCP client sent its first DISCOVER.
    DhcpStart,
    /// The uplink got a DHCP lease.
    Lease,
    /// A container's process is running its command.
    ContainerStart(&'a str),
    /// A container wrote its first bytes.
    ContainerFirstOutput(&'a str),
    /// A container's first process ended: exit status, or the signal's name.
    ContainerExit(&'a str, ExitStatus),
    /// Shutdown started.
    ShutdownBegin,
    /// Just before the reboot system call.
    ShutdownEnd,
}

impl fmt::Display for Event<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::InitStart => f.write_str("init-start"),
            Event::ModulesLoaded(n) => write!(f, "modules-loaded {n}"),
            Event::DisksMounted => f.write_str("disks-mounted"),
            Event::DhcpStart => f.write_str("uplink-dhcp-start"),
            Event::Lease => f.write_str("uplink-lease"),
            Event::ContainerStart(name) => write!(f, "container-start {name}"),
            Event::ContainerFirstOutput(name) => write!(f, "container-first-output {name}"),
            Event::ContainerExit(name, status) => write!(f, "container-exit {name} {}", status.short()),
            Event::ShutdownBegin => f.write_str("shutdown-begin"),
            Event::ShutdownEnd => f.write_str("shutdown-end"),
        }
    }
}

/// The console line for `event` at `at` since boot.
pub fn line(at: Duration, event: &Event<'_>) -> String {
    format!("{TIMELINE_PREFIX} {}.{:06} {event}\n", at.as_secs(), at.subsec_micros())
}

/// Print `event`, stamped now.
pub fn mark(event: Event<'_>) {
    let at = sys::boottime();
    console::write(line(at, &event).as_bytes());
    // Kept for the API's /v1/host; never waited for (a reader may hold the lock).
    if let Ok(mut r) = RECORDED.try_lock() {
        if r.len() < RECORD_MAX {
            r.push((at, event.to_string()));
        }
    }
}

/// The first marks kept for the API.
const RECORD_MAX: usize = 64;
static RECORDED: std::sync::Mutex<Vec<(Duration, String)>> = std::sync::Mutex::new(Vec::new());

/// The first [`RECORD_MAX`] marks, with their times since boot.
pub fn recorded() -> Vec<(Duration, String)> {
    match RECORDED.lock() {
        Ok(r) => r.clone(),
        Err(p) => p.into_inner().clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let at = Duration::from_micros(1_234_567);
        assert_eq!(line(at, &Event::InitStart), "keel-timeline: 1.234567 init-start\n");
        assert_eq!(
            line(Duration::from_millis(50), &Event::ModulesLoaded(14)),
            "keel-timeline: 0.050000 modules-loaded 14\n"
        );
        assert_eq!(line(at, &Event::ContainerStart("web")), "keel-timeline: 1.234567 container-start web\n");
        assert_eq!(
            line(at, &Event::ContainerExit("web", ExitStatus::Exited(0))),
            "keel-timeline: 1.234567 container-exit web 0\n"
        );
        assert_eq!(
            line(at, &Event::ContainerExit("web", ExitStatus::Signaled(9))),
            "keel-timeline: 1.234567 container-exit web SIGKILL\n"
        );
    }

    #[test]
    fn lines_parse_like_the_benchmark_parses_them() {
        let l = line(Duration::new(12, 5_000), &Event::ContainerFirstOutput("hello"));
        let rest = l.split(TIMELINE_PREFIX).nth(1).unwrap();
        let mut w = rest.split_whitespace();
        assert_eq!(w.next().and_then(|t| t.parse::<f64>().ok()), Some(12.000005));
        assert_eq!(w.next(), Some("container-first-output"));
        assert_eq!(w.next(), Some("hello"));
    }
}
