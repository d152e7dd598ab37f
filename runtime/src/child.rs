//! What the container's first process does between `clone` and `exec`.
//!
//! The parent prepares everything as data: an ordered list of [`Step`]s (each one [`Op`] and a
//! description for error messages) and the final [`Exec`]. The child only walks that list against a
//! [`Syscalls`] backend: it allocates nothing and takes no locks, which is what a process forked from
//! a multi-threaded parent may safely do. On failure it reports the index of the failing step and the
//! errno; the parent turns the index back into the step's description.
//!
//! The real backend is `sys::Real`; tests use a recording fake to check the order of mounts and
//! their flags without root.

use std::ffi::{CStr, CString};
use std::fmt;
use std::os::fd::RawFd;

use libc::{c_int, c_ulong};

use crate::process::Exec;

/// An errno value reported by the child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Errno(pub i32);

/// A network interface name, NUL-padded to `IFNAMSIZ` (what `struct ifreq` holds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IfName(pub [u8; libc::IFNAMSIZ]);

/// One classic-BPF seccomp program, in the kernel's layout.
pub(crate) struct Program(pub Vec<libc::sock_filter>);

impl fmt::Debug for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Program({} instructions)", self.0.len())
    }
}

/// One operation of the child, with every path already a C string.
#[derive(Debug)]
pub(crate) enum Op {
    /// close(2).
    Close(RawFd),
    /// Block until the parent writes one byte on this pipe (it has set up the user namespace's id
    /// maps and the cgroup); EOF without the byte means the parent gave up.
    AwaitParent(RawFd),
    /// unshare(2) with these `CLONE_NEW*` flags.
    Unshare(c_int),
    /// Set `IFF_UP` on a network interface (SIOCGIFFLAGS, then SIOCSIFFLAGS).
    InterfaceUp(IfName),
    /// mount(2).
    Mount { source: Option<CString>, target: CString, fstype: Option<CString>, flags: c_ulong, data: Option<CString> },
    /// umount2(2).
    Umount { target: CString, flags: c_int },
    /// pivot_root(2).
    PivotRoot { new_root: CString, put_old: CString },
    /// chdir(2).
    Chdir(CString),
    /// Fail unless the working directory is reachable from the root (`getcwd` gives an
    /// absolute path).
    CheckCwd,
    /// mkdir(2).
    Mkdir { path: CString, mode: u32 },
    /// Create an empty regular file (a bind-mount target).
    CreateFile { path: CString, mode: u32 },
    /// symlink(2): `link` points to `target`.
    Symlink { target: CString, link: CString },
    /// sethostname(2).
    SetHostname(Vec<u8>),
    /// Drop every capability not in this mask (bit n = capability n) from the bounding set;
    /// capabilities the kernel does not know are skipped.
    DropBounding(u64),
    /// Clear the ambient capability set.
    ClearAmbient,
    /// setgroups(2) with an empty list.
    ClearGroups,
    /// setgid(2).
    SetGid(u32),
    /// setuid(2).
    SetUid(u32),
    /// capset(2): effective, permitted and inheritable all set to this mask.
    SetCaps(u64),
    /// prctl(PR_SET_NO_NEW_PRIVS).
    NoNewPrivs,
    /// Install a seccomp filter program (SECCOMP_SET_MODE_FILTER).
    Seccomp(Program),
    /// dup2(2); the result is not close-on-exec.
    Dup2 { from: RawFd, to: RawFd },
    /// Mark every descriptor from `first` up close-on-exec.
    CloseOnExecFrom(RawFd),
    /// Every signal back to its default action, none blocked.
    ResetSignals,
    /// setsid(2).
    NewSession,
    /// Receive exactly `into.len()` descriptors in one message on the socket `sock` (SCM_RIGHTS)
    /// and move them onto the numbers in `into`, close-on-exec (the parent reserved them).
    ReceiveFds { sock: RawFd, into: Vec<RawFd> },
    /// move_mount(2) of the detached mount `fd` onto `target`.
    MoveMount { fd: RawFd, target: CString },
    /// PR_SET_DUMPABLE 0: no ptrace or /proc access by the same uid until exec.
    NotDumpable,
    /// Join the namespace `fd` refers to (setns(2)).
    SetNs { fd: RawFd, nstype: c_int },
    /// Connect a TCP socket to 127.0.0.1:`port`, waiting at most `timeout_ms`.
    TcpConnect { port: u16, timeout_ms: u32 },
    /// End the process with this status (a child that runs no program).
    Exit(c_int),
}

/// One step of the child: what it does and how to name it when it fails.
#[derive(Debug)]
pub(crate) struct Step {
    pub what: String,
    pub op: Op,
    /// ENOENT is not a failure: the step is skipped (a path the running kernel may not have).
    pub optional: bool,
}

impl Step {
    pub(crate) fn new(what: impl Into<String>, op: Op) -> Step {
        Step { what: what.into(), op, optional: false }
    }

    /// The same step, skipped when it fails with ENOENT.
    pub(crate) fn optional(self) -> Step {
        Step { optional: true, ..self }
    }
}

/// Everything the child does, in order: the steps, then the exec.
#[derive(Debug)]
pub(crate) struct ChildPlan {
    pub steps: Vec<Step>,
    pub exec: Exec,
}

impl ChildPlan {
    /// Description of step `index` (the exec is the step after the last one).
    pub(crate) fn describe(&self, index: usize) -> &str {
        self.steps.get(index).map_or(self.exec.what.as_str(), |s| s.what.as_str())
    }
}

/// Where the child failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Failure {
    pub index: usize,
    pub errno: Errno,
}

/// The system calls the child makes. Implementations must not allocate (see the module docs).
pub(crate) trait Syscalls {
    fn close(&mut self, fd: RawFd) -> Result<(), Errno>;
    fn await_parent(&mut self, fd: RawFd) -> Result<(), Errno>;
    fn unshare(&mut self, flags: c_int) -> Result<(), Errno>;
    fn interface_up(&mut self, name: &IfName) -> Result<(), Errno>;
    fn mount(
        &mut self,
        source: Option<&CStr>,
        target: &CStr,
        fstype: Option<&CStr>,
        flags: c_ulong,
        data: Option<&CStr>,
    ) -> Result<(), Errno>;
    fn umount2(&mut self, target: &CStr, flags: c_int) -> Result<(), Errno>;
    fn pivot_root(&mut self, new_root: &CStr, put_old: &CStr) -> Result<(), Errno>;
    fn chdir(&mut self, path: &CStr) -> Result<(), Errno>;
    /// `getcwd`; ENOENT when the directory is not reachable from the root.
    fn check_cwd(&mut self) -> Result<(), Errno>;
    fn mkdir(&mut self, path: &CStr, mode: u32) -> Result<(), Errno>;
    fn create_file(&mut self, path: &CStr, mode: u32) -> Result<(), Errno>;
    fn symlink(&mut self, target: &CStr, link: &CStr) -> Result<(), Errno>;
    fn sethostname(&mut self, name: &[u8]) -> Result<(), Errno>;
    fn drop_bounding(&mut self, keep: u64) -> Result<(), Errno>;
    fn clear_ambient(&mut self) -> Result<(), Errno>;
    fn clear_groups(&mut self) -> Result<(), Errno>;
    fn setgid(&mut self, gid: u32) -> Result<(), Errno>;
    fn setuid(&mut self, uid: u32) -> Result<(), Errno>;
    fn capset(&mut self, mask: u64) -> Result<(), Errno>;
    fn no_new_privs(&mut self) -> Result<(), Errno>;
    fn seccomp(&mut self, program: &[libc::sock_filter]) -> Result<(), Errno>;
    fn dup2(&mut self, from: RawFd, to: RawFd) -> Result<(), Errno>;
    fn close_on_exec_from(&mut self, first: RawFd) -> Result<(), Errno>;
    fn reset_signals(&mut self) -> Result<(), Errno>;
    fn setsid(&mut self) -> Result<(), Errno>;
    /// prctl(PR_SET_DUMPABLE, 0).
    fn not_dumpable(&mut self) -> Result<(), Errno>;
    /// setns(2).
    fn setns(&mut self, fd: RawFd, nstype: c_int) -> Result<(), Errno>;
    /// A TCP connect to 127.0.0.1:`port` within `timeout_ms`.
    fn tcp_connect(&mut self, port: u16, timeout_ms: u32) -> Result<(), Errno>;
    /// _exit(2): returns only in fakes.
    fn exit(&mut self, code: c_int) -> Result<(), Errno>;
    /// Receive descriptors sent with SCM_RIGHTS onto the numbers in `into`.
    fn receive_fds(&mut self, sock: RawFd, into: &[RawFd]) -> Result<(), Errno>;
    /// move_mount(2) of a detached mount onto `target`.
    fn move_mount(&mut self, fd: RawFd, target: &CStr) -> Result<(), Errno>;
    /// execve(2): returns only on failure.
    fn execve(&mut self, path: &CStr, exec: &Exec) -> Errno;
}

/// Run the plan. Returns only on failure (a successful exec never returns).
pub(crate) fn run(plan: &ChildPlan, sys: &mut dyn Syscalls) -> Failure {
    for (index, step) in plan.steps.iter().enumerate() {
        match apply(&step.op, sys) {
            Ok(()) => {}
            Err(Errno(libc::ENOENT)) if step.optional => {}
            Err(errno) => return Failure { index, errno },
        }
    }
    Failure { index: plan.steps.len(), errno: exec(&plan.exec, sys) }
}

fn apply(op: &Op, sys: &mut dyn Syscalls) -> Result<(), Errno> {
    match op {
        Op::Close(fd) => sys.close(*fd),
        Op::AwaitParent(fd) => sys.await_parent(*fd),
        Op::Unshare(flags) => sys.unshare(*flags),
        Op::InterfaceUp(name) => sys.interface_up(name),
        Op::Mount { source, target, fstype, flags, data } => {
            sys.mount(source.as_deref(), target, fstype.as_deref(), *flags, data.as_deref())
        }
        Op::Umount { target, flags } => sys.umount2(target, *flags),
        Op::PivotRoot { new_root, put_old } => sys.pivot_root(new_root, put_old),
        Op::Chdir(path) => sys.chdir(path),
        Op::CheckCwd => sys.check_cwd(),
        Op::Mkdir { path, mode } => sys.mkdir(path, *mode),
        Op::CreateFile { path, mode } => sys.create_file(path, *mode),
        Op::Symlink { target, link } => sys.symlink(target, link),
        Op::SetHostname(name) => sys.sethostname(name),
        Op::DropBounding(keep) => sys.drop_bounding(*keep),
        Op::ClearAmbient => sys.clear_ambient(),
        Op::ClearGroups => sys.clear_groups(),
        Op::SetGid(gid) => sys.setgid(*gid),
        Op::SetUid(uid) => sys.setuid(*uid),
        Op::SetCaps(mask) => sys.capset(*mask),
        Op::NoNewPrivs => sys.no_new_privs(),
        Op::Seccomp(program) => sys.seccomp(&program.0),
        Op::Dup2 { from, to } => sys.dup2(*from, *to),
        Op::CloseOnExecFrom(first) => sys.close_on_exec_from(*first),
        Op::ResetSignals => sys.reset_signals(),
        Op::NewSession => sys.setsid(),
        Op::ReceiveFds { sock, into } => sys.receive_fds(*sock, into),
        Op::MoveMount { fd, target } => sys.move_mount(*fd, target),
        Op::NotDumpable => sys.not_dumpable(),
        Op::SetNs { fd, nstype } => sys.setns(*fd, *nstype),
        Op::TcpConnect { port, timeout_ms } => sys.tcp_connect(*port, *timeout_ms),
        Op::Exit(code) => sys.exit(*code),
    }
}

/// Try each candidate path like execvp(3): go on past the errors that mean "not here", report
/// EACCES if any candidate had it, else the last error.
fn exec(exec: &Exec, sys: &mut dyn Syscalls) -> Errno {
    let mut last = Errno(libc::ENOENT);
    let mut denied = false;
    for path in &exec.candidates {
        let errno = sys.execve(path, exec);
        match errno.0 {
            libc::EACCES => denied = true,
            libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT => {}
            _ => return errno,
        }
        last = errno;
    }
    if denied {
        Errno(libc::EACCES)
    } else {
        last
    }
}

#[cfg(test)]
pub(crate) mod fake {
    //! A recording [`Syscalls`] for unit tests.

    use super::*;

    /// Records each call as a line of text; fails the call whose text starts with `fail_on`.
    #[derive(Default)]
    pub(crate) struct Recorder {
        pub calls: Vec<String>,
        pub fail_on: Option<(String, i32)>,
    }

    fn s(c: &CStr) -> String {
        c.to_string_lossy().into_owned()
    }

    fn o(c: Option<&CStr>) -> String {
        c.map_or_else(|| "-".to_string(), s)
    }

    impl Recorder {
        fn record(&mut self, call: String) -> Result<(), Errno> {
            let fail = self.fail_on.as_ref().filter(|(prefix, _)| call.starts_with(prefix.as_str())).map(|(_, e)| *e);
            self.calls.push(call);
            fail.map_or(Ok(()), |e| Err(Errno(e)))
        }
    }

    impl Syscalls for Recorder {
        fn close(&mut self, fd: RawFd) -> Result<(), Errno> {
            self.record(format!("close {fd}"))
        }
        fn await_parent(&mut self, fd: RawFd) -> Result<(), Errno> {
            self.record(format!("await parent {fd}"))
        }
        fn unshare(&mut self, flags: c_int) -> Result<(), Errno> {
            self.record(format!("unshare {flags:#x}"))
        }
        fn interface_up(&mut self, name: &IfName) -> Result<(), Errno> {
            let end = name.0.iter().position(|b| *b == 0).unwrap_or(name.0.len());
            self.record(format!("up {}", String::from_utf8_lossy(&name.0[..end])))
        }
        fn mount(
            &mut self,
            source: Option<&CStr>,
            target: &CStr,
            fstype: Option<&CStr>,
            flags: c_ulong,
            data: Option<&CStr>,
        ) -> Result<(), Errno> {
            self.record(format!("mount {} {} {} {:#x} {}", o(source), s(target), o(fstype), flags, o(data)))
        }
        fn umount2(&mut self, target: &CStr, flags: c_int) -> Result<(), Errno> {
            self.record(format!("umount2 {} {flags:#x}", s(target)))
        }
        fn pivot_root(&mut self, new_root: &CStr, put_old: &CStr) -> Result<(), Errno> {
            self.record(format!("pivot_root {} {}", s(new_root), s(put_old)))
        }
        fn chdir(&mut self, path: &CStr) -> Result<(), Errno> {
            self.record(format!("chdir {}", s(path)))
        }
        fn check_cwd(&mut self) -> Result<(), Errno> {
            self.record("getcwd".to_string())
        }
        fn mkdir(&mut self, path: &CStr, mode: u32) -> Result<(), Errno> {
            self.record(format!("mkdir {} {mode:o}", s(path)))
        }
        fn create_file(&mut self, path: &CStr, mode: u32) -> Result<(), Errno> {
            self.record(format!("create {} {mode:o}", s(path)))
        }
        fn symlink(&mut self, target: &CStr, link: &CStr) -> Result<(), Errno> {
            self.record(format!("symlink {} -> {}", s(link), s(target)))
        }
        fn sethostname(&mut self, name: &[u8]) -> Result<(), Errno> {
            self.record(format!("sethostname {}", String::from_utf8_lossy(name)))
        }
        fn drop_bounding(&mut self, keep: u64) -> Result<(), Errno> {
            self.record(format!("bounding keep {keep:#x}"))
        }
        fn clear_ambient(&mut self) -> Result<(), Errno> {
            self.record("ambient clear".to_string())
        }
        fn clear_groups(&mut self) -> Result<(), Errno> {
            self.record("setgroups []".to_string())
        }
        fn setgid(&mut self, gid: u32) -> Result<(), Errno> {
            self.record(format!("setgid {gid}"))
        }
        fn setuid(&mut self, uid: u32) -> Result<(), Errno> {
            self.record(format!("setuid {uid}"))
        }
        fn capset(&mut self, mask: u64) -> Result<(), Errno> {
            self.record(format!("capset {mask:#x}"))
        }
        fn no_new_privs(&mut self) -> Result<(), Errno> {
            self.record("no_new_privs".to_string())
        }
        fn seccomp(&mut self, program: &[libc::sock_filter]) -> Result<(), Errno> {
            self.record(format!("seccomp {} insns", program.len()))
        }
        fn dup2(&mut self, from: RawFd, to: RawFd) -> Result<(), Errno> {
            self.record(format!("dup2 {from} {to}"))
        }
        fn close_on_exec_from(&mut self, first: RawFd) -> Result<(), Errno> {
            self.record(format!("cloexec {first}.."))
        }
        fn reset_signals(&mut self) -> Result<(), Errno> {
            self.record("reset signals".to_string())
        }
        fn setsid(&mut self) -> Result<(), Errno> {
            self.record("setsid".to_string())
        }
        fn not_dumpable(&mut self) -> Result<(), Errno> {
            self.record("not dumpable".to_string())
        }
        fn setns(&mut self, fd: RawFd, nstype: c_int) -> Result<(), Errno> {
            self.record(format!("setns {fd} {nstype:#x}"))
        }
        fn tcp_connect(&mut self, port: u16, timeout_ms: u32) -> Result<(), Errno> {
            self.record(format!("connect 127.0.0.1:{port} within {timeout_ms} ms"))
        }
        fn exit(&mut self, code: c_int) -> Result<(), Errno> {
            self.record(format!("exit {code}"))
        }
        fn receive_fds(&mut self, sock: RawFd, into: &[RawFd]) -> Result<(), Errno> {
            self.record(format!("receive fds on {sock} into {into:?}"))
        }
        fn move_mount(&mut self, fd: RawFd, target: &CStr) -> Result<(), Errno> {
            self.record(format!("move_mount {fd} {}", s(target)))
        }
        fn execve(&mut self, path: &CStr, exec: &Exec) -> Errno {
            let argv: Vec<String> = exec.argv.items().iter().map(|a| s(a)).collect();
            // No file exists behind the fake: ENOENT unless told otherwise.
            self.record(format!("execve {} {argv:?}", s(path))).err().unwrap_or(Errno(libc::ENOENT))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::Recorder;
    use super::*;
    use crate::process::Exec;

    fn plan(candidates: &[&str]) -> ChildPlan {
        ChildPlan {
            steps: vec![
                Step::new("first", Op::Chdir(CString::from(c"/a"))),
                Step::new("second", Op::SetUid(7)),
                Step::new("third", Op::NewSession),
            ],
            exec: Exec::for_tests(candidates, "exec prog"),
        }
    }

    #[test]
    fn stops_at_the_first_failing_step() {
        let mut r = Recorder { fail_on: Some(("setuid".into(), libc::EPERM)), ..Default::default() };
        let p = plan(&["/bin/prog"]);
        let f = run(&p, &mut r);
        assert_eq!(f, Failure { index: 1, errno: Errno(libc::EPERM) });
        assert_eq!(p.describe(f.index), "second");
        assert_eq!(r.calls, ["chdir /a", "setuid 7"]);
    }

    #[test]
    fn optional_steps_are_skipped_only_on_enoent() {
        let p = ChildPlan {
            steps: vec![
                Step::new("mask", Op::Chdir(CString::from(c"/proc/timer_stats"))).optional(),
                Step::new("after", Op::SetUid(7)),
            ],
            exec: Exec::for_tests(&["/bin/prog"], "exec prog"),
        };
        let mut r = Recorder { fail_on: Some(("chdir".into(), libc::ENOENT)), ..Default::default() };
        assert_eq!(run(&p, &mut r).index, 2, "ENOENT on an optional step goes on");
        assert_eq!(r.calls.get(1).map(String::as_str), Some("setuid 7"));
        let mut r = Recorder { fail_on: Some(("chdir".into(), libc::EPERM)), ..Default::default() };
        assert_eq!(run(&p, &mut r), Failure { index: 0, errno: Errno(libc::EPERM) }, "other errors stop it");
    }

    #[test]
    fn exec_failure_is_the_step_after_the_last() {
        let mut r = Recorder::default();
        let p = plan(&["/bin/prog"]);
        let f = run(&p, &mut r);
        assert_eq!(f, Failure { index: 3, errno: Errno(libc::ENOENT) });
        assert_eq!(p.describe(f.index), "exec prog");
    }

    #[test]
    fn exec_walks_candidates_like_execvp() {
        // Not found anywhere: ENOENT, every candidate tried.
        let mut r = Recorder::default();
        let p = plan(&["/a/prog", "/b/prog"]);
        assert_eq!(run(&p, &mut r).errno, Errno(libc::ENOENT));
        assert_eq!(r.calls.iter().filter(|c| c.starts_with("execve")).count(), 2);

        // One candidate not executable: EACCES wins over ENOENT, the search goes on.
        let mut r = Recorder { fail_on: Some(("execve /a/".into(), libc::EACCES)), ..Default::default() };
        assert_eq!(run(&p, &mut r).errno, Errno(libc::EACCES));
        assert_eq!(r.calls.iter().filter(|c| c.starts_with("execve")).count(), 2);

        // A hard error stops the search.
        let mut r = Recorder { fail_on: Some(("execve /a/".into(), libc::ENOEXEC)), ..Default::default() };
        assert_eq!(run(&p, &mut r).errno, Errno(libc::ENOEXEC));
        assert_eq!(r.calls.iter().filter(|c| c.starts_with("execve")).count(), 1);
    }
}
