//! Well-behaved workloads: a heartbeat on a fixed schedule, a sleeper, a fixed exit code.

use std::time::Duration;

use crate::errno::Errno;
use crate::report::say;
use crate::sys;

/// `heartbeat INTERVAL_MS COUNT`: prints beat i at start + i × interval (absolute deadlines, so
/// lateness does not accumulate), then how late the latest beat was. Returns the exit code.
pub fn heartbeat(interval_ms: u64, count: u32) -> i32 {
    let interval = Duration::from_millis(interval_ms);
    let start = sys::monotonic();
    let mut max_late = Duration::ZERO;
    for i in 1..=count {
        let Some(deadline) = interval.checked_mul(i).and_then(|d| start.checked_add(d)) else {
            say(&format!("heartbeat cannot schedule beat {i}: interval too large"));
            return 1;
        };
        if let Err(e) = sleep_until(deadline) {
            say(&format!("heartbeat clock_nanosleep failed: {e}"));
            return 1;
        }
        let now = sys::monotonic();
        max_late = max_late.max(now.saturating_sub(deadline));
        say(&format!("beat {i} t={}", now.as_millis()));
    }
    say(&format!("heartbeat done max_late_ms={} count={count}", max_late.as_millis()));
    0
}

/// Sleeps until the monotonic clock reaches `deadline`, through interruptions.
fn sleep_until(deadline: Duration) -> Result<(), Errno> {
    loop {
        match sys::sleep_until(deadline) {
            Err(Errno(libc::EINTR)) => continue,
            r => return r,
        }
    }
}

/// `sleep SECONDS`: sleeps that long (through interruptions) and returns 0.
pub fn sleep(seconds: u64) -> i32 {
    let deadline = sys::monotonic().saturating_add(Duration::from_secs(seconds));
    match sleep_until(deadline) {
        Ok(()) => 0,
        Err(e) => {
            say(&format!("sleep clock_nanosleep failed: {e}"));
            1
        }
    }
}
