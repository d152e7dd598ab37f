//! OOM kills, reported by container name: the kernel counts them in the container cgroup's
//! `memory.events` (read through keel-runtime's [`Cgroup::oom_kills`]). keel-init looks when a
//! container exits and once a second while it runs, and says so on the console when the count grew,
//! with the limit the kernel enforced: the cgroup's own `memory.max`, not the config's.

use std::time::Duration;

use keel_runtime::Cgroup;

/// How often running containers' counters are read.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// The OOM-kill counter of one container.
#[derive(Debug)]
pub struct OomWatch {
    cgroup: Option<Cgroup>,
    seen: u64,
}

impl OomWatch {
    /// Watch `cgroup` (none: nothing to report).
    pub fn new(cgroup: Option<Cgroup>) -> OomWatch {
        OomWatch { cgroup, seen: 0 }
    }

    /// A console message if processes were OOM-killed since the last call.
    pub fn check(&mut self, name: &str) -> Option<String> {
        let OomWatch { cgroup, seen } = self;
        let cgroup = cgroup.as_ref()?;
        let now = cgroup.oom_kills().ok()?;
        observe(seen, name, now, || cgroup.memory_max().map_err(|_| ()))
    }
}

/// The message for a count of `now` kills since the cgroup was made (restarts included), of
/// which `seen` were reported before; `limit` reads the kernel's memory.max, only when there is
/// something to report.
fn observe(seen: &mut u64, name: &str, now: u64, limit: impl FnOnce() -> Result<Option<u64>, ()>) -> Option<String> {
    let new = now.checked_sub(*seen).filter(|n| *n > 0)?;
    *seen = now;
    Some(message(name, new, limit()))
}

fn message(name: &str, killed: u64, limit: Result<Option<u64>, ()>) -> String {
    let limit = match limit {
        Ok(Some(b)) if b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        Ok(Some(b)) => format!("{b} bytes"),
        Ok(None) => "max, no limit".to_string(),
        Err(()) => "unreadable".to_string(),
    };
    let what = if killed == 1 { "process" } else { "processes" };
    format!("container {name}: out of memory: the kernel killed {killed} {what} (memory.max {limit})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_new_kills_are_reported() {
        let mut w = OomWatch::new(None);
        let limit = || Ok(Some(32 << 20));
        assert_eq!(w.check("hog"), None, "no cgroup, nothing to read");
        assert_eq!(observe(&mut w.seen, "hog", 0, limit), None);
        assert_eq!(
            observe(&mut w.seen, "hog", 1, limit).as_deref(),
            Some("container hog: out of memory: the kernel killed 1 process (memory.max 32 MiB)")
        );
        assert_eq!(observe(&mut w.seen, "hog", 1, limit), None, "reported once");
        assert!(observe(&mut w.seen, "hog", 3, limit).unwrap().contains("killed 2 processes"));
        assert!(observe(&mut w.seen, "hog", 4, || Ok(None)).unwrap().ends_with("(memory.max max, no limit)"));
        assert!(observe(&mut w.seen, "hog", 5, || Ok(Some(1000))).unwrap().ends_with("(memory.max 1000 bytes)"));
        assert!(observe(&mut w.seen, "hog", 6, || Err(())).unwrap().ends_with("(memory.max unreadable)"));
    }
}
