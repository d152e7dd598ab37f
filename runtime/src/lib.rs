//! keel-runtime: start one container, isolated by default.
//!
//! [`spawn`] clones the container's first process into new user, mount, pid, UTS, IPC and network
//! namespaces ([`namespaces`]). The parent writes its id maps ([`userns`]: container root is the
//! unprivileged host uid `id_base`), sets its `RLIMIT_NOFILE`, puts it in its cgroup v2 with its
//! limits ([`Cgroup`]) and only then releases it. The child unshares a cgroup namespace, sets its
//! host name, brings up `lo`, builds its root filesystem (read-only, or a throwaway overlay the
//! parent mounted; [`rootfs`]) with its volumes (idmapped mounts the parent made once the id maps
//! were written, passed over a socket; module `volumes`), masked `/proc`, read-only `/sys` and
//! its cgroup ([`kernfs`]) and a minimal `/dev` ([`devfs`]), pivots into it, drops every capability it was not given, changes identity,
//! sets `no_new_privs`, redirects stdio ([`process`]), installs its seccomp filters last, and execs.
//! The caller gets the pid (in the caller's pid namespace), the read ends of the stdout and stderr
//! pipes, and the cgroup, and must reap the pid itself (keel-init reaps every child with
//! `waitpid(-1)`).
//!
//! Everything the child does is prepared in the parent as an ordered list of steps (`child`), so
//! the child allocates nothing, and so the order and flags of every step are unit-tested without
//! root through a recording fake. A child that fails before `exec` reports the failing step and
//! errno through a close-on-exec pipe: [`spawn`] returns [`RuntimeError::Start`] naming the step.
//! All unsafe code is in `sys`.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

mod caps;
mod cgroup;
mod child;
pub mod devfs;
mod error;
mod exec;
pub mod kernfs;
pub mod namespaces;
mod overlay;
pub mod process;
pub mod rootfs;
mod seccomp;
mod status;
mod sys;
pub mod userns;
mod volumes;

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use keel_plan::Container;

use crate::child::{ChildPlan, Errno, Failure, Program};
use crate::overlay::Overlay;
use crate::rootfs::Layout;
use crate::userns::IdMap;

pub use crate::cgroup::{prepare_cgroups, Cgroup, CONTROLLERS};
pub use crate::error::RuntimeError;
pub use crate::exec::{connect_failure, connect_in, exec_in_background, Joined, Pending};
pub use crate::status::{signal_name, ExitStatus};

/// Where the host's device nodes are (bind-mounted into each container's `/dev`, and over the
/// masked `/proc` files).
pub const HOST_DEV: &str = "/dev";

/// Where keel-init lets the runtime make per-container scratch directories (on its `/run` tmpfs).
pub const SCRATCH: &str = "/run/keel/containers";

/// Where a container's pieces live on the host.
#[derive(Debug, Clone, Copy)]
pub struct Host<'a> {
    /// Directory the container's `rootfs` is relative to (keel-init: [`keel_plan::IMAGES_MOUNT`]).
    pub images: &'a Path,
    /// cgroup v2 directory under which the container's cgroup `<name>` is made (keel-init:
    /// [`keel_plan::CGROUP_ROOT`], after [`prepare_cgroups`]). `None`: no cgroup is made, the
    /// container stays in the caller's cgroup and has no `/sys/fs/cgroup` (hosts whose cgroup v2
    /// has no controllers).
    pub cgroups: Option<&'a Path>,
    /// Directory the runtime may make per-container subdirectories in (keel-init: [`SCRATCH`]).
    /// For a container with `read_only = false`, [`spawn`] mounts a tmpfs at `<scratch>/<name>`
    /// with the container's overlay in it, and detaches both from the host before it returns:
    /// only the container's mount namespace keeps them, and they vanish with it. The directory
    /// itself stays, empty.
    pub scratch: &'a Path,
    /// Directory holding the volume directories a container's `volumes` name (keel-init:
    /// [`keel_plan::VOLUMES_DIR`]); each is mounted into the container idmapped (see
    /// `volumes`). `None`: a container with volumes fails to start.
    pub volumes: Option<&'a Path>,
}

/// A started container: its first process, the read ends of its output pipes, its cgroup.
#[derive(Debug)]
pub struct Running {
    /// Pid of the container's first process, in the caller's pid namespace (it is 1 inside).
    pub pid: libc::pid_t,
    /// Read end of the container's stdout (blocking, close-on-exec).
    pub stdout: OwnedFd,
    /// Read end of the container's stderr (blocking, close-on-exec).
    pub stderr: OwnedFd,
    /// The container's cgroup (`None` if [`Host::cgroups`] was). Read [`Cgroup::oom_kills`] while
    /// it runs or once it has exited; call [`Cgroup::remove`] after reaping the pid (again later if
    /// it fails with EBUSY), or keep it for a restart: [`spawn`] reuses an existing one.
    pub cgroup: Option<Cgroup>,
}

impl Running {
    /// Send `sig` to the container's first process. (From outside its pid namespace, the kernel
    /// delivers only SIGKILL, SIGSTOP and signals the process has a handler for.)
    pub fn signal(&self, sig: i32) -> io::Result<()> {
        sys::kill(self.pid, sig)
    }
}

/// Start `container`, whose tree is `host.images/<container.rootfs>`.
///
/// Everything that can be checked is checked before the clone (names, id range, mount points,
/// capabilities, the seccomp file, the cgroup and its limits). Returns once the container's
/// command has been exec'd (or failed to be). The caller must reap the returned pid.
pub fn spawn(container: &Container, host: &Host) -> Result<Running, RuntimeError> {
    spawn_with(container, host, &|_| Ok(()))
}

/// Work the caller does for a new container between clone and release, given the child's pid:
/// the child's namespaces exist, its id maps are written, and it has not run a step yet.
/// keel-init sets up the container's network here. An error fails the start.
pub type Prepare<'p> = &'p dyn Fn(libc::pid_t) -> Result<(), String>;

/// [`spawn`], with `prepare` run before the child is released (see [`Prepare`]).
pub fn spawn_with(container: &Container, host: &Host, prepare: Prepare<'_>) -> Result<Running, RuntimeError> {
    if !rootfs::plain_name(&container.name) {
        return Err(RuntimeError::InvalidName(container.name.clone()));
    }
    let ids = IdMap::new(container.id_base)?;
    let root = rootfs::root_dir(host.images, &container.rootfs)?;
    let tmpfs = rootfs::check(&root, &container.tmpfs)?;
    let mut volumes = volumes::Volumes::prepare(&root, host.volumes, &container.volumes)?;
    let exec = process::Exec::new(&container.args, &container.env)?;
    let keep = caps::mask(&container.capabilities)?;
    let programs = seccomp::load(container.seccomp.as_deref())?;
    // Detached from the host when `_overlay` is dropped, at the end of this function: by then the
    // child has its own copy and has made its mounts private (or is gone).
    let (layout, _overlay) = if container.read_only {
        (Layout::ReadOnly { locked: rootfs::locked_flags(&root)? }, None)
    } else {
        let overlay = Overlay::mount(&root, &host.scratch.join(&container.name))?;
        (Layout::Overlay { merged: overlay.merged().to_path_buf() }, Some(overlay))
    };
    let cgroup = host.cgroups.map(|dir| Cgroup::create(dir, &container.name, &container.limits)).transpose()?;

    let (out_r, out_w) = sys::pipe().map_err(RuntimeError::Pipe)?;
    let (err_r, err_w) = sys::pipe().map_err(RuntimeError::Pipe)?;
    let (report_r, report_w) = sys::pipe().map_err(RuntimeError::Pipe)?;
    let (sync_r, sync_w) = sys::pipe().map_err(RuntimeError::Pipe)?;
    let null = open_null()?;
    let setup = Setup {
        volumes: volumes.child_side(),
        root,
        layout,
        tmpfs,
        cgroup: cgroup.is_some(),
        keep,
        programs,
        stdio: process::Stdio { stdin: null.as_raw_fd(), stdout: out_w.as_raw_fd(), stderr: err_w.as_raw_fd() },
        sync: (sync_r.as_raw_fd(), sync_w.as_raw_fd()),
    };
    let plan = child_plan(container, setup, exec)?;

    let flags = namespaces::clone_flags(&namespaces::CONTAINER);
    let pid = sys::clone_child(flags, report_w.as_raw_fd(), || child::run(&plan, &mut sys::Real))
        .map_err(RuntimeError::Clone)?;

    // Our copies of the child's ends: the report pipe reads EOF once the child has exec'd.
    drop((out_w, err_w, report_w, null, sync_r));
    volumes.cloned();
    let started = release(pid, ids, container, cgroup.as_ref(), &volumes, prepare, sync_w)
        .and_then(|()| await_exec(&plan, report_r));
    match started {
        Ok(()) => Ok(Running { pid, stdout: out_r, stderr: err_r, cgroup }),
        Err(e) => {
            // Closing the sync pipe (done) makes the child fail at once; make sure it is gone.
            kill_and_reap(pid);
            discard(cgroup.as_ref());
            Err(e)
        }
    }
}

/// The parent's part, between clone and the child's first step: id maps, rlimit, cgroup, then
/// the byte that releases the child.
fn release(
    pid: libc::pid_t,
    ids: IdMap,
    container: &Container,
    cgroup: Option<&Cgroup>,
    volumes: &volumes::Volumes,
    prepare: Prepare<'_>,
    sync: OwnedFd,
) -> Result<(), RuntimeError> {
    ids.apply(pid)?;
    place(pid, container.nofile, cgroup)?;
    // Needs the id maps: the mounts are idmapped through the child's user namespace.
    volumes.attach(pid)?;
    prepare(pid).map_err(RuntimeError::Prepare)?;
    File::from(sync).write_all(&[1]).map_err(RuntimeError::Release)
}

/// Set a new process's `RLIMIT_NOFILE` and move it into `cgroup`, before it is released. From the
/// parent: raising a hard limit needs CAP_SYS_RESOURCE in the initial user namespace, which the
/// child does not have.
fn place(pid: libc::pid_t, nofile: keel_plan::Rlimit, cgroup: Option<&Cgroup>) -> Result<(), RuntimeError> {
    sys::prlimit(pid, libc::RLIMIT_NOFILE as libc::c_int, nofile.soft, nofile.hard).map_err(RuntimeError::Rlimit)?;
    if let Some(cgroup) = cgroup {
        cgroup.add(pid)?;
    }
    Ok(())
}

/// Wait for a released child to exec: `Ok` once it has, the failing step of `plan` if it
/// reported one on `report`. On an error the caller must [`kill_and_reap`] it.
fn await_exec(plan: &ChildPlan, report: OwnedFd) -> Result<(), RuntimeError> {
    started(plan, read_report(report)?)
}

/// What a child's report says of its start: `Ok` if there was none, else the step of `plan` that
/// failed, with its errno.
fn started(plan: &ChildPlan, report: Option<Failure>) -> Result<(), RuntimeError> {
    match report {
        None => Ok(()),
        Some(failure) => Err(RuntimeError::Start {
            step: describe(plan, failure.index),
            source: io::Error::from_raw_os_error(failure.errno.0),
        }),
    }
}

/// End a child that failed to start (it may be stopped, or mid-setup) and reap it.
fn kill_and_reap(pid: libc::pid_t) {
    let _ = sys::kill(pid, libc::SIGKILL);
    reap(pid);
}

/// The host's /dev/null, numbered above stdio (the child's stdin).
fn open_null() -> Result<OwnedFd, RuntimeError> {
    let path = Path::new(HOST_DEV).join("null");
    File::open(&path)
        .map(OwnedFd::from)
        .and_then(sys::above_stdio)
        .map_err(|source| RuntimeError::Open { path, source })
}

/// After a failed start, the cgroup is empty: remove it (best effort; a restart would reuse it).
fn discard(cgroup: Option<&Cgroup>) {
    if let Some(cgroup) = cgroup {
        let _ = cgroup.remove();
    }
}

/// What the parent prepared for the child, besides the container's own fields.
struct Setup {
    /// The container's tree on the host.
    root: PathBuf,
    layout: Layout,
    /// `tmpfs` paths relative to the root.
    tmpfs: Vec<PathBuf>,
    /// Whether the child is in a cgroup of its own (then it gets `/sys/fs/cgroup`).
    cgroup: bool,
    /// Capabilities kept, as a mask.
    keep: u64,
    programs: Vec<Program>,
    stdio: process::Stdio,
    /// Its volumes: where the child receives and attaches them.
    volumes: volumes::ChildSide,
    /// The sync pipe: (read, write).
    sync: (RawFd, RawFd),
}

/// Everything the child does, in order.
fn child_plan(container: &Container, setup: Setup, exec: process::Exec) -> Result<ChildPlan, RuntimeError> {
    let (read, write) = setup.sync;
    let mut steps = namespaces::await_parent_steps(read, write);
    steps.extend(process::prelude());
    steps.push(namespaces::cgroup_step());
    steps.extend(namespaces::uts_steps(&container.hostname)?);
    steps.extend(namespaces::net_steps());
    let (root_steps, new_root) = rootfs::root_steps(&setup.root, &setup.layout)?;
    steps.extend(root_steps);
    steps.extend(rootfs::tmpfs_steps(&new_root, &setup.tmpfs)?);
    steps.extend(setup.volumes.steps(&new_root)?);
    let host_dev = Path::new(HOST_DEV);
    steps.extend(kernfs::steps(&new_root, host_dev, setup.cgroup)?);
    steps.extend(devfs::steps(&new_root, host_dev)?);
    steps.extend(rootfs::pivot_steps(&new_root)?);
    steps.extend(process::cwd_steps(&container.cwd)?);
    steps.extend(caps::bounding_steps(setup.keep));
    steps.extend(process::identity_steps(container.uid, container.gid));
    steps.push(caps::capset_step(setup.keep, container.uid));
    steps.push(caps::no_new_privs_step());
    steps.extend(process::stdio_steps(setup.stdio));
    steps.extend(seccomp::steps(setup.programs));
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
    decode_report(&buf)
}

/// Read the start report of a child that has ended, without waiting: what the pipe holds now.
/// The report is one write of less than `PIPE_BUF` bytes, so one read gets all of it; a pipe
/// with nothing to read (its write end still open somewhere) holds no report.
fn read_report_now(fd: OwnedFd) -> Result<Option<Failure>, RuntimeError> {
    if !sys::readable_within(fd.as_fd(), Duration::ZERO).map_err(RuntimeError::Report)? {
        return Ok(None);
    }
    let mut buf = [0u8; sys::REPORT_LEN + 1];
    let n = File::from(fd).read(&mut buf).map_err(RuntimeError::Report)?;
    decode_report(buf.get(..n).unwrap_or_default())
}

/// Decode a start report: empty is none, else the failing step's index and errno.
fn decode_report(buf: &[u8]) -> Result<Option<Failure>, RuntimeError> {
    match <[u8; sys::REPORT_LEN]>::try_from(buf) {
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
            id_base: 65_536,
            limits: keel_plan::Limits::default(),
            capabilities: vec![],
            seccomp: None,
            read_only: false,
            tmpfs: vec![],
            nofile: keel_plan::Rlimit { soft: 1024, hard: 4096 },
            restart: keel_plan::Restart::No,
            restart_delay: keel_plan::RestartDelay::default(),
            depends_on: vec![],
            health: None,
            volumes: vec![],
            net: None,
        }
    }

    fn setup(layout: Layout, cgroup: bool, keep: u64, programs: usize) -> Setup {
        let program = || Program(vec![libc::sock_filter { code: 0x06, jt: 0, jf: 0, k: 0x7fff_0000 }]);
        Setup {
            root: PathBuf::from("/run/keel/images/abc"),
            layout,
            tmpfs: vec![PathBuf::from("tmp")],
            cgroup,
            keep,
            programs: (0..programs).map(|_| program()).collect(),
            stdio: process::Stdio { stdin: 10, stdout: 11, stderr: 12 },
            sync: (20, 21),
            volumes: volumes::ChildSide::default(),
        }
    }

    fn calls(c: &Container, setup: Setup) -> (ChildPlan, Vec<String>, Failure) {
        let exec = process::Exec::new(&c.args, &c.env).unwrap();
        let plan = child_plan(c, setup, exec).unwrap();
        let mut r = Recorder::default();
        let failure = child::run(&plan, &mut r);
        (plan, r.calls, failure)
    }

    #[test]
    fn the_child_does_everything_in_order() {
        let mut c = container();
        c.uid = 0;
        let (plan, calls, failure) =
            calls(&c, setup(Layout::ReadOnly { locked: libc::MS_NOSUID | libc::MS_NODEV }, true, 1 << 10, 2));
        let calls: Vec<&str> = calls.iter().map(String::as_str).collect();
        let first_mount = calls.iter().position(|c| c.starts_with("mount ")).unwrap();
        let pivot = calls.iter().position(|c| c.starts_with("pivot_root")).unwrap();
        // Released by the parent first (then root of the user namespace), then namespaces set up
        // before any mount (so the cgroup namespace exists before cgroup2 is mounted).
        assert_eq!(
            calls[..first_mount],
            [
                "close 21",
                "await parent 20",
                "setgid 0",
                "setuid 0",
                "reset signals",
                "setsid",
                "unshare 0x2000000",
                "sethostname web-1",
                "up lo",
            ]
        );
        // Every mount happens before the pivot, inside the new root (the first makes / private).
        let mounts: Vec<&str> = calls[first_mount..pivot].iter().copied().filter(|c| c.starts_with("mount ")).collect();
        assert_eq!(mounts.first(), Some(&"mount - / - 0x44000 -"));
        assert!(mounts.iter().skip(1).all(|c| c.contains(" /run/keel/images/abc")), "{mounts:#?}");
        for needle in [
            "/run/keel/images/abc/tmp tmpfs",
            "proc /run/keel/images/abc/proc",
            "/run/keel/images/abc/proc/sys /run/keel/images/abc/proc/sys",
            "sysfs /run/keel/images/abc/sys sysfs 0xf",
            "cgroup2 /run/keel/images/abc/sys/fs/cgroup",
            "devpts /run/keel/images/abc/dev/pts",
        ] {
            assert!(mounts.iter().any(|m| m.contains(needle)), "no mount with {needle}: {mounts:#?}");
        }
        // After the pivot: bounding set dropped before the identity changes, capabilities set
        // after, no_new_privs, stdio, and the seccomp filters last before the exec.
        assert_eq!(
            calls[pivot..],
            [
                "pivot_root . .",
                "umount2 . 0x2",
                "chdir /",
                "chdir /srv",
                "getcwd",
                "bounding keep 0x400",
                "ambient clear",
                "setgroups []",
                "setgid 100",
                "setuid 0",
                "capset 0x400",
                "no_new_privs",
                "dup2 10 0",
                "dup2 11 1",
                "dup2 12 2",
                "cloexec 3..",
                "seccomp 1 insns",
                "seccomp 1 insns",
                "execve /usr/sbin/httpd [\"httpd\", \"-f\"]",
                "execve /bin/httpd [\"httpd\", \"-f\"]",
            ]
        );
        assert_eq!(describe(&plan, failure.index), "exec httpd (PATH=/usr/sbin:/bin)");
        assert_eq!(failure.errno, Errno(libc::ENOENT));
    }

    #[test]
    fn a_writable_root_pivots_into_the_overlay_and_no_cgroup_means_no_cgroup_mount() {
        let layout = Layout::Overlay { merged: PathBuf::from("/run/keel/containers/web/merged") };
        let (_, calls, _) = calls(&container(), setup(layout, false, 0, 0));
        let merged = "/run/keel/containers/web/merged";
        assert!(calls.contains(&format!("chdir {merged}")));
        assert!(calls.iter().any(|c| c.starts_with(&format!("mount proc {merged}/proc"))));
        assert!(!calls.iter().any(|c| c.contains("cgroup2")));
        assert!(!calls.iter().any(|c| c.starts_with("seccomp")));
        // A non-root user keeps no capabilities.
        assert!(calls.contains(&"capset 0x0".to_string()));
        // The cgroup namespace is unshared anyway: the container never sees the host's paths.
        assert!(calls.contains(&"unshare 0x2000000".to_string()));
    }

    #[test]
    fn out_of_range_reports_are_named() {
        let (plan, _, _) = calls(&container(), setup(Layout::ReadOnly { locked: 0 }, false, 0, 0));
        assert!(describe(&plan, u32::MAX as usize).contains("panicked"));
        assert_eq!(describe(&plan, 1), "wait for the parent (id maps, cgroup, rlimits)");
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

    /// A reaped child's report is read as it is now: a write end left open somewhere (a process
    /// cloned meanwhile) must not make the reader wait for more, with a report or without one.
    #[test]
    fn a_report_is_read_without_waiting() {
        let (r, w) = sys::pipe().unwrap();
        let started = std::time::Instant::now();
        assert_eq!(read_report_now(r).unwrap(), None);

        let (r2, w2) = sys::pipe().unwrap();
        std::io::Write::write_all(&mut File::from(w2.try_clone().unwrap()), &[5, 0, 0, 0, 2, 0, 0, 0]).unwrap();
        assert_eq!(read_report_now(r2).unwrap(), Some(Failure { index: 5, errno: Errno(2) }));
        assert!(started.elapsed() < std::time::Duration::from_secs(1), "waited {:?}", started.elapsed());
        drop((w, w2));

        let (r, w) = sys::pipe().unwrap();
        drop(w);
        assert_eq!(read_report_now(r).unwrap(), None);
    }
}
