//! Restart policies: whether an exited container starts again, after how long, and when its
//! restarts amount to a crash loop. Pure (time is passed in), so it is unit-tested without
//! processes.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use keel_plan::Restart;
use keel_runtime::ExitStatus;

/// The delay before the first restart of a streak.
pub const FIRST_DELAY: Duration = Duration::from_secs(1);
/// The delay never grows beyond this.
pub const MAX_DELAY: Duration = Duration::from_secs(30);
/// A run at least this long ends a streak: the next delay is [`FIRST_DELAY`] again.
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
    /// The delay of the next restart.
    next: Duration,
    /// Restarts since boot.
    count: u32,
    /// When the restarts of the last [`LOOP_WINDOW`] were scheduled, oldest first.
    recent: VecDeque<Instant>,
    /// The current crash loop was reported.
    reported: bool,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff { next: FIRST_DELAY, count: 0, recent: VecDeque::new(), reported: false }
    }
}

impl Backoff {
    /// The container, started at `started`, ended at `now` and is to be restarted: how long to
    /// wait. Doubles the delay of each consecutive restart up to [`MAX_DELAY`]; a run of at least
    /// [`STABLE_RUN`] starts over at [`FIRST_DELAY`] and ends a crash loop.
    pub fn schedule(&mut self, started: Instant, now: Instant) -> Scheduled {
        if now.saturating_duration_since(started) >= STABLE_RUN {
            self.next = FIRST_DELAY;
            self.recent.clear();
            self.reported = false;
        }
        let delay = self.next;
        self.next = (self.next * 2).min(MAX_DELAY);
        self.count = self.count.saturating_add(1);
        while self.recent.front().is_some_and(|&t| now.saturating_duration_since(t) > LOOP_WINDOW) {
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
