//! OOM kills, reported by container name: the kernel counts them in the container cgroup's
//! `memory.events` (`oom_kill N`). keel-init reads the count when a container exits and once a
//! second while it runs, and says so on the console when it grew.

use std::path::PathBuf;
use std::time::Duration;

/// How often running containers' counters are read.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// The OOM-kill counter of one container.
#[derive(Debug)]
pub struct OomWatch {
    events: PathBuf,
    seen: u64,
    limit: Option<u64>,
}

impl OomWatch {
    /// Watch the cgroup `CGROUP_ROOT/<name>`, whose memory.max is `limit`.
    pub fn new(name: &str, limit: Option<u64>) -> OomWatch {
        OomWatch { events: PathBuf::from(keel_plan::CGROUP_ROOT).join(name).join("memory.events"), seen: 0, limit }
    }

    /// A console message if processes were OOM-killed since the last call.
    pub fn check(&mut self, name: &str) -> Option<String> {
        let text = std::fs::read_to_string(&self.events).ok()?;
        let now = oom_kills(&text)?;
        let new = now.checked_sub(self.seen).filter(|n| *n > 0)?;
        self.seen = now;
        Some(message(name, new, self.limit))
    }
}

/// The `oom_kill` count of a `memory.events` file.
pub fn oom_kills(events: &str) -> Option<u64> {
    events.lines().find_map(|l| l.strip_prefix("oom_kill ")).and_then(|n| n.trim().parse().ok())
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
    fn counts_are_read_from_memory_events() {
        let text = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 0\n";
        assert_eq!(oom_kills(text), Some(2));
        assert_eq!(oom_kills("low 0\n"), None);
    }

    #[test]
    fn only_new_kills_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let events = dir.path().join("memory.events");
        let mut w = OomWatch { events: events.clone(), seen: 0, limit: Some(32 << 20) };
        assert_eq!(w.check("hog"), None, "no file yet");
        std::fs::write(&events, "oom 0\noom_kill 0\n").unwrap();
        assert_eq!(w.check("hog"), None);
        std::fs::write(&events, "oom 1\noom_kill 1\n").unwrap();
        assert_eq!(
            w.check("hog").as_deref(),
            Some("container hog: out of memory: the kernel killed 1 process (memory.max 32 MiB)")
        );
        assert_eq!(w.check("hog"), None, "reported once");
        std::fs::write(&events, "oom 3\noom_kill 3\n").unwrap();
        assert!(w.check("hog").unwrap().contains("killed 2 processes"));
    }
}
