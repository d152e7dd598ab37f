//! When the machine is done: the supervisor's decisions, as a pure state machine (time is passed
//! in), so they are unit-tested without processes.

use std::time::{Duration, Instant};

use keel_plan::OnExit;

use crate::shutdown::{self, Action};

/// How long to wait for them after SIGKILL before shutting down anyway.
pub const KILL_GRACE: Duration = Duration::from_secs(5);

/// The shutdown a signal to PID 1 asks for: SIGTERM and SIGPWR power off, SIGINT (Ctrl-Alt-Del)
/// reboots. Other signals ask for nothing.
pub fn shutdown_for_signal(sig: libc::c_int) -> Option<Action> {
    match sig {
        libc::SIGTERM | libc::SIGPWR => Some(Action::Poweroff),
        libc::SIGINT => Some(Action::Reboot),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Containers run; when all have exited, `on_exit` decides.
    Supervising,
    /// A shutdown was asked for: containers are being stopped ([`stop_step`]).
    Stopping(Action),
    /// Shutting down even though containers may still run.
    GaveUp(Action),
}

/// One container, as a stop sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StopView {
    /// Its first process still runs.
    pub running: bool,
    /// Indices of the containers it depends on.
    pub deps: Vec<usize>,
    /// When it was sent SIGTERM.
    pub term_at: Option<Instant>,
    /// When it was sent SIGKILL.
    pub kill_at: Option<Instant>,
}

/// A signal for container `.0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Send {
    /// SIGTERM: nothing running depends on it any more.
    Term(usize),
    /// SIGKILL: its grace after SIGTERM is over.
    Kill(usize),
}

/// What a stop does at `now`: SIGTERM to each running container that no running container depends
/// on (so dependents stop first, in reverse dependency order), SIGKILL to each still running
/// `grace` after its SIGTERM. `true` in the second place: a container outlived its SIGKILL by
/// [`KILL_GRACE`], so the stop gives up waiting.
pub fn stop_step(containers: &[StopView], grace: Duration, now: Instant) -> (Vec<Send>, bool) {
    let mut out = Vec::new();
    let mut give_up = false;
    for (i, c) in containers.iter().enumerate().filter(|(_, c)| c.running) {
        match (c.term_at, c.kill_at) {
            (None, _) => {
                let needed = containers.iter().any(|d| d.running && d.deps.contains(&i));
                if !needed {
                    out.push(Send::Term(i));
                }
            }
            (Some(t), None) if now >= t + grace => out.push(Send::Kill(i)),
            (Some(_), Some(k)) if now >= k + KILL_GRACE => give_up = true,
            _ => {}
        }
    }
    (out, give_up)
}

/// When [`stop_step`] has something to do next after `now`, for the containers already
/// signalled (deadlines already past are not waited for again).
pub fn stop_wake(containers: &[StopView], grace: Duration, now: Instant) -> Option<Instant> {
    containers
        .iter()
        .filter(|c| c.running)
        .filter_map(|c| match (c.term_at, c.kill_at) {
            (Some(t), None) => Some(t + grace),
            (_, Some(k)) => Some(k + KILL_GRACE),
            (None, None) => None,
        })
        .filter(|&at| at > now)
        .min()
}

/// The supervisor's state.
#[derive(Debug)]
pub struct Lifecycle {
    on_exit: OnExit,
    /// How long containers get to exit after SIGTERM.
    grace: Duration,
    running: usize,
    /// Containers that exited and wait for a restart.
    waiting: usize,
    /// Containers stopped through the API: they wait for `keel start`, so the machine is not
    /// done while any is held (`on_exit` does not apply).
    held: usize,
    phase: Phase,
}

impl Lifecycle {
    /// No container yet; `on_exit` decides what happens when all have exited; on a stop,
    /// containers get `grace` between SIGTERM and SIGKILL.
    pub fn new(on_exit: OnExit, grace: Duration) -> Lifecycle {
        Lifecycle { on_exit, grace, running: 0, waiting: 0, held: 0, phase: Phase::Supervising }
    }

    /// How long containers get between SIGTERM and SIGKILL.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// A container started.
    pub fn started(&mut self) {
        self.running += 1;
    }

    /// A container's first process ended.
    pub fn exited(&mut self) {
        self.running = self.running.saturating_sub(1);
    }

    /// Exited containers may be started again: the machine is not stopping.
    pub fn may_restart(&self) -> bool {
        self.phase == Phase::Supervising
    }

    /// An exited container will be started again later (see [`Lifecycle::may_restart`]).
    pub fn restart_scheduled(&mut self) {
        self.waiting += 1;
    }

    /// A scheduled restart is due: the container is no longer waiting (call
    /// [`Lifecycle::started`] if it did start).
    pub fn restart_due(&mut self) {
        self.waiting = self.waiting.saturating_sub(1);
    }

    /// A container was stopped through the API and stays stopped until started again: until
    /// then `on_exit` does not apply.
    pub fn hold(&mut self) {
        self.held += 1;
    }

    /// A held container was started (or restarted) through the API.
    pub fn release(&mut self) {
        self.held = self.held.saturating_sub(1);
    }

    /// No container runs or waits for a restart, and the plan says to wait.
    pub fn idle(&self) -> bool {
        self.running == 0 && self.waiting == 0 && self.phase == Phase::Supervising && self.on_exit == OnExit::Wait
    }

    /// A signal arrived: `true` if it began a stop with containers to stop.
    pub fn signal(&mut self, sig: libc::c_int) -> bool {
        shutdown_for_signal(sig).is_some_and(|action| self.stop(action))
    }

    /// A graceful stop ending in `action` was asked for (a signal, the power button): `true` if it
    /// began one and containers run (the supervisor then stops them with [`stop_step`]).
    pub fn stop(&mut self, action: Action) -> bool {
        match self.phase {
            Phase::Supervising => {
                // Pending restarts are dropped: the supervisor stops restarting (may_restart).
                self.waiting = 0;
                self.phase = Phase::Stopping(action);
                self.running > 0
            }
            // Already stopping: the first request stands.
            Phase::Stopping(_) | Phase::GaveUp(_) => false,
        }
    }

    /// The machine is stopping (containers are not restarted; [`stop_step`] applies).
    pub fn stopping(&self) -> bool {
        matches!(self.phase, Phase::Stopping(_))
    }

    /// Stop waiting for containers that outlived SIGKILL.
    pub fn give_up(&mut self) {
        if let Phase::Stopping(action) = self.phase {
            self.phase = Phase::GaveUp(action);
        }
    }

    /// The machine is done: shut down with this action.
    pub fn finished(&self) -> Option<Action> {
        match self.phase {
            Phase::GaveUp(action) => Some(action),
            Phase::Stopping(action) if self.running == 0 => Some(action),
            Phase::Supervising if self.running == 0 && self.waiting == 0 && self.held == 0 => {
                shutdown::after_all_exited(self.on_exit)
            }
            _ => None,
        }
    }

    /// The supervisor gave up waiting for containers after SIGKILL.
    pub fn gave_up(&self) -> bool {
        matches!(self.phase, Phase::GaveUp(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STOP_GRACE: Duration = Duration::from_millis(3_500);

    fn with(on_exit: OnExit, running: usize) -> Lifecycle {
        let mut l = Lifecycle::new(on_exit, STOP_GRACE);
        (0..running).for_each(|_| l.started());
        l
    }

    #[test]
    fn all_exited_follows_on_exit() {
        let mut l = with(OnExit::Poweroff, 2);
        assert_eq!(l.finished(), None);
        l.exited();
        assert_eq!(l.finished(), None);
        l.exited();
        assert_eq!(l.finished(), Some(Action::Poweroff));

        let mut l = with(OnExit::Reboot, 1);
        l.exited();
        assert_eq!(l.finished(), Some(Action::Reboot));

        let mut l = with(OnExit::Wait, 1);
        assert!(!l.idle());
        l.exited();
        assert_eq!(l.finished(), None);
        assert!(l.idle());
    }

    #[test]
    fn a_container_stopped_through_the_api_does_not_end_the_machine() {
        // The only container is stopped with `keel stop`: no power-off, it waits for a start.
        let mut l = with(OnExit::Poweroff, 1);
        l.hold();
        l.exited();
        assert_eq!(l.finished(), None);
        // Started again, then it exits on its own: now on_exit applies.
        l.release();
        l.started();
        assert_eq!(l.finished(), None);
        l.exited();
        assert_eq!(l.finished(), Some(Action::Poweroff));

        // Another container exiting while one is held does not end the machine either.
        let mut l = with(OnExit::Reboot, 2);
        l.hold();
        l.exited();
        l.exited();
        assert_eq!(l.finished(), None);
        // An explicit power-off still works.
        assert!(!l.stop(Action::Poweroff));
        assert_eq!(l.finished(), Some(Action::Poweroff));
    }

    #[test]
    fn no_containers_at_all() {
        assert_eq!(with(OnExit::Poweroff, 0).finished(), Some(Action::Poweroff));
        assert_eq!(with(OnExit::Wait, 0).finished(), None);
    }

    #[test]
    fn signals_map_to_shutdowns() {
        assert_eq!(shutdown_for_signal(libc::SIGTERM), Some(Action::Poweroff));
        assert_eq!(shutdown_for_signal(libc::SIGPWR), Some(Action::Poweroff));
        assert_eq!(shutdown_for_signal(libc::SIGINT), Some(Action::Reboot));
        assert_eq!(shutdown_for_signal(libc::SIGUSR1), None);
        assert_eq!(shutdown_for_signal(libc::SIGCHLD), None);
    }

    #[test]
    fn a_stop_happens_once_and_can_give_up() {
        let mut l = with(OnExit::Wait, 2);
        assert!(!l.signal(libc::SIGUSR1));
        assert!(l.signal(libc::SIGTERM));
        assert!(l.stopping());
        // A second request changes nothing.
        assert!(!l.signal(libc::SIGINT));
        l.exited();
        assert_eq!(l.finished(), None);
        l.give_up();
        assert!(l.gave_up());
        assert_eq!(l.finished(), Some(Action::Poweroff));
    }

    #[test]
    fn stop_ends_when_the_containers_exit() {
        let mut l = with(OnExit::Reboot, 1);
        assert!(l.signal(libc::SIGPWR));
        l.exited();
        // The signal's action wins over on_exit.
        assert_eq!(l.finished(), Some(Action::Poweroff));
    }

    #[test]
    fn the_power_button_stops_like_sigterm() {
        let mut l = with(OnExit::Reboot, 1);
        assert_eq!(l.grace(), STOP_GRACE);
        assert!(l.stop(Action::Poweroff));
        assert!(!l.stop(Action::Reboot), "the first request stands");
        l.exited();
        assert_eq!(l.finished(), Some(Action::Poweroff));
    }

    fn view(running: bool, deps: &[usize]) -> StopView {
        StopView { running, deps: deps.to_vec(), ..StopView::default() }
    }

    #[test]
    fn stops_go_in_reverse_dependency_order() {
        let t0 = Instant::now();
        // web -> api -> db, and a lone worker.
        let mut c = vec![view(true, &[]), view(true, &[0]), view(true, &[1]), view(true, &[])];
        let (send, give_up) = stop_step(&c, STOP_GRACE, t0);
        assert_eq!(send, [Send::Term(2), Send::Term(3)], "dependents and independents first");
        assert!(!give_up);
        c[2].term_at = Some(t0);
        c[3].term_at = Some(t0);
        assert_eq!(stop_step(&c, STOP_GRACE, t0).0, [], "db and api wait for web");
        assert_eq!(stop_wake(&c, STOP_GRACE, t0), Some(t0 + STOP_GRACE));
        let t1 = t0 + Duration::from_secs(1);
        c[2].running = false;
        assert_eq!(stop_step(&c, STOP_GRACE, t1).0, [Send::Term(1)]);
        c[1].term_at = Some(t1);
        // The worker's grace is over; api's is its own.
        let t2 = t0 + STOP_GRACE;
        assert_eq!(stop_step(&c, STOP_GRACE, t2).0, [Send::Kill(3)]);
        c[3].kill_at = Some(t2);
        c[1].running = false;
        assert_eq!(stop_step(&c, STOP_GRACE, t2).0, [Send::Term(0)]);
        c[0].term_at = Some(t2);
        assert_eq!(stop_wake(&c, STOP_GRACE, t2), Some(t2 + STOP_GRACE.min(KILL_GRACE)));
        assert_eq!(stop_wake(&c, STOP_GRACE, t2 + STOP_GRACE + KILL_GRACE), None, "past deadlines are not waited for");
        let (_, give_up) = stop_step(&c, STOP_GRACE, t2 + KILL_GRACE);
        assert!(give_up, "the worker outlived its SIGKILL");
    }

    #[test]
    fn a_stopped_dependency_does_not_wait_for_exited_dependents() {
        let c = vec![view(true, &[]), view(false, &[0])];
        assert_eq!(stop_step(&c, STOP_GRACE, Instant::now()).0, [Send::Term(0)]);
    }

    #[test]
    fn a_pending_restart_keeps_the_machine_up() {
        let mut l = with(OnExit::Poweroff, 1);
        l.exited();
        l.restart_scheduled();
        assert!(l.may_restart());
        assert_eq!(l.finished(), None, "a container waits for its restart");
        l.restart_due();
        l.started();
        assert_eq!(l.finished(), None);
        l.exited();
        assert_eq!(l.finished(), Some(Action::Poweroff));

        let mut l = with(OnExit::Wait, 1);
        l.exited();
        l.restart_scheduled();
        assert!(!l.idle(), "not idle while a restart is pending");
        l.restart_due();
        assert!(l.idle(), "the restart failed to start");
    }

    #[test]
    fn a_stop_drops_pending_restarts() {
        let mut l = with(OnExit::Wait, 2);
        l.exited();
        l.restart_scheduled();
        assert!(l.stop(Action::Poweroff));
        assert!(!l.may_restart());
        assert_eq!(l.finished(), None, "one container still runs");
        l.exited();
        assert_eq!(l.finished(), Some(Action::Poweroff), "the pending restart does not hold the stop");

        let mut l = with(OnExit::Wait, 1);
        l.exited();
        l.restart_scheduled();
        assert!(!l.signal(libc::SIGTERM), "nothing runs: nothing to terminate");
        assert_eq!(l.finished(), Some(Action::Poweroff));
    }

    #[test]
    fn a_signal_while_waiting_shuts_down_at_once() {
        let mut l = with(OnExit::Wait, 0);
        assert!(!l.signal(libc::SIGINT));
        assert_eq!(l.finished(), Some(Action::Reboot));
    }
}
