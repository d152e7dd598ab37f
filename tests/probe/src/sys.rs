//! Every system call keel-probe makes that std does not wrap: the crate's only unsafe code.
//!
//! Each function makes one call (or a fixed pair) and maps a failure to [`Errno`]. The calls the
//! checker expects to be denied take arguments chosen so that, if they were allowed (as they are
//! for root on a build host), they would fail harmlessly or do nothing lasting; each says why.
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr;
use std::time::Duration;

use crate::errno::Errno;

/// `Ok(ret)` for a non-negative return, else the current errno.
fn check(ret: libc::c_long) -> Result<libc::c_long, Errno> {
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(ret)
    }
}

/// Closes a file descriptor a raw system call returned, if it returned one.
fn close_returned(ret: Result<libc::c_long, Errno>) -> Result<libc::c_long, Errno> {
    if let Ok(fd) = ret {
        if let Ok(fd) = i32::try_from(fd) {
            // SAFETY: the kernel just returned `fd` to us as a new descriptor; nothing else owns
            // it, so the OwnedFd is its only owner and closes it once, here.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }
    ret
}

/// write(2): one call, returns how many bytes went out.
pub fn write(fd: i32, buf: &[u8]) -> Result<usize, Errno> {
    // SAFETY: `buf` is a live slice of `buf.len()` readable bytes for the whole call.
    let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
    usize::try_from(n).map_err(|_| Errno::last())
}

/// getpid(2).
pub fn getpid() -> i32 {
    // SAFETY: getpid takes no arguments and cannot fail.
    unsafe { libc::getpid() }
}

/// Which side of a fork this is.
pub enum Fork {
    /// In the new child process.
    Child,
    /// In the parent; the child's pid.
    Parent(i32),
}

/// fork(2).
pub fn fork() -> Result<Fork, Errno> {
    // SAFETY: keel-probe is single-threaded, so the child is a whole copy with no lock held by
    // another thread; children make system calls and leave through `exit_now`.
    let pid = unsafe { libc::fork() };
    match pid {
        p if p < 0 => Err(Errno::last()),
        0 => Ok(Fork::Child),
        p => Ok(Fork::Parent(p)),
    }
}

/// _exit(2): ends the process at once (no atexit handlers, no unwinding); for forked children.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit takes an int and never returns; it touches no memory of ours.
    unsafe { libc::_exit(code) }
}

/// How a waited-for child ended (or changed state).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitStatus {
    /// exit(code).
    Exited(i32),
    /// Killed by this signal.
    Signaled(i32),
    /// Stopped or continued (a traced child); the raw status.
    Other(i32),
}

/// waitpid(2), retried on EINTR: `(pid, status)`.
pub fn waitpid(pid: i32, flags: i32) -> Result<(i32, WaitStatus), Errno> {
    loop {
        let mut status = 0;
        // SAFETY: `status` is a live int on our stack that waitpid writes once.
        let r = unsafe { libc::waitpid(pid, &mut status, flags) };
        if r < 0 {
            let e = Errno::last();
            if e.0 == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        let ws = if libc::WIFEXITED(status) {
            WaitStatus::Exited(libc::WEXITSTATUS(status))
        } else if libc::WIFSIGNALED(status) {
            WaitStatus::Signaled(libc::WTERMSIG(status))
        } else {
            WaitStatus::Other(status)
        };
        return Ok((r, ws));
    }
}

/// kill(2).
pub fn kill(pid: i32, sig: i32) -> Result<(), Errno> {
    // SAFETY: kill takes two integers and no pointers.
    let r = unsafe { libc::kill(pid, sig) };
    check(r.into()).map(drop)
}

fn timespec(d: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: libc::c_long::from(d.subsec_nanos()),
    }
}

fn duration(ts: &libc::timespec) -> Duration {
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u32::try_from(ts.tv_nsec).unwrap_or(0);
    Duration::new(secs, 0).saturating_add(Duration::from_nanos(nanos.into()))
}

/// nanosleep(2) once; an interruption is `Err(EINTR)`.
pub fn nanosleep(d: Duration) -> Result<(), Errno> {
    let ts = timespec(d);
    // SAFETY: `ts` lives on our stack for the call; the remainder pointer may be null.
    let r = unsafe { libc::nanosleep(&ts, ptr::null_mut()) };
    check(r.into()).map(drop)
}

/// pause(2): returns only with the error it failed with (EINTR after a handled signal).
pub fn pause() -> Errno {
    // SAFETY: pause takes no arguments.
    unsafe { libc::pause() };
    Errno::last()
}

/// clock_gettime(2) on `clock`.
pub fn clock_now(clock: libc::clockid_t) -> Result<Duration, Errno> {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a live timespec on our stack that the call fills in.
    let r = unsafe { libc::clock_gettime(clock, &mut ts) };
    check(r.into()).map(|_| duration(&ts))
}

/// CLOCK_MONOTONIC now (zero if the clock cannot be read, which Linux does not do).
pub fn monotonic() -> Duration {
    clock_now(libc::CLOCK_MONOTONIC).unwrap_or_default()
}

/// CPU time this process has used (zero if the clock cannot be read).
pub fn process_cpu() -> Duration {
    clock_now(libc::CLOCK_PROCESS_CPUTIME_ID).unwrap_or_default()
}

/// clock_nanosleep(2) on CLOCK_MONOTONIC until the absolute time `deadline`, once.
pub fn sleep_until(deadline: Duration) -> Result<(), Errno> {
    let ts = timespec(deadline);
    // SAFETY: `ts` lives on our stack for the call; the remainder pointer may be null (and is
    // unused with TIMER_ABSTIME).
    let r = unsafe { libc::clock_nanosleep(libc::CLOCK_MONOTONIC, libc::TIMER_ABSTIME, &ts, ptr::null_mut()) };
    // clock_nanosleep returns the error number instead of setting errno.
    if r == 0 {
        Ok(())
    } else {
        Err(Errno(r))
    }
}

/// statvfs(3)'s `f_flag` for `path`.
pub fn statvfs_flags(path: &CStr) -> Result<libc::c_ulong, Errno> {
    // SAFETY: an all-zero statvfs is a valid value of this plain C struct.
    let mut buf: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `buf` a live statvfs on our stack for the call.
    let r = unsafe { libc::statvfs(path.as_ptr(), &mut buf) };
    check(r.into()).map(|_| buf.f_flag)
}

/// socket(2); the descriptor is closed when the returned value drops.
pub fn socket(domain: i32, ty: i32, protocol: i32) -> Result<OwnedFd, Errno> {
    // SAFETY: socket takes three integers and no pointers.
    let fd = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, protocol) };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: the kernel just returned `fd` as a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// mount(2) of a tmpfs on `target`. Harmless if allowed: the caller makes `target` a fresh
/// empty directory of its own and unmounts it again.
pub fn mount_tmpfs(target: &CStr) -> Result<libc::c_long, Errno> {
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    // SAFETY: every pointer is a NUL-terminated string that outlives the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount,
            c"tmpfs".as_ptr(),
            target.as_ptr(),
            c"tmpfs".as_ptr(),
            flags,
            c"size=4k".as_ptr(),
        )
    };
    check(r)
}

/// umount2(2) with MNT_DETACH.
pub fn umount_detach(target: &CStr) -> Result<libc::c_long, Errno> {
    // SAFETY: `target` is NUL-terminated and outlives the call.
    let r = unsafe { libc::syscall(libc::SYS_umount2, target.as_ptr(), libc::MNT_DETACH) };
    check(r)
}

/// reboot(2) with wrong magic numbers and an unknown command. The kernel checks CAP_SYS_BOOT
/// first (EPERM), then the magic (EINVAL): it can do nothing with these arguments.
pub fn reboot_bad_magic() -> Result<libc::c_long, Errno> {
    const NOT_A_COMMAND: libc::c_uint = 0x6b65_656c; // "keel": no LINUX_REBOOT_CMD_* has this value
                                                     // SAFETY: reboot with bad magic reads no memory; the null `arg` is never looked at.
    let r = unsafe {
        libc::syscall(libc::SYS_reboot, 0 as libc::c_int, 0 as libc::c_int, NOT_A_COMMAND, ptr::null::<u8>())
    };
    check(r)
}

/// init_module(2) of an empty image: CAP_SYS_MODULE is checked first (EPERM), then a length of
/// 0 is shorter than an ELF header (ENOEXEC). Nothing can be loaded.
pub fn init_module_empty() -> Result<libc::c_long, Errno> {
    // SAFETY: a null image of length 0 is never read; the params string is NUL-terminated.
    let r = unsafe { libc::syscall(libc::SYS_init_module, ptr::null::<u8>(), 0 as libc::c_ulong, c"".as_ptr()) };
    check(r)
}

/// finit_module(2) of fd -1: EPERM without CAP_SYS_MODULE, else EBADF.
pub fn finit_module_bad_fd() -> Result<libc::c_long, Errno> {
    // SAFETY: the params string is NUL-terminated and outlives the call; the fd is invalid.
    let r = unsafe { libc::syscall(libc::SYS_finit_module, -1 as libc::c_int, c"".as_ptr(), 0 as libc::c_int) };
    check(r)
}

/// kexec_load(2) with 0 segments and invalid flags. linux/kernel/kexec.c checks CAP_SYS_BOOT
/// first (EPERM), then rejects flag bits outside KEXEC_FLAGS (EINVAL) and an architecture that is
/// neither the kernel's nor KEXEC_ARCH_DEFAULT (EINVAL), before `do_kexec_load`, where 0
/// segments would unload a loaded kernel. Both flag problems are set, so if allowed it fails twice
/// over and loads or unloads nothing.
pub fn kexec_load_invalid() -> Result<libc::c_long, Errno> {
    // 0x7ffe << 16 is no KEXEC_ARCH_* value; 0x8000 is no KEXEC_* flag (they are bits 0-2).
    const INVALID_FLAGS: libc::c_ulong = (0x7ffe << 16) | 0x8000;
    // SAFETY: with 0 segments the null segment list is never read.
    let r = unsafe {
        libc::syscall(libc::SYS_kexec_load, 0 as libc::c_ulong, 0 as libc::c_ulong, ptr::null::<u8>(), INVALID_FLAGS)
    };
    check(r)
}

/// bpf(BPF_PROG_LOAD) with an all-zero attribute: EPERM when unprivileged BPF is off, else a
/// program of 0 instructions is refused (E2BIG/EINVAL). Closes the fd if one came back.
pub fn bpf_prog_load_zeroed() -> Result<libc::c_long, Errno> {
    const BPF_PROG_LOAD: libc::c_int = 5;
    let attr = [0u64; 16];
    // SAFETY: `attr` is 128 readable bytes on our stack, the size we pass; the kernel only reads it.
    let r = unsafe {
        libc::syscall(libc::SYS_bpf, BPF_PROG_LOAD, attr.as_ptr(), std::mem::size_of_val(&attr) as libc::c_uint)
    };
    close_returned(check(r))
}

/// perf_event_open(2) with an all-zero attribute (a CPU-cycle counter on this process): if
/// allowed it only counts our own cycles, and the fd is closed at once.
pub fn perf_event_open_zeroed() -> Result<libc::c_long, Errno> {
    let attr = [0u64; 16];
    // SAFETY: `attr` is 128 readable bytes (a zero `size` field means the 64-byte first version).
    let r = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            attr.as_ptr(),
            0 as libc::pid_t,
            -1 as libc::c_int,
            -1 as libc::c_int,
            0 as libc::c_ulong,
        )
    };
    close_returned(check(r))
}

/// keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0): only looks up an id, creates nothing.
pub fn keyctl_session_id() -> Result<libc::c_long, Errno> {
    const KEYCTL_GET_KEYRING_ID: libc::c_int = 0;
    const KEY_SPEC_SESSION_KEYRING: libc::c_int = -3;
    // SAFETY: this keyctl operation takes integers only.
    let r =
        unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0 as libc::c_int) };
    check(r)
}

/// ptrace(PTRACE_ATTACH, pid): the caller's own sleeping child, which it kills afterwards.
pub fn ptrace_attach(pid: i32) -> Result<libc::c_long, Errno> {
    // SAFETY: PTRACE_ATTACH takes a pid; the address and data arguments are ignored.
    let r = unsafe { libc::syscall(libc::SYS_ptrace, libc::PTRACE_ATTACH, pid, ptr::null::<u8>(), ptr::null::<u8>()) };
    check(r)
}

/// unshare(2). Run it in a throwaway child: if allowed it changes the calling process.
pub fn unshare(flags: i32) -> Result<libc::c_long, Errno> {
    // SAFETY: unshare takes an integer.
    let r = unsafe { libc::syscall(libc::SYS_unshare, flags) };
    check(r)
}

/// io_uring_setup(2) of a one-entry ring: if allowed, the ring's fd is closed at once.
pub fn io_uring_setup_one() -> Result<libc::c_long, Errno> {
    // struct io_uring_params is 120 bytes; all zero asks for the defaults.
    let mut params = [0u64; 15];
    // SAFETY: `params` is 120 writable bytes that the kernel reads and fills in during the call.
    let r = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1 as libc::c_uint, params.as_mut_ptr()) };
    close_returned(check(r))
}

/// userfaultfd(UFFD_USER_MODE_ONLY | O_CLOEXEC): the flag that needs no privilege since 5.11;
/// if allowed, the fd is closed at once.
pub fn userfaultfd_user_mode() -> Result<libc::c_long, Errno> {
    const UFFD_USER_MODE_ONLY: libc::c_int = 1;
    // SAFETY: userfaultfd takes an integer of flags.
    let r = unsafe { libc::syscall(libc::SYS_userfaultfd, UFFD_USER_MODE_ONLY | libc::O_CLOEXEC) };
    close_returned(check(r))
}

/// open_by_handle_at(2) on fd -1 with an empty handle: EPERM without CAP_DAC_READ_SEARCH, then
/// a handle of 0 bytes is EINVAL.
pub fn open_by_handle_at_bad_fd() -> Result<libc::c_long, Errno> {
    // struct file_handle { u32 handle_bytes; int handle_type; u8 f_handle[]; } with 0 bytes.
    let handle = [0u32; 4];
    // SAFETY: `handle` is 16 readable bytes, more than the 8-byte header the kernel reads.
    let r = unsafe { libc::syscall(libc::SYS_open_by_handle_at, -1 as libc::c_int, handle.as_ptr(), libc::O_RDONLY) };
    close_returned(check(r))
}

/// mknodat(2) of a block device `major:minor` at `path`. The caller picks a path in its own
/// private directory and unlinks the node if it was made.
pub fn mknod_block(path: &CStr, major: u32, minor: u32) -> Result<libc::c_long, Errno> {
    let mode = libc::S_IFBLK | 0o600;
    // SAFETY: `path` is NUL-terminated and outlives the call.
    let r =
        unsafe { libc::syscall(libc::SYS_mknodat, libc::AT_FDCWD, path.as_ptr(), mode, libc::makedev(major, minor)) };
    check(r)
}

/// swapon(2) of `path`: EPERM without CAP_SYS_ADMIN, else the open fails (ENOENT) for a path
/// that does not exist.
pub fn swapon(path: &CStr) -> Result<libc::c_long, Errno> {
    // SAFETY: `path` is NUL-terminated and outlives the call.
    let r = unsafe { libc::syscall(libc::SYS_swapon, path.as_ptr(), 0 as libc::c_int) };
    check(r)
}

/// clock_settime(CLOCK_REALTIME) to the time just read from that clock: if allowed, the clock
/// steps back by the few nanoseconds between the two calls and nothing else changes.
pub fn clock_settime_now() -> Result<libc::c_long, Errno> {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a live timespec on our stack that the call fills in.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    check(r.into())?;
    // SAFETY: `ts` is a valid timespec on our stack that the kernel only reads.
    let r = unsafe { libc::syscall(libc::SYS_clock_settime, libc::CLOCK_REALTIME, &ts) };
    check(r)
}

/// send(2) of `buf` on a socket, once; how many bytes went out.
pub fn send(fd: BorrowedFd<'_>, buf: &[u8]) -> Result<usize, Errno> {
    // SAFETY: `buf` is a live slice of `buf.len()` readable bytes for the whole call; `fd` is an
    // open descriptor borrowed for the call.
    let n = unsafe { libc::send(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) };
    usize::try_from(n).map_err(|_| Errno::last())
}

/// sendto(2) of `buf` to `addr:port` (port in host order; ICMP sockets ignore it), once.
pub fn send_to_v4(fd: BorrowedFd<'_>, buf: &[u8], addr: Ipv4Addr, port: u16) -> Result<usize, Errno> {
    // SAFETY: an all-zero sockaddr_in is a valid value of this plain C struct.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_port = port.to_be();
    sa.sin_addr = libc::in_addr { s_addr: u32::from(addr).to_be() };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: `buf` is a live slice of `buf.len()` readable bytes and `sa` a live sockaddr_in of
    // `len` bytes on our stack, both for the whole call; the kernel only reads them.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_NOSIGNAL,
            ptr::addr_of!(sa).cast::<libc::sockaddr>(),
            len,
        )
    };
    usize::try_from(n).map_err(|_| Errno::last())
}

/// recv(2) with MSG_DONTWAIT, once: how many bytes were written into `buf` (a longer datagram
/// is cut to `buf.len()`).
pub fn recv_now(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<usize, Errno> {
    // SAFETY: `buf` is a live, exclusively borrowed slice of `buf.len()` writable bytes for the
    // whole call; the kernel writes at most that many.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    usize::try_from(n).map_err(|_| Errno::last())
}

/// poll(2) for POLLIN on `fd`, once, for at most `timeout`: `Ok(true)` if it is readable (or has
/// an error or hang-up to report), `Ok(false)` on timeout. An interruption is `Err(EINTR)`.
pub fn wait_readable(fd: BorrowedFd<'_>, timeout: Duration) -> Result<bool, Errno> {
    let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: `pfd` is one live pollfd on our stack, the count we pass; the kernel writes only
    // its `revents`.
    let r = unsafe { libc::poll(&mut pfd, 1, ms) };
    check(r.into()).map(|n| n > 0)
}

/// if_nameindex(3): `(index, name)` of every interface in this network namespace (musl and
/// glibc ask rtnetlink, so /sys plays no part).
pub fn interface_names() -> Result<Vec<(u32, String)>, Errno> {
    // SAFETY: if_nameindex takes no arguments; it returns a heap array we free below, or null.
    let head = unsafe { libc::if_nameindex() };
    if head.is_null() {
        return Err(Errno::last());
    }
    let mut out = Vec::new();
    let mut entry = head;
    loop {
        // SAFETY: `entry` points into the array if_nameindex returned, which ends with an entry
        // whose index is 0 and name null; we stop there and never step past it.
        let e = unsafe { &*entry };
        if e.if_index == 0 || e.if_name.is_null() {
            break;
        }
        // SAFETY: a non-terminal entry's name is a NUL-terminated string owned by the array,
        // alive until if_freenameindex; we copy it out before that.
        let name = unsafe { CStr::from_ptr(e.if_name) }.to_string_lossy().into_owned();
        out.push((e.if_index, name));
        // SAFETY: this entry was not the terminator, so the next one is still inside the array.
        entry = unsafe { entry.add(1) };
    }
    // SAFETY: `head` came from if_nameindex and is freed once; no reference into it survives.
    unsafe { libc::if_freenameindex(head) };
    Ok(out)
}

/// poll(2) once on `fds` for at most `timeout`: how many have events (their `revents` set).
/// An interruption is `Err(EINTR)`.
pub fn poll(fds: &mut [libc::pollfd], timeout: Duration) -> Result<usize, Errno> {
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    let count = libc::nfds_t::try_from(fds.len()).map_err(|_| Errno(libc::EINVAL))?;
    // SAFETY: `fds` is a live, exclusively borrowed slice of `count` pollfds for the whole call;
    // the kernel writes only their `revents`.
    let r = unsafe { libc::poll(fds.as_mut_ptr(), count, ms) };
    check(r.into()).map(|n| usize::try_from(n).unwrap_or(0))
}

/// Sets O_NONBLOCK on `fd`'s open file description (fcntl F_GETFL, then F_SETFL).
pub fn set_nonblocking(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    // SAFETY: F_GETFL takes no third argument and reads no memory of ours.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    check(flags.into())?;
    // SAFETY: F_SETFL takes an integer of flags and reads no memory of ours.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) };
    check(r.into()).map(drop)
}

/// Room for the control message of one descriptor, in u64 words so that it is aligned for
/// `struct cmsghdr` (CMSG_SPACE(4) is 24 bytes on 64-bit Linux; 8 words leave plenty).
const CONTROL_WORDS: usize = 8;

/// sendmsg(2) of one byte, `byte`, with `fd` attached (SCM_RIGHTS) on the unix socket `sock`.
pub fn send_fd(sock: BorrowedFd<'_>, fd: BorrowedFd<'_>, byte: u8) -> Result<(), Errno> {
    let mut byte = byte;
    let mut iov = libc::iovec { iov_base: ptr::addr_of_mut!(byte).cast(), iov_len: 1 };
    let mut control = [0u64; CONTROL_WORDS];
    let size = std::mem::size_of::<libc::c_int>() as libc::c_uint;
    // SAFETY: CMSG_SPACE only computes a length.
    let space = unsafe { libc::CMSG_SPACE(size) } as usize;
    if space > std::mem::size_of_val(&control) {
        return Err(Errno(libc::EINVAL));
    }
    // SAFETY: msghdr is plain data (integers and pointers); all zeroes is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: msg_control points at `control`, which holds `space` bytes (checked above).
    let cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    if cmsg.is_null() {
        return Err(Errno(libc::EINVAL));
    }
    // SAFETY: `cmsg` points at the start of `control`; the header and the one int after it
    // (CMSG_DATA) lie within the `space` bytes checked above, which outlive the writes.
    unsafe {
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size) as _;
        libc::CMSG_DATA(cmsg).cast::<libc::c_int>().write_unaligned(fd.as_raw_fd());
    }
    loop {
        // SAFETY: `msg` points at the iovec's one byte and at `control`, all alive on our stack
        // for the call; the kernel only reads them. `sock` is an open descriptor borrowed for it.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        match check(n as libc::c_long) {
            Ok(1) => return Ok(()),
            Ok(_) => return Err(Errno(libc::EPROTO)),
            Err(Errno(libc::EINTR)) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// What one recvmsg(2) on a unix socket brought.
#[derive(Debug)]
pub enum Received {
    /// A byte with a descriptor attached to it (close-on-exec).
    Fd(OwnedFd),
    /// A byte without a descriptor.
    Byte(u8),
    /// The peer closed the connection.
    End,
}

/// recvmsg(2) of one byte and at most one descriptor (SCM_RIGHTS) on the unix socket `sock`,
/// retried on EINTR. Any further descriptor that arrives is closed.
pub fn recv_fd(sock: BorrowedFd<'_>) -> Result<Received, Errno> {
    let mut byte = 0u8;
    let mut iov = libc::iovec { iov_base: ptr::addr_of_mut!(byte).cast(), iov_len: 1 };
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
        let r = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        match check(r as libc::c_long) {
            Err(Errno(libc::EINTR)) => continue,
            other => break other?,
        }
    };
    let mut first: Option<OwnedFd> = None;
    // SAFETY: `msg` was filled in by recvmsg; CMSG_FIRSTHDR and CMSG_NXTHDR stay within
    // `msg_control`/`msg_controllen` (set by the kernel to what it wrote) and return null at the end.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !cmsg.is_null() {
        // SAFETY: a non-null header from CMSG_FIRSTHDR/CMSG_NXTHDR lies within `control`.
        let (level, kind, len) = unsafe { ((*cmsg).cmsg_level, (*cmsg).cmsg_type, (*cmsg).cmsg_len as usize) };
        if level == libc::SOL_SOCKET && kind == libc::SCM_RIGHTS {
            // SAFETY: CMSG_LEN only computes a length.
            let header = unsafe { libc::CMSG_LEN(0) } as usize;
            let count = len.saturating_sub(header) / std::mem::size_of::<libc::c_int>();
            // SAFETY: CMSG_DATA points just past this header, inside `control`.
            let data = unsafe { libc::CMSG_DATA(cmsg) }.cast::<libc::c_int>();
            for i in 0..count {
                // SAFETY: the kernel wrote `count` ints after the header, inside `control`; they
                // may be unaligned.
                let raw = unsafe { data.add(i).read_unaligned() };
                // SAFETY: the kernel just installed `raw` in our table as a new descriptor that
                // nothing else owns; this OwnedFd is its only owner.
                let fd = unsafe { OwnedFd::from_raw_fd(raw) };
                if first.is_none() {
                    first = Some(fd);
                } // else: dropped, so closed
            }
        }
        // SAFETY: as for CMSG_FIRSTHDR above; `cmsg` is a header inside `control`.
        cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
    }
    Ok(match (n, first) {
        (0, _) => Received::End,
        (_, Some(fd)) => Received::Fd(fd),
        (_, None) => Received::Byte(byte),
    })
}
