//! How a container's process ended.

use std::fmt;

/// How a process ended, decoded from a `waitpid` status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this status.
    Exited(i32),
    /// A signal killed it.
    Signaled(i32),
}

impl ExitStatus {
    /// Decode the status word `waitpid(2)` stores.
    pub fn from_wait_status(status: i32) -> ExitStatus {
        if libc::WIFSIGNALED(status) {
            ExitStatus::Signaled(libc::WTERMSIG(status))
        } else {
            ExitStatus::Exited(libc::WEXITSTATUS(status))
        }
    }

    /// True for `exit(0)`.
    pub fn success(self) -> bool {
        self == ExitStatus::Exited(0)
    }

    /// One word: the exit status (`0`) or the signal's name (`SIGKILL`).
    pub fn short(self) -> String {
        match self {
            ExitStatus::Exited(code) => code.to_string(),
            ExitStatus::Signaled(sig) => signal_name(sig),
        }
    }
}

impl fmt::Display for ExitStatus {
    /// `exited with status 3` or `killed by signal SIGKILL`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ExitStatus::Exited(code) => write!(f, "exited with status {code}"),
            ExitStatus::Signaled(sig) => write!(f, "killed by signal {}", signal_name(sig)),
        }
    }
}

/// `SIGTERM` for 15; `SIG42` for a signal without a classic name.
pub fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGSTKFLT => "SIGSTKFLT",
        libc::SIGCHLD => "SIGCHLD",
        libc::SIGCONT => "SIGCONT",
        libc::SIGSTOP => "SIGSTOP",
        libc::SIGTSTP => "SIGTSTP",
        libc::SIGTTIN => "SIGTTIN",
        libc::SIGTTOU => "SIGTTOU",
        libc::SIGURG => "SIGURG",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGVTALRM => "SIGVTALRM",
        libc::SIGPROF => "SIGPROF",
        libc::SIGWINCH => "SIGWINCH",
        libc::SIGIO => "SIGIO",
        libc::SIGPWR => "SIGPWR",
        libc::SIGSYS => "SIGSYS",
        other => return format!("SIG{other}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_wait_statuses() {
        assert_eq!(ExitStatus::from_wait_status(0), ExitStatus::Exited(0));
        assert_eq!(ExitStatus::from_wait_status(3 << 8), ExitStatus::Exited(3));
        assert_eq!(ExitStatus::from_wait_status(libc::SIGKILL), ExitStatus::Signaled(libc::SIGKILL));
        // Killed with a core dump.
        assert_eq!(ExitStatus::from_wait_status(libc::SIGSEGV | 0x80), ExitStatus::Signaled(libc::SIGSEGV));
    }

    #[test]
    fn words() {
        assert_eq!(ExitStatus::Exited(0).to_string(), "exited with status 0");
        assert_eq!(ExitStatus::Signaled(9).to_string(), "killed by signal SIGKILL");
        assert_eq!(ExitStatus::Exited(127).short(), "127");
        assert_eq!(ExitStatus::Signaled(15).short(), "SIGTERM");
        assert_eq!(signal_name(40), "SIG40");
        assert!(ExitStatus::Exited(0).success());
        assert!(!ExitStatus::Signaled(0).success());
    }
}
