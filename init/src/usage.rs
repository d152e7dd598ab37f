//! keel-init's own resource use, to show that PID 1 does not leak: resident memory (`VmRSS` of
//! /proc/self/status), open descriptors (/proc/self/fd) and mounts (/proc/self/mountinfo).
//!
//! The supervisor says it at a container's first restart and every [`EVERY`]th after that, so a
//! crash-looping container (the case where a leak per restart would add up) shows init's figures
//! staying flat: `keel: init: rss 1234 KiB, 9 fds, 14 mounts (restart 50 of web)`.

use std::fmt;
use std::fs;
use std::io;
use std::path::Path;

/// Said at a container's restart 1, EVERY, 2 × EVERY, …
pub const EVERY: u32 = 50;

/// Whether a container's restart number `count` (1 for the first) is one to report at.
pub fn due(count: u32) -> bool {
    count == 1 || count.is_multiple_of(EVERY)
}

/// What init uses; `None` where /proc could not tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Resident set size, KiB.
    pub rss_kib: Option<u64>,
    /// Open file descriptors.
    pub fds: Option<usize>,
    /// Mounts in init's mount namespace.
    pub mounts: Option<usize>,
}

impl Usage {
    /// Init's figures now.
    pub fn now() -> Usage {
        let proc = Path::new("/proc/self");
        Usage {
            rss_kib: fs::read_to_string(proc.join("status")).ok().as_deref().and_then(rss_kib),
            // The directory being read holds a descriptor of its own while it is listed.
            fds: entries(&proc.join("fd")).ok().map(|n| n.saturating_sub(1)),
            mounts: fs::read_to_string(proc.join("mountinfo")).ok().map(|t| t.lines().count()),
        }
    }
}

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: Option<String>| v.unwrap_or_else(|| "?".into());
        write!(
            f,
            "rss {} KiB, {} fds, {} mounts",
            show(self.rss_kib.map(|n| n.to_string())),
            show(self.fds.map(|n| n.to_string())),
            show(self.mounts.map(|n| n.to_string()))
        )
    }
}

/// `VmRSS:` of a /proc/PID/status text, in KiB.
pub fn rss_kib(status: &str) -> Option<u64> {
    let rest = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let mut words = rest.split_whitespace();
    let n = words.next()?.parse().ok()?;
    (words.next() == Some("kB")).then_some(n)
}

/// How many entries `dir` has.
fn entries(dir: &Path) -> io::Result<usize> {
    Ok(fs::read_dir(dir)?.count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_at_the_first_restart_and_every_fiftieth() {
        let at: Vec<u32> = (1..=201).filter(|&n| due(n)).collect();
        assert_eq!(at, [1, 50, 100, 150, 200]);
    }

    #[test]
    fn reads_vmrss() {
        let status = "Name:\tkeel-init\nVmPeak:\t    2048 kB\nVmRSS:\t    1234 kB\nRssAnon:\t     312 kB\n";
        assert_eq!(rss_kib(status), Some(1234));
        assert_eq!(rss_kib("Name:\tkthreadd\n"), None, "kernel threads have no VmRSS");
        assert_eq!(rss_kib("VmRSS:\t12 MB\n"), None);
    }

    #[test]
    fn counts_this_process() {
        let before = Usage::now();
        assert!(before.rss_kib.is_some_and(|n| n > 0), "{before:?}");
        assert!(before.mounts.is_some_and(|n| n > 0), "{before:?}");
        let t = tempfile::tempfile().unwrap();
        let after = Usage::now();
        // Tests run in threads: other tests may open files meanwhile, so only a lower bound.
        assert!(after.fds.unwrap() >= 4, "stdio and the temp file: {after:?}");
        drop(t);
        assert_eq!(
            Usage { rss_kib: Some(1234), fds: Some(9), mounts: None }.to_string(),
            "rss 1234 KiB, 9 fds, ? mounts"
        );
    }
}
