//! The end: stop everything, sync, unmount, power off or reboot. PID 1 never exits.

use std::fmt;
use std::thread;
use std::time::{Duration, Instant};

use keel_plan::{OnExit, OnFailure};

use crate::sys::{self, Reaped};
use crate::timeline::{self, Event};
use crate::{console, disks};

/// How long to wait for killed processes to be reaped before going on.
pub const REAP_TIMEOUT: Duration = Duration::from_secs(2);

/// What the machine does at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Power off.
    Poweroff,
    /// Reboot.
    Reboot,
}

impl Action {
    /// The reboot(2) command.
    pub fn command(self) -> libc::c_int {
        match self {
            Action::Poweroff => libc::RB_POWER_OFF,
            Action::Reboot => libc::RB_AUTOBOOT,
        }
    }
}

impl Action {
    /// keel-init's last console line before reboot(2).
    pub fn final_line(self) -> &'static str {
        match self {
            Action::Poweroff => keel_plan::FINAL_POWER_OFF,
            Action::Reboot => keel_plan::FINAL_REBOOT,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Poweroff => "power off",
            Action::Reboot => "reboot",
        })
    }
}

impl From<OnFailure> for Action {
    fn from(f: OnFailure) -> Action {
        match f {
            OnFailure::Poweroff => Action::Poweroff,
            OnFailure::Reboot => Action::Reboot,
        }
    }
}

/// What to do once every container has exited: `None` means keep waiting.
pub fn after_all_exited(on_exit: OnExit) -> Option<Action> {
    match on_exit {
        OnExit::Poweroff => Some(Action::Poweroff),
        OnExit::Reboot => Some(Action::Reboot),
        OnExit::Wait => None,
    }
}

/// Shut down and `action`. Returns only if the reboot system call failed (after saying so).
pub fn run(action: Action) {
    timeline::mark(Event::ShutdownBegin);
    kill_everything();
    sys::sync();
    disks::unmount();
    sys::sync();
    timeline::mark(Event::ShutdownEnd);
    // No process but PID 1 is left: nothing can print after this line but the kernel.
    console::write(format!("{}\n", action.final_line()).as_bytes());
    console::drain();
    let err = sys::reboot(action.command());
    console::say(format_args!("{action} failed: {err}"));
}

/// SIGKILL every process but PID 1 and reap them, for at most [`REAP_TIMEOUT`].
fn kill_everything() {
    // ESRCH: nothing left to kill.
    let _ = sys::kill(-1, libc::SIGKILL);
    let deadline = Instant::now() + REAP_TIMEOUT;
    loop {
        match sys::reap_one() {
            Ok(Reaped::Child(..)) => continue,
            Ok(Reaped::NoChildren) | Err(_) => return,
            Ok(Reaped::Running) if Instant::now() >= deadline => {
                console::say("some processes did not die; going on");
                return;
            }
            Ok(Reaped::Running) => thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// The last resort when even reboot(2) failed: idle forever (PID 1 must not exit).
pub fn halt_forever() -> ! {
    loop {
        thread::sleep(Duration::from_secs(3600));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_choices_map_to_actions() {
        assert_eq!(Action::from(OnFailure::Poweroff), Action::Poweroff);
        assert_eq!(Action::from(OnFailure::Reboot), Action::Reboot);
        assert_eq!(after_all_exited(OnExit::Poweroff), Some(Action::Poweroff));
        assert_eq!(after_all_exited(OnExit::Reboot), Some(Action::Reboot));
        assert_eq!(after_all_exited(OnExit::Wait), None);
        assert_eq!(Action::Poweroff.command(), libc::RB_POWER_OFF);
        assert_eq!(Action::Reboot.command(), libc::RB_AUTOBOOT);
    }
}
