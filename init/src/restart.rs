//! Restart policies: whether an exited container starts again, after how long, and when its
//! restarts amount to a crash loop. Pure (time is passed in), so it is unit-tested without
//! processes.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use keel_plan::{Restart, RestartDelay};
use keel_runtime::ExitStatus;

/// A run at least this long ends a streak: the next delay is the first one again.
pub const STABLE_RUN: Duration = Duration::from_secs(10);
/// This many restarts within [`LOOP_WINDOW`] is a crash loop.
pub const LOOP_RESTARTS: usize = 5;
/// See [`LOOP_RESTARTS`].
pub const LOOP_WINDOW: Duration = Duration::from_secs(60);

/// Whether `policy` starts a container again after its first process ended with `status`.
pub fn wanted(policy: Restart, status: ExitStatus) -> bool {
    match policy {
        Restart::No => false,
        Restart::OnFailure => !status.success(),
        Restart::Always => true,
    }
}

/// A scheduled restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scheduled {
    /// How long to wait before starting it again.
    pub delay: Duration,
    /// Which restart this is since boot (1 for the first).
    pub count: u32,
    /// Set when this restart makes a crash loop, reported once per loop: how many restarts
    /// happened within how long.
    pub crash_loop: Option<(usize, Duration)>,
}

/// One container's restart history.
#[derive(Debug)]
pub struct Backoff {
    /// The delay before the first restart of a streak (the plan's `restart_delay.first_ms`).
    first: Duration,
    /// The delay never grows beyond this (`restart_delay.max_ms`).
    max: Duration,
    /// The delay of the next restart.
    next: Duration,
    /// Restarts since boot.
    count: u32,
    /// When the last (at most [`LOOP_RESTARTS`]) restarts within [`LOOP_WINDOW`] were scheduled,
    /// oldest first. Bounded, so a long crash loop with short delays does not grow init.
    recent: VecDeque<Instant>,
    /// The current crash loop was reported.
    reported: bool,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff::new(RestartDelay::default())
    }
}

impl Backoff {
    /// No restart yet; delays per `delay` (the builder checked that max ≥ first).
    pub fn new(delay: RestartDelay) -> Backoff {
        let first = Duration::from_millis(delay.first_ms);
        let max = Duration::from_millis(delay.max_ms).max(first);
        Backoff {
            first,
            max,
            next: first,
            count: 0,
            recent: VecDeque::with_capacity(LOOP_RESTARTS + 1),
            reported: false,
        }
    }

    /// The container, started at `started`, ended at `now` and is to be restarted: how long to
    /// wait. Doubles the delay of each consecutive restart up to the max; a run of at least
    /// [`STABLE_RUN`] starts over at the first delay and ends a crash loop.
    pub fn schedule(&mut self, started: Instant, now: Instant) -> Scheduled {
        if now.saturating_duration_since(started) >= STABLE_RUN {
            self.next = self.first;
            self.recent.clear();
            self.reported = false;
        }
        let delay = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        self.count = self.count.saturating_add(1);
        while self.recent.front().is_some_and(|&t| now.saturating_duration_since(t) > LOOP_WINDOW) {
            self.recent.pop_front();
        }
        if self.recent.len() >= LOOP_RESTARTS {
            self.recent.pop_front();
        }
        self.recent.push_back(now);
        let mut crash_loop = None;
        if self.recent.len() >= LOOP_RESTARTS && !self.reported {
            self.reported = true;
            let since = self.recent.front().map_or(Duration::ZERO, |&t| now.saturating_duration_since(t));
            crash_loop = Some((self.recent.len(), since));
        }
        Scheduled { delay, count: self.count, crash_loop }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRST_DELAY: Duration = Duration::from_secs(1);

    #[test]
    fn policies() {
        let ok = ExitStatus::Exited(0);
        let failed = ExitStatus::Exited(3);
        let killed = ExitStatus::Signaled(libc::SIGKILL);
        for s in [ok, failed, killed] {
            assert!(!wanted(Restart::No, s));
            assert!(wanted(Restart::Always, s));
        }
        assert!(!wanted(Restart::OnFailure, ok));
        assert!(wanted(Restart::OnFailure, failed));
        assert!(wanted(Restart::OnFailure, killed));
    }

    /// Crash at once after every start, the restart happening right after its delay.
    fn crash_loop(b: &mut Backoff, t: &mut Instant, runs: usize) -> Vec<Scheduled> {
        let run = Duration::from_millis(100);
        (0..runs)
            .map(|_| {
                let started = *t;
                *t += run;
                let s = b.schedule(started, *t);
                *t += s.delay;
                s
            })
            .collect()
    }

    #[test]
    fn the_delay_doubles_up_to_the_cap() {
        let mut b = Backoff::default();
        let mut t = Instant::now();
        let delays: Vec<u64> = crash_loop(&mut b, &mut t, 8).iter().map(|s| s.delay.as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30, 30]);
        let counts: Vec<u32> = crash_loop(&mut b, &mut t, 2).iter().map(|s| s.count).collect();
        assert_eq!(counts, [9, 10]);
    }

    #[test]
    fn delays_come_from_the_plan() {
        let mut t = Instant::now();
        let mut b = Backoff::new(RestartDelay { first_ms: 100, max_ms: 250 });
        let delays: Vec<u128> = crash_loop(&mut b, &mut t, 5).iter().map(|s| s.delay.as_millis()).collect();
        assert_eq!(delays, [100, 200, 250, 250, 250]);
        let mut b = Backoff::new(RestartDelay { first_ms: 10, max_ms: 10 });
        assert!(crash_loop(&mut b, &mut t, 20).iter().all(|s| s.delay == Duration::from_millis(10)));
        // A max below the first (the builder refuses it) is read as the first.
        let mut b = Backoff::new(RestartDelay { first_ms: 500, max_ms: 100 });
        assert!(crash_loop(&mut b, &mut t, 3).iter().all(|s| s.delay == Duration::from_millis(500)));
    }

    #[test]
    fn a_long_fast_crash_loop_keeps_a_bounded_history() {
        let mut t = Instant::now();
        let mut b = Backoff::new(RestartDelay { first_ms: 10, max_ms: 10 });
        let runs = crash_loop(&mut b, &mut t, 10_000);
        assert_eq!(runs.iter().filter(|s| s.crash_loop.is_some()).count(), 1);
        assert_eq!(runs[4].crash_loop, Some((5, Duration::from_millis(440))), "4 runs of 100 ms + 4 delays of 10 ms");
        assert!(b.recent.len() <= LOOP_RESTARTS && b.recent.capacity() <= 2 * (LOOP_RESTARTS + 1));
        assert_eq!(runs.last().map(|s| s.count), Some(10_000));
    }

    #[test]
    fn a_stable_run_resets_the_delay() {
        let mut b = Backoff::default();
        let mut t = Instant::now();
        crash_loop(&mut b, &mut t, 4);
        let started = t;
        t += STABLE_RUN;
        let s = b.schedule(started, t);
        assert_eq!(s.delay, FIRST_DELAY);
        assert_eq!(s.count, 5, "the count is since boot");
        t += s.delay;
        assert_eq!(b.schedule(t, t + Duration::from_secs(1)).delay, FIRST_DELAY * 2);
    }

    #[test]
    fn a_crash_loop_is_reported_once() {
        let mut b = Backoff::default();
        let mut t = Instant::now();
        let runs = crash_loop(&mut b, &mut t, 12);
        let reports: Vec<(usize, Option<(usize, Duration)>)> =
            runs.iter().enumerate().filter(|(_, s)| s.crash_loop.is_some()).map(|(i, s)| (i, s.crash_loop)).collect();
        // Restarts at 0.1, 1.2, 3.3, 7.4 and 15.5 s: the fifth makes the loop, 15.4 s after the first.
        assert_eq!(reports, [(4, Some((5, Duration::from_millis(15_400))))]);
    }

    #[test]
    fn a_new_loop_after_a_stable_run_is_reported_again() {
        let mut b = Backoff::default();
        let mut t = Instant::now();
        assert!(crash_loop(&mut b, &mut t, 5).iter().any(|s| s.crash_loop.is_some()));
        let started = t;
        t += STABLE_RUN;
        assert_eq!(b.schedule(started, t).crash_loop, None);
        t += FIRST_DELAY;
        let again = crash_loop(&mut b, &mut t, 4);
        assert_eq!(again.iter().filter(|s| s.crash_loop.is_some()).count(), 1);
        assert!(again.last().is_some_and(|s| s.crash_loop.is_some()));
    }

    #[test]
    fn slow_restarts_are_no_crash_loop() {
        let mut b = Backoff::default();
        let mut t = Instant::now();
        // Restarts 20 s apart (each run shorter than STABLE_RUN): never 5 within a minute.
        for _ in 0..10 {
            let started = t;
            t += Duration::from_secs(9);
            assert_eq!(b.schedule(started, t).crash_loop, None);
            t += Duration::from_secs(11);
        }
    }
}
