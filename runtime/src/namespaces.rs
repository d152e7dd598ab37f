//! Which namespaces a container gets, and the setup that belongs to each inside it.
//!
//! The namespaces are created by the `clone` that starts the container's process, so with
//! [`Namespace::Pid`] that process is pid 1 of its own pid namespace: no intermediate process, its
//! exit status goes straight to the caller, and `/proc` can be mounted for it before `exec`.
//! (`unshare(CLONE_NEWPID)` would only affect the caller's *next* child, which would need a second
//! fork and a relay of the exit status.) User, network and cgroup namespaces come later: add a
//! variant, its flag, and its setup steps here.

use libc::c_int;

use crate::child::{Op, Step};
use crate::error::RuntimeError;

/// A Linux namespace the container gets a new instance of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Namespace {
    /// Mount table (`CLONE_NEWNS`).
    Mount,
    /// Process ids (`CLONE_NEWPID`).
    Pid,
    /// Host and domain name (`CLONE_NEWUTS`).
    Uts,
    /// System V IPC and POSIX message queues (`CLONE_NEWIPC`).
    Ipc,
}

/// The namespaces every container gets.
pub const CONTAINER: [Namespace; 4] = [Namespace::Mount, Namespace::Pid, Namespace::Uts, Namespace::Ipc];

impl Namespace {
    /// The `clone(2)` flag that creates it.
    pub fn clone_flag(self) -> c_int {
        match self {
            Namespace::Mount => libc::CLONE_NEWNS,
            Namespace::Pid => libc::CLONE_NEWPID,
            Namespace::Uts => libc::CLONE_NEWUTS,
            Namespace::Ipc => libc::CLONE_NEWIPC,
        }
    }
}

/// The `clone(2)` flags for a set of namespaces.
pub fn clone_flags(namespaces: &[Namespace]) -> c_int {
    namespaces.iter().fold(0, |flags, ns| flags | ns.clone_flag())
}

/// Setup inside the new UTS namespace: the container's host name.
pub(crate) fn uts_steps(hostname: &str) -> Result<Vec<Step>, RuntimeError> {
    if hostname.as_bytes().contains(&0) {
        return Err(RuntimeError::Nul { what: "the host name".into() });
    }
    Ok(vec![Step::new(format!("sethostname {hostname}"), Op::SetHostname(hostname.as_bytes().to_vec()))])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_flags() {
        let f = clone_flags(&CONTAINER);
        assert_eq!(f, libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC);
        assert_eq!(f & libc::CLONE_NEWUSER, 0);
        assert_eq!(f & libc::CLONE_NEWNET, 0);
    }

    #[test]
    fn hostname_step() {
        let s = uts_steps("web").unwrap();
        assert!(matches!(s.as_slice(), [Step { op: Op::SetHostname(n), .. }] if n == b"web"));
        assert!(uts_steps("a\0b").is_err());
    }
}
