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

/// What the supervisor must do to the running containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// SIGTERM each.
    Terminate,
    /// SIGKILL each.
    Kill,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Containers run; when all have exited, `on_exit` decides.
    Supervising,
    /// A shutdown was asked for: waiting for containers until `deadline`.
    Stopping { action: Action, deadline: Instant, killed: bool },
    /// Shutting down even though containers may still run.
    GaveUp(Action),
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
    phase: Phase,
}

impl Lifecycle {
    /// No container yet; `on_exit` decides what happens when all have exited; on a stop,
    /// containers get `grace` between SIGTERM and SIGKILL.
    pub fn new(on_exit: OnExit, grace: Duration) -> Lifecycle {
        Lifecycle { on_exit, grace, running: 0, waiting: 0, phase: Phase::Supervising }
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

    /// No container runs or waits for a restart, and the plan says to wait.
    pub fn idle(&self) -> bool {
        self.running == 0 && self.waiting == 0 && self.phase == Phase::Supervising && self.on_exit == OnExit::Wait
    }

    /// A signal arrived at `now`.
    pub fn signal(&mut self, sig: libc::c_int, now: Instant) -> Option<Command> {
        self.stop(shutdown_for_signal(sig)?, now)
    }

    /// A graceful stop ending in `action` was asked for at `now` (a signal, the power button).
    pub fn stop(&mut self, action: Action, now: Instant) -> Option<Command> {
        match self.phase {
            Phase::Supervising => {
                // Pending restarts are dropped: the supervisor stops restarting (may_restart).
                self.waiting = 0;
                self.phase = Phase::Stopping { action, deadline: now + self.grace, killed: false };
                (self.running > 0).then_some(Command::Terminate)
            }
            // Already stopping: the first request stands.
            Phase::Stopping { .. } | Phase::GaveUp(_) => None,
        }
    }

    /// Time passed: act on an expired deadline.
    pub fn tick(&mut self, now: Instant) -> Option<Command> {
        match self.phase {
            Phase::Stopping { action, deadline, killed } if now >= deadline && self.running > 0 => {
                if killed {
                    self.phase = Phase::GaveUp(action);
                    None
                } else {
                    self.phase = Phase::Stopping { action, deadline: now + KILL_GRACE, killed: true };
                    Some(Command::Kill)
                }
            }
            _ => None,
        }
    }

    /// How long the supervisor may sleep before the next [`Lifecycle::tick`] (`None`: until an
    /// event).
    pub fn timeout(&self, now: Instant) -> Option<Duration> {
        match self.phase {
            Phase::Stopping { deadline, .. } => Some(deadline.saturating_duration_since(now)),
            _ => None,
        }
    }

    /// The machine is done: shut down with this action.
    pub fn finished(&self) -> Option<Action> {
        match self.phase {
            Phase::GaveUp(action) => Some(action),
            Phase::Stopping { action, .. } if self.running == 0 => Some(action),
            Phase::Supervising if self.running == 0 && self.waiting == 0 => shutdown::after_all_exited(self.on_exit),
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
        assert_eq!(l.timeout(Instant::now()), None);
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
    fn stop_terminates_then_kills_then_gives_up() {
        let t0 = Instant::now();
        let mut l = with(OnExit::Wait, 2);
        assert_eq!(l.signal(libc::SIGUSR1, t0), None);
        assert_eq!(l.signal(libc::SIGTERM, t0), Some(Command::Terminate));
        // A second request changes nothing.
        assert_eq!(l.signal(libc::SIGINT, t0), None);
        assert_eq!(l.timeout(t0), Some(STOP_GRACE));
        assert_eq!(l.tick(t0 + STOP_GRACE / 2), None);
        l.exited();
        assert_eq!(l.finished(), None);
        assert_eq!(l.tick(t0 + STOP_GRACE), Some(Command::Kill));
        let t1 = t0 + STOP_GRACE;
        assert_eq!(l.timeout(t1), Some(KILL_GRACE));
        assert_eq!(l.tick(t1 + KILL_GRACE), None);
        assert!(l.gave_up());
        assert_eq!(l.finished(), Some(Action::Poweroff));
    }

    #[test]
    fn stop_ends_when_the_containers_exit() {
        let t0 = Instant::now();
        let mut l = with(OnExit::Reboot, 1);
        assert_eq!(l.signal(libc::SIGPWR, t0), Some(Command::Terminate));
        l.exited();
        // The signal's action wins over on_exit.
        assert_eq!(l.finished(), Some(Action::Poweroff));
        assert_eq!(l.tick(t0 + STOP_GRACE), None);
    }

    #[test]
    fn the_power_button_stops_like_sigterm() {
        let t0 = Instant::now();
        let mut l = with(OnExit::Reboot, 1);
        assert_eq!(l.grace(), STOP_GRACE);
        assert_eq!(l.stop(Action::Poweroff, t0), Some(Command::Terminate));
        assert_eq!(l.stop(Action::Reboot, t0), None, "the first request stands");
        assert_eq!(l.tick(t0 + STOP_GRACE - Duration::from_millis(1)), None);
        assert_eq!(l.tick(t0 + STOP_GRACE), Some(Command::Kill));
        l.exited();
        assert_eq!(l.finished(), Some(Action::Poweroff));
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
        let t0 = Instant::now();
        let mut l = with(OnExit::Wait, 2);
        l.exited();
        l.restart_scheduled();
        assert_eq!(l.stop(Action::Poweroff, t0), Some(Command::Terminate));
        assert!(!l.may_restart());
        assert_eq!(l.finished(), None, "one container still runs");
        l.exited();
        assert_eq!(l.finished(), Some(Action::Poweroff), "the pending restart does not hold the stop");

        let mut l = with(OnExit::Wait, 1);
        l.exited();
        l.restart_scheduled();
        assert_eq!(l.signal(libc::SIGTERM, t0), None, "nothing runs: nothing to terminate");
        assert_eq!(l.finished(), Some(Action::Poweroff));
    }

    #[test]
    fn a_signal_while_waiting_shuts_down_at_once() {
        let mut l = with(OnExit::Wait, 0);
        assert_eq!(l.signal(libc::SIGINT, Instant::now()), None);
        assert_eq!(l.finished(), Some(Action::Reboot));
    }
}
