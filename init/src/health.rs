//! Health checks: when the next check of a container is due, and what its results add up to. Pure
//! (time is passed in), so it is unit-tested without processes; the supervisor runs the checks.

use std::time::{Duration, Instant};

use keel_plan::Health;

/// How long a check that timed out may linger (being killed) before it is forgotten.
pub const KILL_WAIT: Duration = Duration::from_secs(5);

/// What a finished check changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing worth a line: passed while healthy, or failed within the start period.
    Quiet,
    /// The first pass, or the first after failures.
    Healthy,
    /// A counted failure, not yet enough to be unhealthy: `failures` of `retries`.
    Failed { failures: u32, retries: u32 },
    /// `retries` consecutive failures: the container is unhealthy.
    Unhealthy { failures: u32 },
}

/// One run of a container's health checks (a restart starts a new one).
#[derive(Debug)]
pub struct Watch {
    spec: Health,
    started: Instant,
    next: Instant,
    /// The check in flight: its pid and when it is to be killed.
    running: Option<(libc::pid_t, Instant)>,
    /// The check in flight was killed for its timeout.
    killed: bool,
    failures: u32,
    healthy: bool,
}

impl Watch {
    /// The container started at `started`; its first check is one interval later.
    pub fn new(spec: Health, started: Instant) -> Watch {
        let next = started + Duration::from_millis(spec.interval_ms);
        Watch { spec, started, next, running: None, killed: false, failures: 0, healthy: false }
    }

    /// Its last check passed, and none failed since.
    pub fn healthy(&self) -> bool {
        self.healthy
    }

    /// What the check is.
    pub fn spec(&self) -> &Health {
        &self.spec
    }

    /// A check should start now.
    pub fn due(&self, now: Instant) -> bool {
        self.running.is_none() && now >= self.next
    }

    /// A check was started as `pid` at `now`.
    pub fn started_check(&mut self, pid: libc::pid_t, now: Instant) {
        self.running = Some((pid, now + Duration::from_millis(self.spec.timeout_ms)));
    }

    /// The pid of the check in flight.
    pub fn running(&self) -> Option<libc::pid_t> {
        self.running.map(|(pid, _)| pid)
    }

    /// The check in flight ran past its timeout at `now`: its pid, to kill (once).
    pub fn overdue(&mut self, now: Instant) -> Option<libc::pid_t> {
        match self.running {
            Some((pid, deadline)) if now >= deadline => {
                // Killed again if it does not die within KILL_WAIT.
                self.running = Some((pid, now + KILL_WAIT));
                self.killed = true;
                Some(pid)
            }
            _ => None,
        }
    }

    /// When the supervisor must look again: the next check or the running one's deadline.
    pub fn wake(&self) -> Instant {
        self.running.map_or(self.next, |(_, deadline)| deadline)
    }

    /// The check in flight was killed for its timeout (by [`Watch::overdue`]).
    pub fn timed_out(&self) -> bool {
        self.killed
    }

    /// The check in flight (or the attempt to start one) at `now` says nothing: forget it, and
    /// check again one interval later.
    pub fn discard(&mut self, now: Instant) {
        self.running = None;
        self.killed = false;
        self.next = now + Duration::from_millis(self.spec.interval_ms);
    }

    /// A check ended at `now`: passed or not. A check that could not start counts as failed.
    pub fn finished(&mut self, passed: bool, now: Instant) -> Verdict {
        self.running = None;
        self.killed = false;
        self.next = now + Duration::from_millis(self.spec.interval_ms);
        if passed {
            let changed = !self.healthy;
            self.failures = 0;
            self.healthy = true;
            return if changed { Verdict::Healthy } else { Verdict::Quiet };
        }
        let starting = now.saturating_duration_since(self.started) < Duration::from_millis(self.spec.start_period_ms);
        if starting && !self.healthy {
            return Verdict::Quiet;
        }
        self.healthy = false;
        self.failures = self.failures.saturating_add(1);
        if self.failures >= self.spec.retries {
            Verdict::Unhealthy { failures: self.failures }
        } else {
            Verdict::Failed { failures: self.failures, retries: self.spec.retries }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_plan::HealthCheck;

    fn spec(retries: u32, start_period_ms: u64) -> Health {
        Health { check: HealthCheck::Tcp(80), interval_ms: 1_000, timeout_ms: 500, retries, start_period_ms }
    }

    #[test]
    fn the_first_check_is_an_interval_after_the_start() {
        let t0 = Instant::now();
        let w = Watch::new(spec(3, 0), t0);
        assert!(!w.due(t0));
        assert!(!w.due(t0 + Duration::from_millis(999)));
        assert!(w.due(t0 + Duration::from_secs(1)));
        assert!(!w.healthy());
    }

    #[test]
    fn retries_consecutive_failures_make_it_unhealthy() {
        let t0 = Instant::now();
        let mut w = Watch::new(spec(3, 0), t0);
        let at = |s| t0 + Duration::from_secs(s);
        assert_eq!(w.finished(true, at(1)), Verdict::Healthy);
        assert!(w.healthy());
        assert_eq!(w.finished(true, at(2)), Verdict::Quiet);
        assert_eq!(w.finished(false, at(3)), Verdict::Failed { failures: 1, retries: 3 });
        assert!(!w.healthy());
        assert_eq!(w.finished(false, at(4)), Verdict::Failed { failures: 2, retries: 3 });
        // A pass resets the count.
        assert_eq!(w.finished(true, at(5)), Verdict::Healthy);
        assert_eq!(w.finished(false, at(6)), Verdict::Failed { failures: 1, retries: 3 });
        assert_eq!(w.finished(false, at(7)), Verdict::Failed { failures: 2, retries: 3 });
        assert_eq!(w.finished(false, at(8)), Verdict::Unhealthy { failures: 3 });
        // The next check is an interval after the last ended.
        assert!(!w.due(at(8)));
        assert!(w.due(at(9)));
    }

    #[test]
    fn failures_in_the_start_period_do_not_count() {
        let t0 = Instant::now();
        let mut w = Watch::new(spec(1, 5_000), t0);
        assert_eq!(w.finished(false, t0 + Duration::from_secs(1)), Verdict::Quiet);
        assert_eq!(w.finished(false, t0 + Duration::from_secs(4)), Verdict::Quiet);
        assert_eq!(w.finished(false, t0 + Duration::from_secs(5)), Verdict::Unhealthy { failures: 1 });
        // Once healthy, the start period no longer excuses failures.
        let mut w = Watch::new(spec(1, 5_000), t0);
        assert_eq!(w.finished(true, t0 + Duration::from_secs(1)), Verdict::Healthy);
        assert_eq!(w.finished(false, t0 + Duration::from_secs(2)), Verdict::Unhealthy { failures: 1 });
    }

    #[test]
    fn a_check_past_its_timeout_is_killed_once() {
        let t0 = Instant::now();
        let mut w = Watch::new(spec(3, 0), t0);
        let t1 = t0 + Duration::from_secs(1);
        w.started_check(42, t1);
        assert!(!w.due(t1 + Duration::from_secs(10)), "one check at a time");
        assert_eq!(w.overdue(t1 + Duration::from_millis(499)), None);
        assert!(!w.timed_out());
        assert_eq!(w.overdue(t1 + Duration::from_millis(500)), Some(42));
        assert!(w.timed_out());
        assert_eq!(w.overdue(t1 + Duration::from_millis(600)), None);
        assert_eq!(w.running(), Some(42));
        assert_eq!(w.finished(false, t1 + Duration::from_millis(700)), Verdict::Failed { failures: 1, retries: 3 });
        assert_eq!(w.running(), None);
        assert!(!w.timed_out());
    }

    #[test]
    fn a_discarded_check_counts_for_nothing() {
        let t0 = Instant::now();
        let mut w = Watch::new(spec(1, 0), t0);
        let t1 = t0 + Duration::from_secs(1);
        w.started_check(7, t1);
        w.discard(t1);
        assert_eq!(w.running(), None);
        assert!(!w.due(t1));
        assert!(w.due(t1 + Duration::from_secs(1)));
        assert_eq!(w.finished(false, t1 + Duration::from_secs(1)), Verdict::Unhealthy { failures: 1 });
    }
}
