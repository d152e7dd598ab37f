//! Running something inside a started container: a health-check command
//! ([`exec_in_background`]) or a TCP connect in its network namespace ([`connect_in`]). Neither
//! waits for the container: the caller watches the child in its own loop.
//!
//! [`exec_in_background`] gives the new process every restriction the container's first process
//! has: it joins the container's cgroup (the parent places it, as for [`crate::spawn`]) and its
//! user, mount, UTS, IPC, network, cgroup and pid namespaces, then drops capabilities, changes
//! identity, sets `no_new_privs` and installs the seccomp filters, as the first process did. The
//! pid namespace applies to a caller's children only, so the caller enters it just for the clone
//! and goes back to its own at once (allowed: its own is an ancestor of the container's). The
//! child is therefore the caller's direct child, with no relay process.
//!
//! [`connect_in`] only joins the network namespace and connects to `127.0.0.1:PORT`; it runs no
//! code of the container's.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

use keel_plan::Container;

use crate::child::{ChildPlan, Op, Step};
use crate::error::RuntimeError;
use crate::{
    caps, decode_report, kill_and_reap, open_null, place, process, read_report_now, seccomp, started, sys, Cgroup,
};

/// A process started inside a container: its pid (a child of the caller, which must reap it) and
/// the read end of its output (stdout and stderr together; blocking, close-on-exec).
#[derive(Debug)]
pub struct Joined {
    /// Its pid in the caller's pid namespace.
    pub pid: libc::pid_t,
    /// Its stdout and stderr.
    pub output: OwnedFd,
}

/// The namespaces [`exec_in_background`] joins, in order, besides the pid namespace: the user
/// namespace first, so the child holds the capabilities the others need (they are owned by it).
const JOINED: [(&str, libc::c_int); 6] = [
    ("user", libc::CLONE_NEWUSER),
    ("mnt", libc::CLONE_NEWNS),
    ("uts", libc::CLONE_NEWUTS),
    ("ipc", libc::CLONE_NEWIPC),
    ("net", libc::CLONE_NEWNET),
    ("cgroup", libc::CLONE_NEWCGROUP),
];

fn open_ns(pid: libc::pid_t, name: &str) -> Result<OwnedFd, RuntimeError> {
    let path = PathBuf::from(format!("/proc/{pid}/ns/{name}"));
    File::open(&path).map(OwnedFd::from).map_err(|source| RuntimeError::Open { path, source })
}

/// What is not yet known of an [`exec_in_background`] child: whether it exec'd. Holds the read end
/// of its report pipe, and its plan to name a step that failed.
#[derive(Debug)]
pub struct Pending {
    report: OwnedFd,
    plan: ChildPlan,
}

impl Pending {
    /// Whether the child got as far as its exec, asked once it has been reaped: `Ok` if it
    /// reported no failure (it exec'd, or it was killed before it could do either: its exit
    /// status says which), [`RuntimeError::Start`] naming the step (the exec included) that
    /// failed. Never waits: a report not there now was never written.
    pub fn outcome(self) -> Result<(), RuntimeError> {
        let failure = read_report_now(self.report)?;
        started(&self.plan, failure)
    }
}

/// Start `args` inside `container`, whose first process is `target` (a pid in the caller's pid
/// namespace), as the container's user with its environment and working directory. `cgroup` is
/// the container's cgroup, if it has one.
///
/// Returns once the child is released, without waiting for its exec: the container can stop the
/// process (SIGSTOP, or by freezing its cgroup) before that, for as long as it likes. The caller
/// bounds the check's whole run instead (and kills it), reaps it, and only then asks
/// [`Pending::outcome`] whether it exec'd.
pub fn exec_in_background(
    container: &Container,
    target: libc::pid_t,
    args: &[String],
    cgroup: Option<&Cgroup>,
) -> Result<(Joined, Pending), RuntimeError> {
    let exec = process::Exec::new(args, &container.env)?;
    let keep = caps::mask(&container.capabilities)?;
    let programs = seccomp::load(container.seccomp.as_deref())?;
    let namespaces: Vec<(&str, libc::c_int, OwnedFd)> =
        JOINED.iter().map(|&(name, flag)| Ok((name, flag, open_ns(target, name)?))).collect::<Result<_, _>>()?;
    let pid_ns = open_ns(target, "pid")?;
    let own_pid_ns = open_ns(std::process::id() as libc::pid_t, "pid")?;

    let (out_r, out_w) = sys::pipe().map_err(RuntimeError::Pipe)?;
    let (report_r, report_w) = sys::pipe().map_err(RuntimeError::Pipe)?;
    let (sync_r, sync_w) = sys::pipe().map_err(RuntimeError::Pipe)?;
    let null = open_null()?;

    let mut steps = vec![
        // Until it execs, it holds host root's credentials in the container's user namespace:
        // nothing of the container's may ptrace it or open its /proc files meanwhile.
        Step::new("make the process not dumpable", Op::NotDumpable),
        Step::new("close the sync pipe's write end", Op::Close(sync_w.as_raw_fd())),
        Step::new("wait for the parent (cgroup, rlimits)", Op::AwaitParent(sync_r.as_raw_fd())),
    ];
    steps.extend(process::prelude());
    for (name, flag, fd) in &namespaces {
        steps.push(Step::new(
            format!("join the container's {name} namespace"),
            Op::SetNs { fd: fd.as_raw_fd(), nstype: *flag },
        ));
    }
    steps.extend(process::cwd_steps(&container.cwd)?);
    steps.extend(caps::bounding_steps(keep));
    steps.extend(process::identity_steps(container.uid, container.gid));
    steps.push(caps::capset_step(keep, container.uid));
    steps.push(caps::no_new_privs_step());
    let stdio = process::Stdio { stdin: null.as_raw_fd(), stdout: out_w.as_raw_fd(), stderr: out_w.as_raw_fd() };
    steps.extend(process::stdio_steps(stdio));
    steps.extend(seccomp::steps(programs));
    let plan = ChildPlan { steps, exec };

    let pid = sys::with_pid_ns(&pid_ns, &own_pid_ns, || {
        sys::clone_child(0, report_w.as_raw_fd(), || crate::child::run(&plan, &mut sys::Real))
    })
    .map_err(RuntimeError::Clone)?;
    drop((out_w, report_w, null, sync_r, namespaces));
    let released = place(pid, container.nofile, cgroup)
        .and_then(|()| File::from(sync_w).write_all(&[1]).map_err(RuntimeError::Release));
    match released {
        Ok(()) => Ok((Joined { pid, output: out_r }, Pending { report: report_r, plan })),
        Err(e) => {
            kill_and_reap(pid);
            Err(e)
        }
    }
}

/// Connect to `127.0.0.1:port` in the network namespace of `target` (a pid in the caller's pid
/// namespace), giving up after `timeout`. Returns at once: the connect happens in a child, which
/// exits 0 when it connected. On failure it writes its report to `output` and exits 127: decode
/// it with [`connect_failure`].
pub fn connect_in(target: libc::pid_t, port: u16, timeout: Duration) -> Result<Joined, RuntimeError> {
    let net = open_ns(target, "net")?;
    let (out_r, out_w) = sys::pipe().map_err(RuntimeError::Pipe)?;
    let ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
    let plan = ChildPlan {
        steps: vec![
            Step::new(
                "join the container's net namespace",
                Op::SetNs { fd: net.as_raw_fd(), nstype: libc::CLONE_NEWNET },
            ),
            Step::new(format!("connect to 127.0.0.1:{port}"), Op::TcpConnect { port, timeout_ms: ms }),
            Step::new("exit", Op::Exit(0)),
        ],
        exec: process::Exec::new(&["-".to_string()], &[])?,
    };
    let pid = sys::clone_child(0, out_w.as_raw_fd(), || crate::child::run(&plan, &mut sys::Real))
        .map_err(RuntimeError::Clone)?;
    Ok(Joined { pid, output: out_r })
}

/// What the report a failed [`connect_in`] child wrote says, e.g. `connect to 127.0.0.1:80:
/// Connection refused`. `None` if `output` is not such a report.
pub fn connect_failure(port: u16, output: &[u8]) -> Option<String> {
    let failure = decode_report(output).ok()??;
    let what = match failure.index {
        0 => "join the container's net namespace".to_string(),
        _ => format!("connect to 127.0.0.1:{port}"),
    };
    Some(format!("{what}: {}", io::Error::from_raw_os_error(failure.errno.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_reports_decode() {
        let mut r = 1u32.to_le_bytes().to_vec();
        r.extend(libc::ECONNREFUSED.to_le_bytes());
        let m = connect_failure(5432, &r).unwrap();
        assert!(m.starts_with("connect to 127.0.0.1:5432: Connection refused"), "{m}");
        assert_eq!(connect_failure(80, b"hello"), None);
    }

    #[test]
    fn the_user_namespace_is_joined_first() {
        assert_eq!(JOINED[0].1, libc::CLONE_NEWUSER);
        assert!(!JOINED.iter().any(|(_, f)| *f == libc::CLONE_NEWPID), "the pid namespace is entered by the parent");
    }
}
