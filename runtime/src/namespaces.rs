//! Which namespaces a container gets, and the setup that belongs to each inside it.
//!
//! The namespaces are created by the `clone` that starts the container's process, so with
//! [`Namespace::Pid`] that process is pid 1 of its own pid namespace: no intermediate process, its
//! exit status goes straight to the caller, and `/proc` can be mounted for it before `exec`.
//! (`unshare(CLONE_NEWPID)` would only affect the caller's *next* child, which would need a second
//! fork and a relay of the exit status.)
//!
//! With [`Namespace::User`] in the same `clone`, the kernel makes the user namespace first and the
//! others are owned by it: the child holds every capability over its own mounts, host name and
//! network, none over the host's. Its ids mean nothing until the parent writes its id maps
//! ([`crate::userns`]), so the child's first steps wait for the parent ([`await_parent_steps`]).
//! The cgroup namespace is not in the `clone`: the child unshares it only once the parent has put it
//! in its cgroup ([`cgroup_step`]), so that cgroup is the root of what the container sees.

use std::os::fd::RawFd;

use libc::c_int;

use crate::child::{IfName, Op, Step};
use crate::error::RuntimeError;

/// A Linux namespace the container gets a new instance of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Namespace {
    /// User and group ids, and capabilities (`CLONE_NEWUSER`).
    User,
    /// Mount table (`CLONE_NEWNS`).
    Mount,
    /// Process ids (`CLONE_NEWPID`).
    Pid,
    /// Host and domain name (`CLONE_NEWUTS`).
    Uts,
    /// System V IPC and POSIX message queues (`CLONE_NEWIPC`).
    Ipc,
    /// Network devices, addresses, routes, sockets (`CLONE_NEWNET`): the container has only `lo`.
    Net,
    /// The cgroup tree's root (`CLONE_NEWCGROUP`).
    Cgroup,
}

/// The namespaces the container's process is cloned into (the cgroup namespace comes later, by
/// [`cgroup_step`]).
pub const CONTAINER: [Namespace; 6] =
    [Namespace::User, Namespace::Mount, Namespace::Pid, Namespace::Uts, Namespace::Ipc, Namespace::Net];

/// The loopback interface the container's network namespace starts with (down).
pub const LOOPBACK: &str = "lo";

impl Namespace {
    /// The `clone(2)` / `unshare(2)` flag that creates it.
    pub fn clone_flag(self) -> c_int {
        match self {
            Namespace::User => libc::CLONE_NEWUSER,
            Namespace::Mount => libc::CLONE_NEWNS,
            Namespace::Pid => libc::CLONE_NEWPID,
            Namespace::Uts => libc::CLONE_NEWUTS,
            Namespace::Ipc => libc::CLONE_NEWIPC,
            Namespace::Net => libc::CLONE_NEWNET,
            Namespace::Cgroup => libc::CLONE_NEWCGROUP,
        }
    }
}

/// The `clone(2)` flags for a set of namespaces.
pub fn clone_flags(namespaces: &[Namespace]) -> c_int {
    namespaces.iter().fold(0, |flags, ns| flags | ns.clone_flag())
}

/// The child's first steps: close its copy of the sync pipe's write end (else it would never see
/// EOF), block until the parent has written the id maps and placed it in its cgroup, then become
/// root of the user namespace. (Until then it still has the parent's ids, host root, which the
/// namespace does not map: files it created would fail with EOVERFLOW.)
pub(crate) fn await_parent_steps(read: RawFd, write: RawFd) -> Vec<Step> {
    vec![
        Step::new("close the sync pipe's write end", Op::Close(write)),
        Step::new("wait for the parent (id maps, cgroup, rlimits)", Op::AwaitParent(read)),
        Step::new("setgid 0 in the user namespace", Op::SetGid(0)),
        Step::new("setuid 0 in the user namespace", Op::SetUid(0)),
    ]
}

/// A cgroup namespace rooted at the cgroup the child is in now.
pub(crate) fn cgroup_step() -> Step {
    Step::new("unshare the cgroup namespace", Op::Unshare(Namespace::Cgroup.clone_flag()))
}

/// Setup inside the new UTS namespace: the container's host name.
pub(crate) fn uts_steps(hostname: &str) -> Result<Vec<Step>, RuntimeError> {
    if hostname.as_bytes().contains(&0) {
        return Err(RuntimeError::Nul { what: "the host name".into() });
    }
    Ok(vec![Step::new(format!("sethostname {hostname}"), Op::SetHostname(hostname.as_bytes().to_vec()))])
}

/// Setup inside the new network namespace: loopback up, nothing else.
pub(crate) fn net_steps() -> Vec<Step> {
    let mut name = [0u8; libc::IFNAMSIZ];
    for (dst, src) in name.iter_mut().zip(LOOPBACK.bytes()) {
        *dst = src;
    }
    vec![Step::new(format!("bring {LOOPBACK} up"), Op::InterfaceUp(IfName(name)))]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_flags() {
        let f = clone_flags(&CONTAINER);
        assert_eq!(
            f,
            libc::CLONE_NEWUSER
                | libc::CLONE_NEWNS
                | libc::CLONE_NEWPID
                | libc::CLONE_NEWUTS
                | libc::CLONE_NEWIPC
                | libc::CLONE_NEWNET
        );
        // Unshared by the child once it is in its cgroup, not at clone time.
        assert_eq!(f & libc::CLONE_NEWCGROUP, 0);
    }

    #[test]
    fn hostname_step() {
        let s = uts_steps("web").unwrap();
        assert!(matches!(s.as_slice(), [Step { op: Op::SetHostname(n), .. }] if n == b"web"));
        assert!(uts_steps("a\0b").is_err());
    }

    #[test]
    fn loopback_name_is_nul_padded() {
        let s = net_steps();
        let [Step { op: Op::InterfaceUp(IfName(name)), .. }] = s.as_slice() else { panic!("{s:?}") };
        assert_eq!(&name[..3], b"lo\0");
        assert!(name.iter().skip(2).all(|b| *b == 0));
    }
}
