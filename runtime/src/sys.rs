//! The runtime's only unsafe code: the system calls, behind a safe API.
//!
//! Every call's return is checked in one place ([`check`] for the child, [`check_io`] for the
//! parent). The child side ([`Real`]) runs in a process cloned from a possibly multi-threaded parent,
//! so it makes raw system calls only: no allocation, no locks, and no libc wrappers that coordinate
//! threads (musl's and glibc's `setuid`/`setgid`/`setgroups` signal every thread they believe
//! exists; the clone has one, so it calls the system calls directly).
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::panic::{self, AssertUnwindSafe};
use std::ptr;

use libc::{c_int, c_long, c_uint, c_ulong};

use crate::child::{Errno, Failure, IfName, Syscalls};
use crate::process::Exec;

/// Size of the child's start report: failing step index (u32 LE), errno (i32 LE).
pub(crate) const REPORT_LEN: usize = 8;

fn last_errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

/// Map a raw return value to the errno on -1.
fn check(ret: impl Into<i64>) -> Result<i64, Errno> {
    match ret.into() {
        -1 => Err(Errno(last_errno())),
        r => Ok(r),
    }
}

fn check_io(ret: impl Into<i64>) -> io::Result<i64> {
    check(ret).map_err(|e| io::Error::from_raw_os_error(e.0))
}

fn ptr_or_null(s: Option<&CStr>) -> *const libc::c_char {
    s.map_or(ptr::null(), CStr::as_ptr)
}

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit capability sets, as two 32-bit halves.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: c_int,
}

/// `struct __user_cap_data_struct`.
#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `struct rlimit64`.
#[repr(C)]
struct Rlimit64 {
    cur: u64,
    max: u64,
}

/// prctl(2) as a raw system call (no libc variadics).
fn prctl(option: c_int, arg2: c_ulong) -> Result<(), Errno> {
    // SAFETY: the options used here take integers only; unused arguments are zero.
    check(unsafe { libc::syscall(libc::SYS_prctl, option, arg2, 0 as c_ulong, 0 as c_ulong, 0 as c_ulong) }).map(drop)
}

/// The real system calls, for the cloned child.
pub(crate) struct Real;

impl Syscalls for Real {
    fn close(&mut self, fd: RawFd) -> Result<(), Errno> {
        // SAFETY: close takes an integer; the descriptor is the child's own copy.
        check(unsafe { libc::close(fd) }).map(drop)
    }

    fn await_parent(&mut self, fd: RawFd) -> Result<(), Errno> {
        let mut byte = 0u8;
        loop {
            // SAFETY: read writes at most one byte into `byte`, which lives on our stack.
            match check(unsafe { libc::read(fd, (&mut byte as *mut u8).cast(), 1) } as i64) {
                Ok(1) => return Ok(()),
                // EOF: the parent closed the pipe without releasing us (it gave up).
                Ok(_) => return Err(Errno(libc::ECANCELED)),
                Err(Errno(libc::EINTR)) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn unshare(&mut self, flags: c_int) -> Result<(), Errno> {
        // SAFETY: unshare takes an integer.
        check(unsafe { libc::unshare(flags) }).map(drop)
    }

    fn interface_up(&mut self, name: &IfName) -> Result<(), Errno> {
        // SAFETY: socket takes integers.
        let fd = check(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })? as c_int;
        // SAFETY: ifreq is plain data (arrays, integers and a union of them); all zeroes is valid.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in req.ifr_name.iter_mut().zip(name.0) {
            *dst = src as libc::c_char;
        }
        let ioctl = |request: c_ulong, req: &mut libc::ifreq| {
            // SAFETY: SIOCGIFFLAGS and SIOCSIFFLAGS read and write one `struct ifreq`, which `req`
            // points to for the duration of the call.
            check(unsafe { libc::syscall(libc::SYS_ioctl, fd, request, req as *mut libc::ifreq) })
        };
        let result = ioctl(libc::SIOCGIFFLAGS as c_ulong, &mut req).and_then(|_| {
            // SAFETY: SIOCGIFFLAGS filled in the `ifru_flags` member of the union.
            unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
            ioctl(libc::SIOCSIFFLAGS as c_ulong, &mut req)
        });
        // SAFETY: `fd` was opened above and is closed exactly once.
        unsafe { libc::close(fd) };
        result.map(drop)
    }

    fn mount(
        &mut self,
        source: Option<&CStr>,
        target: &CStr,
        fstype: Option<&CStr>,
        flags: c_ulong,
        data: Option<&CStr>,
    ) -> Result<(), Errno> {
        // SAFETY: every pointer is null or a NUL-terminated string that outlives the call.
        check(unsafe {
            libc::mount(ptr_or_null(source), target.as_ptr(), ptr_or_null(fstype), flags, ptr_or_null(data).cast())
        })
        .map(drop)
    }

    fn umount2(&mut self, target: &CStr, flags: c_int) -> Result<(), Errno> {
        // SAFETY: `target` is a NUL-terminated string that outlives the call.
        check(unsafe { libc::umount2(target.as_ptr(), flags) }).map(drop)
    }

    fn pivot_root(&mut self, new_root: &CStr, put_old: &CStr) -> Result<(), Errno> {
        // SAFETY: pivot_root takes two NUL-terminated paths, both outliving the call.
        check(unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) }).map(drop)
    }

    fn chdir(&mut self, path: &CStr) -> Result<(), Errno> {
        // SAFETY: `path` is a NUL-terminated string that outlives the call.
        check(unsafe { libc::chdir(path.as_ptr()) }).map(drop)
    }

    fn check_cwd(&mut self) -> Result<(), Errno> {
        let mut buf = [0u8; 4096];
        // SAFETY: the raw system call writes at most `buf.len()` bytes into `buf`, on this
        // stack. (The raw call, not libc's: it returns "(unreachable)…" instead of failing on
        // older kernels, which is exactly what is checked.)
        let n = check(unsafe { libc::syscall(libc::SYS_getcwd, buf.as_mut_ptr(), buf.len()) })?;
        match buf.first() {
            Some(b'/') if n > 0 => Ok(()),
            _ => Err(Errno(libc::ENOENT)),
        }
    }

    fn mkdir(&mut self, path: &CStr, mode: u32) -> Result<(), Errno> {
        // SAFETY: `path` is a NUL-terminated string that outlives the call.
        check(unsafe { libc::mkdir(path.as_ptr(), mode as libc::mode_t) }).map(drop)
    }

    fn create_file(&mut self, path: &CStr, mode: u32) -> Result<(), Errno> {
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: `path` is a NUL-terminated string; the mode argument is what O_CREAT reads.
        let fd = check(unsafe { libc::open(path.as_ptr(), flags, c_uint::from(mode)) })?;
        // SAFETY: `fd` was just opened by us and is closed exactly once.
        check(unsafe { libc::close(fd as c_int) }).map(drop)
    }

    fn symlink(&mut self, target: &CStr, link: &CStr) -> Result<(), Errno> {
        // SAFETY: both are NUL-terminated strings that outlive the call.
        check(unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) }).map(drop)
    }

    fn sethostname(&mut self, name: &[u8]) -> Result<(), Errno> {
        // SAFETY: the kernel reads exactly `name.len()` bytes from `name`.
        check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) }).map(drop)
    }

    fn drop_bounding(&mut self, keep: u64) -> Result<(), Errno> {
        for cap in 0..64u32 {
            if keep & (1 << cap) == 0 {
                match prctl(libc::PR_CAPBSET_DROP, c_ulong::from(cap)) {
                    // EINVAL: a capability this kernel does not have.
                    Ok(()) | Err(Errno(libc::EINVAL)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    fn clear_ambient(&mut self) -> Result<(), Errno> {
        prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as c_ulong)
    }

    fn clear_groups(&mut self) -> Result<(), Errno> {
        // SAFETY: a count of 0 means the kernel reads nothing from the (null) list.
        check(unsafe { libc::syscall(libc::SYS_setgroups, 0 as c_long, ptr::null::<libc::gid_t>()) }).map(drop)
    }

    fn setgid(&mut self, gid: u32) -> Result<(), Errno> {
        // SAFETY: setgid takes an integer; the raw call changes only this (single-threaded) process.
        check(unsafe { libc::syscall(libc::SYS_setgid, c_long::from(gid)) }).map(drop)
    }

    fn setuid(&mut self, uid: u32) -> Result<(), Errno> {
        // SAFETY: setuid takes an integer; the raw call changes only this (single-threaded) process.
        check(unsafe { libc::syscall(libc::SYS_setuid, c_long::from(uid)) }).map(drop)
    }

    fn capset(&mut self, mask: u64) -> Result<(), Errno> {
        let mut header = CapHeader { version: CAPABILITY_VERSION_3, pid: 0 };
        let half = |bits: u64| CapData { effective: bits as u32, permitted: bits as u32, inheritable: bits as u32 };
        let data = [half(mask), half(mask >> 32)];
        // SAFETY: capset reads the header and, for version 3, two data structs, all on our stack.
        check(unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut CapHeader, data.as_ptr()) }).map(drop)
    }

    fn no_new_privs(&mut self) -> Result<(), Errno> {
        prctl(libc::PR_SET_NO_NEW_PRIVS, 1)
    }

    fn seccomp(&mut self, program: &[libc::sock_filter]) -> Result<(), Errno> {
        let len = u16::try_from(program.len()).map_err(|_| Errno(libc::EINVAL))?;
        let prog = libc::sock_fprog { len, filter: program.as_ptr().cast_mut() };
        // SAFETY: the kernel copies `len` instructions from `filter`, which `program` owns for the
        // duration of the call; it never writes through the pointer.
        check(unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER as c_ulong,
                0 as c_ulong,
                &prog as *const libc::sock_fprog,
            )
        })
        .map(drop)
    }

    fn dup2(&mut self, from: RawFd, to: RawFd) -> Result<(), Errno> {
        if from == to {
            // dup2 would be a no-op and leave close-on-exec set: clear it instead.
            // SAFETY: fcntl on an integer descriptor; an invalid one yields EBADF.
            return check(unsafe { libc::fcntl(from, libc::F_SETFD, 0) }).map(drop);
        }
        // SAFETY: dup2 on integer descriptors; invalid ones yield EBADF.
        check(unsafe { libc::dup2(from, to) }).map(drop)
    }

    fn close_on_exec_from(&mut self, first: RawFd) -> Result<(), Errno> {
        let first = c_uint::try_from(first).map_err(|_| Errno(libc::EINVAL))?;
        // SAFETY: close_range only changes descriptor flags; it takes integers.
        let r = unsafe { libc::syscall(libc::SYS_close_range, first, c_uint::MAX, libc::CLOSE_RANGE_CLOEXEC) };
        match check(r) {
            Ok(_) => Ok(()),
            // Kernels before 5.11: mark them one by one.
            Err(Errno(libc::ENOSYS | libc::EINVAL)) => {
                cloexec_one_by_one(first);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn reset_signals(&mut self) -> Result<(), Errno> {
        for sig in 1..=64 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                // SAFETY: SIG_DFL installs no handler; signals libc reserves fail with EINVAL,
                // which is fine to ignore.
                unsafe { libc::signal(sig, libc::SIG_DFL) };
            }
        }
        let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigemptyset initialises the set, which then lives on our stack for the call.
        check(unsafe { libc::sigemptyset(set.as_mut_ptr()) })?;
        // SAFETY: `set` was initialised just above; the old mask is not asked for.
        check(unsafe { libc::sigprocmask(libc::SIG_SETMASK, set.as_ptr(), ptr::null_mut()) }).map(drop)
    }

    fn setsid(&mut self) -> Result<(), Errno> {
        // SAFETY: setsid takes no arguments.
        check(unsafe { libc::setsid() }).map(drop)
    }

    fn not_dumpable(&mut self) -> Result<(), Errno> {
        prctl(libc::PR_SET_DUMPABLE, 0)
    }

    fn setns(&mut self, fd: RawFd, nstype: c_int) -> Result<(), Errno> {
        // SAFETY: setns takes integers; the descriptor is the child's copy of one the parent opened.
        check(unsafe { libc::setns(fd, nstype) }).map(drop)
    }

    fn tcp_connect(&mut self, port: u16, timeout_ms: u32) -> Result<(), Errno> {
        // SAFETY: socket takes integers.
        let fd = check(unsafe {
            libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0)
        })? as c_int;
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr { s_addr: u32::from_be_bytes([127, 0, 0, 1]).to_be() },
            sin_zero: [0; 8],
        };
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // SAFETY: connect reads `len` bytes of the sockaddr_in on our stack.
        match check(unsafe { libc::connect(fd, (&addr as *const libc::sockaddr_in).cast(), len) }) {
            Ok(_) => return Ok(()),
            Err(Errno(libc::EINPROGRESS)) => {}
            Err(e) => return Err(e),
        }
        let mut pfd = libc::pollfd { fd, events: libc::POLLOUT, revents: 0 };
        let timeout = c_int::try_from(timeout_ms).unwrap_or(c_int::MAX);
        // SAFETY: poll reads and writes the one pollfd on our stack.
        if check(unsafe { libc::poll(&mut pfd, 1, timeout) })? == 0 {
            return Err(Errno(libc::ETIMEDOUT));
        }
        let mut err: c_int = 0;
        let mut err_len = std::mem::size_of::<c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `err_len` bytes into `err`, on our stack.
        check(unsafe {
            libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_ERROR, (&mut err as *mut c_int).cast(), &mut err_len)
        })?;
        if err == 0 {
            Ok(())
        } else {
            Err(Errno(err))
        }
    }

    fn exit(&mut self, code: c_int) -> Result<(), Errno> {
        // SAFETY: _exit ends this (cloned) process without running the parent's destructors.
        unsafe { libc::_exit(code) }
    }

    fn receive_fds(&mut self, sock: RawFd, into: &[RawFd]) -> Result<(), Errno> {
        if into.len() > MAX_FDS {
            return Err(Errno(libc::EINVAL));
        }
        let mut byte = 0u8;
        let mut iov = libc::iovec { iov_base: (&mut byte as *mut u8).cast(), iov_len: 1 };
        // u64 words: aligned for `struct cmsghdr`; room for MAX_FDS descriptors (CMSG_SPACE).
        let mut control = [0u64; CONTROL_WORDS];
        // SAFETY: msghdr is plain data (integers and pointers); all zeroes is a valid value.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        let n = loop {
            // SAFETY: recvmsg writes at most one byte into `byte` (the iovec) and at most
            // `msg_controllen` bytes into `control`, both on our stack and alive for the call.
            match check(unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) } as i64) {
                Err(Errno(libc::EINTR)) => continue,
                r => break r?,
            }
        };
        let mut got = 0usize;
        let mut failed = None;
        // SAFETY: `msg` was filled in by recvmsg; CMSG_FIRSTHDR and CMSG_NXTHDR stay inside
        // `msg_control`/`msg_controllen` (which the kernel set to the bytes it wrote) and return
        // null at the end.
        let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
        while !cmsg.is_null() {
            // SAFETY: a non-null header from CMSG_FIRSTHDR/CMSG_NXTHDR lies within `control`.
            let (level, kind, len) = unsafe { ((*cmsg).cmsg_level, (*cmsg).cmsg_type, (*cmsg).cmsg_len as usize) };
            if level == libc::SOL_SOCKET && kind == libc::SCM_RIGHTS {
                // SAFETY: CMSG_LEN only computes a length.
                let header = unsafe { libc::CMSG_LEN(0) } as usize;
                let count = len.saturating_sub(header) / std::mem::size_of::<c_int>();
                // SAFETY: CMSG_DATA points just past this header, inside `control`.
                let data = unsafe { libc::CMSG_DATA(cmsg) } as *const c_int;
                for i in 0..count {
                    // SAFETY: the kernel wrote `count` ints after the header; they may be unaligned.
                    let fd = unsafe { data.add(i).read_unaligned() };
                    if let Some(&slot) = into.get(got) {
                        // SAFETY: dup3 takes integers: `fd` is ours (just received), `slot` is the
                        // number the parent reserved (a placeholder it replaces atomically).
                        if let Err(e) = check(unsafe { libc::dup3(fd, slot, libc::O_CLOEXEC) }) {
                            failed = failed.or(Some(e));
                        }
                    }
                    // SAFETY: `fd` was received by us and is closed once, here.
                    unsafe { libc::close(fd) };
                    got += 1;
                }
            }
            // SAFETY: as for CMSG_FIRSTHDR above.
            cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
        }
        if let Some(e) = failed {
            return Err(e);
        }
        if n != 1 || got != into.len() || msg.msg_flags & libc::MSG_CTRUNC != 0 {
            return Err(Errno(libc::EPROTO));
        }
        Ok(())
    }

    fn move_mount(&mut self, fd: RawFd, target: &CStr) -> Result<(), Errno> {
        // SAFETY: move_mount reads two NUL-terminated paths (an empty one with
        // MOVE_MOUNT_F_EMPTY_PATH: the source is `fd` itself), both outliving the call.
        check(unsafe {
            libc::syscall(
                libc::SYS_move_mount,
                fd,
                c"".as_ptr(),
                libc::AT_FDCWD,
                target.as_ptr(),
                MOVE_MOUNT_F_EMPTY_PATH,
            )
        })
        .map(drop)
    }

    fn execve(&mut self, path: &CStr, exec: &Exec) -> Errno {
        // SAFETY: `path` is NUL-terminated; argv and envp are NUL-terminated arrays of pointers to
        // NUL-terminated strings, all owned by `exec`, which outlives the call.
        unsafe { libc::execve(path.as_ptr(), exec.argv.as_ptr(), exec.envp.as_ptr()) };
        Errno(last_errno())
    }
}

/// A pipe, both ends close-on-exec and numbered above 2 (so dup2 onto 0–2 never clobbers them).
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1 as c_int; 2];
    // SAFETY: pipe2 writes two descriptors into the array we pass.
    check_io(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    let [r, w] = fds;
    // SAFETY: pipe2 succeeded, so both are fresh descriptors that nothing else owns.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(r), OwnedFd::from_raw_fd(w)) };
    Ok((above_stdio(r)?, above_stdio(w)?))
}

/// `fd` itself if it is above 2, else a close-on-exec duplicate that is.
pub(crate) fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: F_DUPFD_CLOEXEC duplicates a descriptor we own to the lowest free number >= 3.
    let dup = check_io(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) })?;
    // SAFETY: fcntl succeeded, so `dup` is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(dup as RawFd) })
}

/// Clone a child with `flags` (namespaces) that runs `child` and, if that returns (a failure),
/// writes the failure to `report` and exits. Returns the child's pid in the caller's pid namespace.
///
/// `child` runs in a copy of the caller made by a raw `clone` (like `fork`): it must not allocate or
/// take locks, since another thread of the caller may have held them at the time of the clone.
pub(crate) fn clone_child(flags: c_int, report: RawFd, child: impl FnOnce() -> Failure) -> io::Result<libc::pid_t> {
    let flags = c_long::from(flags | libc::SIGCHLD);
    // SAFETY: without CLONE_VM or a new stack this is fork(2) with namespace flags: the child gets a
    // copy of the address space and continues here on its copy of this stack. It only runs `child`
    // (raw system calls on data prepared before the clone) and exits; it never returns from here.
    let pid =
        check_io(unsafe { libc::syscall(libc::SYS_clone, flags, 0 as c_long, 0 as c_long, 0 as c_long, 0 as c_long) })?;
    if pid != 0 {
        return libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::EOVERFLOW));
    }
    // A panic must not unwind into the caller's frames in this copy of the process.
    let failure =
        panic::catch_unwind(AssertUnwindSafe(child)).unwrap_or(Failure { index: u32::MAX as usize, errno: Errno(0) });
    let index = u32::try_from(failure.index).unwrap_or(u32::MAX).to_le_bytes();
    let errno = failure.errno.0.to_le_bytes();
    let msg = [index[0], index[1], index[2], index[3], errno[0], errno[1], errno[2], errno[3]];
    // SAFETY: write reads `msg.len()` bytes from our stack; _exit ends this process without running
    // the caller's destructors or atexit handlers, which belong to the parent.
    unsafe {
        libc::write(report, msg.as_ptr().cast(), msg.len());
        libc::_exit(127)
    }
}

/// Run `f` (a clone) with the caller's children going into the pid namespace `ns`, then put the
/// caller back to `own` (its own: always allowed, being an ancestor of `ns`).
pub(crate) fn with_pid_ns<T>(ns: &OwnedFd, own: &OwnedFd, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    // SAFETY: setns takes integers; CLONE_NEWPID changes only where the caller's later children go.
    check_io(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWPID) })?;
    let result = f();
    // SAFETY: as above, back to the caller's own pid namespace.
    let back = check_io(unsafe { libc::setns(own.as_raw_fd(), libc::CLONE_NEWPID) });
    match (result, back) {
        (Ok(v), Ok(_)) => Ok(v),
        (Err(e), _) | (Ok(_), Err(e)) => Err(e),
    }
}

/// Whether `fd` becomes readable (data, EOF or an error) within `timeout`.
pub(crate) fn readable_within(fd: std::os::fd::BorrowedFd<'_>, timeout: std::time::Duration) -> io::Result<bool> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let ms = c_int::try_from(left.as_millis()).unwrap_or(c_int::MAX);
        let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: poll reads and writes the one pollfd on our stack.
        match check_io(unsafe { libc::poll(&mut pfd, 1, ms) }) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Wait for `pid` to end; returns the raw wait status.
pub(crate) fn waitpid(pid: libc::pid_t) -> io::Result<c_int> {
    loop {
        let mut status: c_int = 0;
        // SAFETY: waitpid writes the status into the integer we pass.
        match check_io(unsafe { libc::waitpid(pid, &mut status, 0) }) {
            Ok(_) => return Ok(status),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Set resource limit `resource` of process `pid` (the caller needs CAP_SYS_RESOURCE in the initial
/// user namespace to raise a hard limit).
pub(crate) fn prlimit(pid: libc::pid_t, resource: c_int, soft: u64, hard: u64) -> io::Result<()> {
    let new = Rlimit64 { cur: soft, max: hard };
    // SAFETY: prlimit64 reads one `struct rlimit64` from `new`; the old limit is not asked for.
    check_io(unsafe {
        libc::syscall(libc::SYS_prlimit64, pid, resource, &new as *const Rlimit64, ptr::null_mut::<Rlimit64>())
    })
    .map(drop)
}

/// The `ST_*` mount flags of the filesystem mount holding `path` (statvfs(3)).
pub(crate) fn mount_flags(path: &CStr) -> io::Result<c_ulong> {
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is NUL-terminated; statvfs fills in the struct we pass.
    check_io(unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) })?;
    // SAFETY: statvfs succeeded, so it initialised the struct.
    Ok(unsafe { st.assume_init() }.f_flag as c_ulong)
}

/// mount(2), for the parent.
pub(crate) fn mount(source: &CStr, target: &CStr, fstype: &CStr, flags: c_ulong, data: &CStr) -> io::Result<()> {
    // SAFETY: every pointer is a NUL-terminated string that outlives the call.
    check_io(unsafe { libc::mount(source.as_ptr(), target.as_ptr(), fstype.as_ptr(), flags, data.as_ptr().cast()) })
        .map(drop)
}

/// umount2(2) with MNT_DETACH, for the parent: `target` and every mount under it.
pub(crate) fn detach(target: &CStr) -> io::Result<()> {
    // SAFETY: `target` is a NUL-terminated string that outlives the call.
    check_io(unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) }).map(drop)
}

/// Send `sig` to `pid`.
pub(crate) fn kill(pid: libc::pid_t, sig: c_int) -> io::Result<()> {
    // SAFETY: kill takes integers.
    check_io(unsafe { libc::kill(pid, sig) }).map(drop)
}

/// Most descriptors one [`Syscalls::receive_fds`] takes (the volumes of one container).
pub(crate) const MAX_FDS: usize = 32;
/// `CMSG_SPACE(MAX_FDS * sizeof(int))` in u64 words, rounded up: 16 + 128 bytes on 64-bit Linux.
const CONTROL_WORDS: usize = (16 + MAX_FDS * 4).div_ceil(8) + 1;

/// `OPEN_TREE_CLONE`: a detached copy of the mount at the path (linux/mount.h).
const OPEN_TREE_CLONE: c_uint = 1;
/// `MOVE_MOUNT_F_EMPTY_PATH`: the source is the descriptor itself (linux/mount.h).
const MOVE_MOUNT_F_EMPTY_PATH: c_uint = 0x4;
/// `MOUNT_ATTR_*` flags of mount_setattr(2) (linux/mount.h).
pub(crate) const MOUNT_ATTR_RDONLY: u64 = 0x1;
/// No set-user-id or set-group-id bits honoured.
pub(crate) const MOUNT_ATTR_NOSUID: u64 = 0x2;
/// No device files honoured.
pub(crate) const MOUNT_ATTR_NODEV: u64 = 0x4;
/// Ids seen through the mount are mapped by a user namespace.
pub(crate) const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// `struct mount_attr` (linux/mount.h), MOUNT_ATTR_SIZE_VER0 = 32 bytes.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// A connected pair of AF_UNIX datagram sockets, close-on-exec and numbered above 2.
pub(crate) fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1 as c_int; 2];
    // SAFETY: socketpair writes two descriptors into the array we pass.
    check_io(unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) })?;
    let [a, b] = fds;
    // SAFETY: socketpair succeeded, so both are fresh descriptors that nothing else owns.
    let (a, b) = unsafe { (OwnedFd::from_raw_fd(a), OwnedFd::from_raw_fd(b)) };
    Ok((above_stdio(a)?, above_stdio(b)?))
}

/// open_tree(2) with OPEN_TREE_CLONE: a detached copy of the mount at `path` (not its submounts),
/// close-on-exec; a symlink at `path` is not followed.
pub(crate) fn open_tree_clone(path: &CStr) -> io::Result<OwnedFd> {
    let flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as c_uint | libc::AT_SYMLINK_NOFOLLOW as c_uint;
    // SAFETY: open_tree reads the NUL-terminated `path`, which outlives the call.
    let fd = check_io(unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), flags) })?;
    let fd = RawFd::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: open_tree returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// mount_setattr(2) on the detached mount `mount`: set `attr` (MOUNT_ATTR_*), and with
/// MOUNT_ATTR_IDMAP map its ids through the user namespace `userns`. The caller needs
/// CAP_SYS_ADMIN over the filesystem's user namespace and over `userns`.
pub(crate) fn mount_setattr(mount: &OwnedFd, attr: u64, userns: &OwnedFd) -> io::Result<()> {
    let userns_fd = u64::try_from(userns.as_raw_fd()).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    let attr = MountAttr { attr_set: attr, attr_clr: 0, propagation: 0, userns_fd };
    // SAFETY: mount_setattr reads `size_of::<MountAttr>()` bytes of `attr`, on our stack, and the
    // empty NUL-terminated path (AT_EMPTY_PATH: the mount is `mount` itself).
    check_io(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            mount.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })
    .map(drop)
}

/// Send one byte with `fds` attached (SCM_RIGHTS) on the socket `sock`.
pub(crate) fn send_fds(sock: &OwnedFd, fds: &[OwnedFd]) -> io::Result<()> {
    if fds.len() > MAX_FDS {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let bytes = fds.len() * std::mem::size_of::<c_int>();
    let mut byte = 1u8;
    let mut iov = libc::iovec { iov_base: (&mut byte as *mut u8).cast(), iov_len: 1 };
    let mut control = [0u64; CONTROL_WORDS];
    // SAFETY: msghdr is plain data (integers and pointers); all zeroes is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = control.as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE only computes a length; it fits `control` (MAX_FDS checked above).
        msg.msg_controllen = unsafe { libc::CMSG_SPACE(bytes as c_uint) } as _;
        // SAFETY: msg_control points at `control`, large enough for one header and its data.
        let cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
        if cmsg.is_null() {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: `cmsg` points at the start of `control`; the header and the `fds.len()` ints
        // after it (CMSG_DATA) are inside `control`, which the kernel then reads.
        unsafe {
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(bytes as c_uint) as _;
            let data = libc::CMSG_DATA(cmsg) as *mut c_int;
            for (i, fd) in fds.iter().enumerate() {
                data.add(i).write_unaligned(fd.as_raw_fd());
            }
        }
    }
    // SAFETY: sendmsg reads the iovec's one byte and the control buffer set up above, all alive.
    let n = check_io(unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) } as i64)?;
    if n == 1 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(libc::EPROTO))
    }
}

/// Mark every descriptor from `first` close-on-exec, one `fcntl` each, up to the hard
/// RLIMIT_NOFILE: a descriptor opened while the soft limit was higher stays open when it is
/// lowered, so the soft limit (`sysconf(_SC_OPEN_MAX)`) is not an upper bound; the hard one is
/// (it only ever goes down for an unprivileged process, and never below an open descriptor for
/// one that did not open it above). Async-signal-safe: two system calls and a loop.
pub(crate) fn cloexec_one_by_one(first: c_uint) {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into `lim`, which lives on this stack.
    let max = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        // The kernel's own ceiling (fs.nr_open) is at most 2^30.
        lim.rlim_max.min(1 << 30) as c_uint
    } else {
        1 << 20
    };
    for fd in first..max {
        // SAFETY: fcntl on an integer descriptor; EBADF for closed ones is ignored.
        unsafe { libc::fcntl(fd as c_int, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A working directory reached through a descriptor from outside the root (the
    /// CVE-2024-21626 pattern) is caught; one inside it passes. Needs root (chroot).
    #[test]
    fn a_working_directory_outside_the_root_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::ffi::CString::new(dir.path().as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: fork in a test; the child makes only system calls and leaves with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork");
        if pid == 0 {
            // SAFETY: plain system calls on valid strings and descriptors, in the child only.
            unsafe {
                let outside = libc::open(c"/".as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY);
                if outside < 0 || libc::chroot(root.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
                    libc::_exit(10);
                }
                let inside = Real.check_cwd().is_ok();
                libc::fchdir(outside);
                let escaped = Real.check_cwd().is_err();
                libc::_exit(if inside && escaped { 0 } else { 1 + i32::from(inside) });
            }
        }
        let status = waitpid(pid).unwrap();
        assert!(libc::WIFEXITED(status), "child: {status:#x}");
        assert_eq!(libc::WEXITSTATUS(status), 0, "1: the escape was not caught; 10: setup failed (not root?)");
    }

    /// A descriptor above the soft limit (opened before it was lowered) is still marked.
    #[test]
    fn cloexec_fallback_reaches_past_the_soft_limit() {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes into `lim`.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        assert!(lim.rlim_max > 2100, "this test needs a hard RLIMIT_NOFILE above 2100, not {}", lim.rlim_max);
        let (r, _w) = pipe().unwrap();
        let high = 2050;
        // SAFETY: dup2 onto an unused number; the descriptor is closed below.
        assert_eq!(unsafe { libc::dup2(r.as_raw_fd(), high) }, high);
        // SAFETY: fcntl on the descriptor just made.
        unsafe { libc::fcntl(high, libc::F_SETFD, 0) };
        let lowered = libc::rlimit { rlim_cur: 1024, rlim_max: lim.rlim_max };
        // SAFETY: setrlimit reads `lowered`; the soft limit is put back below.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lowered) }, 0);
        cloexec_one_by_one(1000);
        // SAFETY: as above; reads the flags of `high`.
        let flags = unsafe { libc::fcntl(high, libc::F_GETFD) };
        // SAFETY: restores the limits read above and closes `high`.
        unsafe {
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            libc::close(high);
        }
        assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC, "fd {high} above the soft limit was missed");
    }
}
