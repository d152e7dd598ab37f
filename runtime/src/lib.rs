//! keel-runtime: start one container.
//!
//! [`spawn`] clones the container's first process into new mount, pid, UTS and IPC namespaces
//! ([`namespaces`]), builds its root filesystem and pivots into it ([`rootfs`]), sets its host
//! name, working directory, identity and stdio, and execs its command ([`process`]). The caller gets
//! the pid (in the caller's pid namespace) and the read ends of the stdout and stderr pipes, and
//! must reap the pid itself (keel-init reaps every child with `waitpid(-1)`).
//!
//! Everything the child does is prepared in the parent as an ordered list of steps (`child`), so
//! the child allocates nothing, and so the order and flags of every mount are unit-tested without
//! root through a recording fake. A child that fails before `exec` reports the failing step and
//! errno through a close-on-exec pipe: [`spawn`] returns [`RuntimeError::Start`] naming the step.
//! All unsafe code is in `sys`.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

mod child;
mod error;
pub mod namespaces;
pub mod process;
pub mod rootfs;
mod status;
mod sys;

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use keel_plan::Container;

use crate::child::{ChildPlan, Errno, Failure};

pub use crate::error::RuntimeError;
pub use crate::status::{signal_name, ExitStatus};

/// Where the host's device nodes are (bind-mounted into each container's `/dev`).
pub const HOST_DEV: &str = "/dev";

/// A started container: its first process and the read ends of its output pipes.
#[derive(Debug)]
pub struct Running {
    /// Pid of the container's first process, in the caller's pid namespace (it is 1 inside).
    pub pid: libc::pid_t,
    /// Read end of the container's stdout (blocking, close-on-exec).
    pub stdout: OwnedFd,
    /// Read end of the container's stderr (blocking, close-on-exec).
    pub stderr: OwnedFd,
}

impl Running {
    /// Send `sig` to the container's first process. (From outside its pid namespace, the kernel
    /// delivers only SIGKILL, SIGSTOP and signals the process has a handler for.)
    pub fn signal(&self, sig: i32) -> io::Result<()> {
        sys::kill(self.pid, sig)
    }
}

/// Start `container`, whose tree is `images_root/<container.rootfs>`.
///
/// Returns once the container's command has been exec'd (or failed to be). The caller must reap
/// the returned pid.
pub fn spawn(container: &Container, images_root: &Path) -> Result<Running, RuntimeError> {
    let root = rootfs::root_dir(images_root, &container.rootfs)?;
    rootfs::check(&root)?;
    let exec = process::Exec::new(&container.args, &container.env)?;

    let (out_r, out_w) = sys::pipe().map_err(RuntimeError::Pipe)?;
    let (err_r, err_w) = sys::pipe().map_err(RuntimeError::Pipe)?;
    let (report_r, report_w) = sys::pipe().map_err(RuntimeError::Pipe)?;
    let null_path = Path::new(HOST_DEV).join("null");
    let null = File::open(&null_path)
        .map(OwnedFd::from)
        .and_then(sys::above_stdio)
        .map_err(|source| RuntimeError::Open { path: null_path, source })?;
    let stdio = process::Stdio { stdin: null.as_raw_fd(), stdout: out_w.as_raw_fd(), stderr: err_w.as_raw_fd() };

    let plan = child_plan(container, &root, stdio, exec)?;

    let flags = namespaces::clone_flags(&namespaces::CONTAINER);
    let pid = sys::clone_child(flags, report_w.as_raw_fd(), || child::run(&plan, &mut sys::Real))
        .map_err(RuntimeError::Clone)?;

    // Our copies of the child's ends: the report pipe reads EOF once the child has exec'd.
    drop((out_w, err_w, report_w, null));
    match read_report(report_r) {
        Ok(None) => Ok(Running { pid, stdout: out_r, stderr: err_r }),
        Ok(Some(failure)) => {
            reap(pid);
            Err(RuntimeError::Start {
                step: describe(&plan, failure.index),
                source: io::Error::from_raw_os_error(failure.errno.0),
            })
        }
        Err(e) => {
            // The child is in an unknown state: make sure it is gone before reaping it.
            let _ = sys::kill(pid, libc::SIGKILL);
            reap(pid);
            Err(e)
        }
    }
}

/// Everything the child does, in order.
fn child_plan(
    container: &Container,
    root: &Path,
    stdio: process::Stdio,
    exec: process::Exec,
) -> Result<ChildPlan, RuntimeError> {
    let mut steps = process::prelude();
    steps.extend(rootfs::steps(root, Path::new(HOST_DEV))?);
    steps.extend(namespaces::uts_steps(&container.hostname)?);
    steps.extend(process::finish(&container.cwd, container.uid, container.gid, stdio)?);
    Ok(ChildPlan { steps, exec })
}

/// Wait (blocking) for `pid` to end and decode how it ended.
pub fn wait(pid: libc::pid_t) -> Result<ExitStatus, RuntimeError> {
    sys::waitpid(pid).map(ExitStatus::from_wait_status).map_err(|source| RuntimeError::Wait { pid, source })
}

fn reap(pid: libc::pid_t) {
    // The child exits right after reporting; an error here means someone else reaped it.
    let _ = sys::waitpid(pid);
}

fn describe(plan: &ChildPlan, index: usize) -> String {
    if index <= plan.steps.len() {
        plan.describe(index).to_string()
    } else {
        "set up the container (the child panicked)".to_string()
    }
}

/// Read the child's start report: nothing (EOF at once) means it exec'd.
fn read_report(fd: OwnedFd) -> Result<Option<Failure>, RuntimeError> {
    let mut buf = Vec::with_capacity(sys::REPORT_LEN);
    File::from(fd).take(sys::REPORT_LEN as u64 + 1).read_to_end(&mut buf).map_err(RuntimeError::Report)?;
    match <[u8; sys::REPORT_LEN]>::try_from(buf.as_slice()) {
        Ok([i0, i1, i2, i3, e0, e1, e2, e3]) => Ok(Some(Failure {
            index: u32::from_le_bytes([i0, i1, i2, i3]) as usize,
            errno: Errno(i32::from_le_bytes([e0, e1, e2, e3])),
        })),
        Err(_) if buf.is_empty() => Ok(None),
        Err(_) => Err(RuntimeError::ShortReport(buf.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::child::fake::Recorder;

    fn container() -> Container {
        Container {
            name: "web".into(),
            rootfs: "abc".into(),
            args: vec!["httpd".into(), "-f".into()],
            env: vec!["PATH=/usr/sbin:/bin".into()],
            cwd: "/srv".into(),
            hostname: "web-1".into(),
            uid: 1000,
            gid: 100,
            id_base: 0,
            limits: keel_plan::Limits::default(),
            capabilities: vec![],
            seccomp: None,
            read_only: false,
            tmpfs: vec![],
            nofile: keel_plan::Rlimit { soft: 1024, hard: 4096 },
        }
    }

    #[test]
    fn the_child_does_everything_in_order() {
        let c = container();
        let exec = process::Exec::new(&c.args, &c.env).unwrap();
        let stdio = process::Stdio { stdin: 10, stdout: 11, stderr: 12 };
        let plan = child_plan(&c, Path::new("/run/keel/images/abc"), stdio, exec).unwrap();
        let mut r = Recorder::default();
        let failure = child::run(&plan, &mut r);
        let calls: Vec<&str> = r.calls.iter().map(String::as_str).collect();
        let (head, tail) = calls.split_at(2);
        assert_eq!(head, ["reset signals", "setsid"]);
        let pivot = tail.iter().position(|c| c.starts_with("pivot_root")).unwrap();
        // Every mount happens before the pivot, inside the new root.
        assert!(tail[..pivot]
            .iter()
            .filter(|c| c.starts_with("mount "))
            .skip(1)
            .all(|c| c.contains(" /run/keel/images/abc")));
        assert_eq!(
            tail[pivot..],
            [
                "pivot_root . .",
                "umount2 . 0x2",
                "chdir /",
                "sethostname web-1",
                "chdir /srv",
                "setgroups []",
                "setgid 100",
                "setuid 1000",
                "dup2 10 0",
                "dup2 11 1",
                "dup2 12 2",
                "cloexec 3..",
                "execve /usr/sbin/httpd [\"httpd\", \"-f\"]",
                "execve /bin/httpd [\"httpd\", \"-f\"]",
            ]
        );
        assert_eq!(describe(&plan, failure.index), "exec httpd (PATH=/usr/sbin:/bin)");
        assert_eq!(failure.errno, Errno(libc::ENOENT));
    }

    #[test]
    fn out_of_range_reports_are_named() {
        let c = container();
        let exec = process::Exec::new(&c.args, &c.env).unwrap();
        let stdio = process::Stdio { stdin: 10, stdout: 11, stderr: 12 };
        let plan = child_plan(&c, Path::new("/x"), stdio, exec).unwrap();
        assert!(describe(&plan, u32::MAX as usize).contains("panicked"));
        assert_eq!(describe(&plan, 0), "reset signals");
    }

    #[test]
    fn reports_are_decoded() {
        let (r, w) = sys::pipe().unwrap();
        drop(w);
        assert_eq!(read_report(r).unwrap(), None);

        let (r, w) = sys::pipe().unwrap();
        let mut w = File::from(w);
        std::io::Write::write_all(&mut w, &[5, 0, 0, 0, 2, 0, 0, 0]).unwrap();
        drop(w);
        assert_eq!(read_report(r).unwrap(), Some(Failure { index: 5, errno: Errno(2) }));

        let (r, w) = sys::pipe().unwrap();
        let mut w = File::from(w);
        std::io::Write::write_all(&mut w, &[5, 0]).unwrap();
        drop(w);
        assert!(matches!(read_report(r), Err(RuntimeError::ShortReport(2))));
    }
}
