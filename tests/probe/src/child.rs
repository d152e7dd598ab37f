//! Throwaway child processes: one probe per child (so a call that changes the process, or a
//! seccomp filter that kills, costs one child and not the checker), and sleepers to be counted,
//! traced or killed.

use std::panic::{self, AssertUnwindSafe};
use std::time::Duration;

use crate::errno::Errno;
use crate::sys::{self, Fork, WaitStatus};

/// Exit code of a child whose closure panicked.
const PANICKED: i32 = 250;
/// Exit code of a sleeper that cannot sleep.
const CANNOT_SLEEP: i32 = 126;

/// Runs `f` in a forked child and waits for it: the child exits with `f`'s return value.
pub fn run(f: impl FnOnce() -> i32) -> Result<WaitStatus, Errno> {
    match sys::fork()? {
        Fork::Child => {
            let code = panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or(PANICKED);
            sys::exit_now(code)
        }
        Fork::Parent(pid) => reap(pid),
    }
}

/// Waits until `pid` has exited or been killed (a stop of a traced child is not an end).
pub fn reap(pid: i32) -> Result<WaitStatus, Errno> {
    loop {
        match sys::waitpid(pid, 0)? {
            (_, WaitStatus::Other(_)) => continue,
            (_, end) => return Ok(end),
        }
    }
}

/// Forks a child that sleeps until it is killed; returns its pid.
pub fn spawn_sleeper() -> Result<i32, Errno> {
    match sys::fork()? {
        Fork::Child => sleep_forever(),
        Fork::Parent(pid) => Ok(pid),
    }
}

/// Sleeps (never spins) until killed. If nanosleep is refused, falls back to pause; if that is
/// refused too, exits rather than spin.
pub fn sleep_forever() -> ! {
    loop {
        match sys::nanosleep(Duration::from_secs(3600)) {
            Ok(()) | Err(Errno(libc::EINTR)) => continue,
            Err(_) => {
                if sys::pause().0 != libc::EINTR {
                    sys::exit_now(CANNOT_SLEEP);
                }
            }
        }
    }
}

/// Kills every pid in `pids` with SIGKILL and reaps it.
pub fn kill_all(pids: &[i32]) {
    for &pid in pids {
        let _ = sys::kill(pid, libc::SIGKILL);
    }
    for &pid in pids {
        let _ = reap(pid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_and_signals_come_back() {
        assert_eq!(run(|| 7), Ok(WaitStatus::Exited(7)));
        let pid = spawn_sleeper().expect("fork");
        assert_eq!(sys::waitpid(pid, libc::WNOHANG).map(|(p, _)| p), Ok(0), "the sleeper is still alive");
        sys::kill(pid, libc::SIGKILL).expect("kill");
        assert_eq!(reap(pid), Ok(WaitStatus::Signaled(libc::SIGKILL)));
    }
}
