//! OOM kills, reported by container name: the kernel counts them in the container cgroup's
//! `memory.events` (read through keel-runtime's [`Cgroup::oom_kills`]). keel-init looks when a
//! container exits and once a second while it runs, and says so on the console when the count grew.

use std::time::Duration;

use keel_runtime::Cgroup;

/// How often running containers' counters are read.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// The OOM-kill counter of one container.
#[derive(Debug)]
pub struct OomWatch {
    cgroup: Option<Cgroup>,
    seen: u64,
    limit: Option<u64>,
}

impl OomWatch {
    /// Watch `cgroup` (none: nothing to report), whose memory.max is `limit`.
    pub fn new(cgroup: Option<Cgroup>, limit: Option<u64>) -> OomWatch {
        OomWatch { cgroup, seen: 0, limit }
    }

    /// A console message if processes were OOM-killed since the last call.
    pub fn check(&mut self, name: &str) -> Option<String> {
        let now = self.cgroup.as_ref()?.oom_kills().ok()?;
        self.observe(name, now)
    }

    /// The message for a count of `now` kills since the cgroup was made (restarts included).
    fn observe(&mut self, name: &str, now: u64) -> Option<String> {
        let new = now.checked_sub(self.seen).filter(|n| *n > 0)?;
        self.seen = now;
        Some(message(name, new, self.limit))
    }
}

fn message(name: &str, killed: u64, limit: Option<u64>) -> String {
    let limit = match limit {
        Some(b) if b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        Some(b) => format!("{b} bytes"),
        None => "no limit".to_string(),
    };
    let what = if killed == 1 { "process" } else { "processes" };
    format!("container {name}: out of memory: the kernel killed {killed} {what} (memory.max {limit})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_new_kills_are_reported() {
        let mut w = OomWatch::new(None, Some(32 << 20));
        assert_eq!(w.check("hog"), None, "no cgroup, nothing to read");
        assert_eq!(w.observe("hog", 0), None);
        assert_eq!(
            w.observe("hog", 1).as_deref(),
            Some("container hog: out of memory: the kernel killed 1 process (memory.max 32 MiB)")
        );
        assert_eq!(w.observe("hog", 1), None, "reported once");
        assert!(w.observe("hog", 3).unwrap().contains("killed 2 processes"));
    }
}
