//! keel-init's only unsafe code: the system calls PID 1 makes, behind a safe API.
//!
//! Every call's return goes through [`check`], which turns -1 into the errno as an `io::Error`;
//! callers add the step's name.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::Duration;

use libc::{c_int, c_ulong};

fn check(ret: impl Into<i64>) -> io::Result<i64> {
    match ret.into() {
        -1 => Err(io::Error::last_os_error()),
        r => Ok(r),
    }
}

fn cstring(s: impl Into<Vec<u8>>) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "contains a NUL byte"))
}

fn cpath(p: &Path) -> io::Result<CString> {
    cstring(std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()))
}

/// Is `fd` an open descriptor?
pub fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only reads the descriptor's flags; a closed one yields EBADF.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

/// Open `path` (the console) onto every one of fds 0, 1 and 2 that is not open.
pub fn reopen_stdio(path: &Path) -> io::Result<()> {
    let missing: Vec<RawFd> = (0..3).filter(|&fd| !fd_is_open(fd)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let p = cpath(path)?;
    // SAFETY: `p` is a NUL-terminated path; the new descriptor is the lowest free one.
    let fd = check(unsafe { libc::open(p.as_ptr(), libc::O_RDWR | libc::O_NOCTTY) })? as RawFd;
    for target in missing {
        if target != fd {
            // SAFETY: dup2 on integer descriptors, `fd` open.
            check(unsafe { libc::dup2(fd, target) })?;
        }
    }
    if fd > 2 {
        // SAFETY: `fd` was opened above and is closed once; its copies stay open.
        unsafe { libc::close(fd) };
    }
    Ok(())
}

/// Block `signals` and return a non-blocking, close-on-exec signalfd that reads them.
pub fn signalfd(signals: &[c_int]) -> io::Result<OwnedFd> {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set on our stack.
    check(unsafe { libc::sigemptyset(set.as_mut_ptr()) })?;
    for &sig in signals {
        // SAFETY: the set was initialised above.
        check(unsafe { libc::sigaddset(set.as_mut_ptr(), sig) })?;
    }
    // SAFETY: the set is initialised; the old mask is not asked for.
    check(unsafe { libc::sigprocmask(libc::SIG_BLOCK, set.as_ptr(), std::ptr::null_mut()) })?;
    // SAFETY: -1 asks for a new signalfd for the initialised set.
    let fd = check(unsafe { libc::signalfd(-1, set.as_ptr(), libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) })?;
    // SAFETY: signalfd returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Read every pending signal from a non-blocking signalfd.
pub fn read_signals(fd: BorrowedFd<'_>) -> io::Result<Vec<c_int>> {
    let mut out = Vec::new();
    loop {
        // SAFETY: signalfd_siginfo is plain integers, for which all-zero is a valid value.
        let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        // SAFETY: read writes at most `size` bytes into `info`.
        let n = unsafe { libc::read(fd.as_raw_fd(), (&mut info as *mut libc::signalfd_siginfo).cast(), size) };
        match check(n as i64) {
            Ok(n) if n as usize == size => out.push(info.ssi_signo as c_int),
            Ok(_) => return Ok(out),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(out),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Bind socket `fd` to network interface `dev` (SO_BINDTODEVICE): it then only sees packets
/// that came in on that interface.
pub fn bind_to_device(fd: BorrowedFd<'_>, dev: &str) -> io::Result<()> {
    let name = CString::new(dev).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let bytes = name.as_bytes_with_nul();
    let len = libc::socklen_t::try_from(bytes.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: the kernel reads `len` bytes from `bytes`, a NUL-terminated name that outlives the
    // call; `fd` is a socket borrowed for the call.
    check(unsafe {
        libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_BINDTODEVICE, bytes.as_ptr().cast(), len)
    })?;
    Ok(())
}

/// poll(2) on `fds`, for at most `timeout` (forever if `None`). Returns how many are ready.
pub fn poll(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> io::Result<usize> {
    let ms = timeout.map_or(-1, |t| c_int::try_from(t.as_millis().saturating_add(1)).unwrap_or(c_int::MAX));
    // SAFETY: the kernel reads and writes exactly `fds.len()` pollfd entries of the slice.
    let n = check(unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) })?;
    Ok(n as usize)
}

/// Make `fd` non-blocking.
pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL read and set the status flags of a descriptor we borrow.
    let flags = check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })? as c_int;
    // SAFETY: as above.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) }).map(drop)
}

/// Time since boot, suspend included (CLOCK_BOOTTIME).
pub fn boottime() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes only into the timespec we pass.
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(u64::try_from(ts.tv_sec).unwrap_or(0), u32::try_from(ts.tv_nsec).unwrap_or(0))
}

/// mount(2).
pub fn mount(
    source: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let source = source.map(cstring).transpose()?;
    let target = cpath(target)?;
    let fstype = fstype.map(cstring).transpose()?;
    let data = data.map(cstring).transpose()?;
    let p = |s: &Option<CString>| s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
    // SAFETY: every pointer is null or a NUL-terminated string that outlives the call.
    check(unsafe { libc::mount(p(&source), target.as_ptr(), p(&fstype), flags, p(&data).cast()) }).map(drop)
}

/// umount2(2).
pub fn umount2(target: &Path, flags: c_int) -> io::Result<()> {
    let target = cpath(target)?;
    // SAFETY: `target` is a NUL-terminated string that outlives the call.
    check(unsafe { libc::umount2(target.as_ptr(), flags) }).map(drop)
}

/// finit_module(2) with no parameters.
pub fn finit_module(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: finit_module reads the module from the descriptor we borrow; the parameter string
    // is an empty NUL-terminated literal.
    check(unsafe { libc::syscall(libc::SYS_finit_module, fd.as_raw_fd(), c"".as_ptr(), 0 as c_int) }).map(drop)
}

/// sethostname(2).
pub fn sethostname(name: &str) -> io::Result<()> {
    // SAFETY: the kernel reads exactly `name.len()` bytes.
    check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) }).map(drop)
}

/// kill(2).
pub fn kill(pid: libc::pid_t, sig: c_int) -> io::Result<()> {
    // SAFETY: kill takes integers.
    check(unsafe { libc::kill(pid, sig) }).map(drop)
}

/// What `waitpid(-1, WNOHANG)` found.
#[derive(Debug, PartialEq, Eq)]
pub enum Reaped {
    /// A child ended: its pid and raw wait status.
    Child(libc::pid_t, c_int),
    /// Children exist but none has ended.
    Running,
    /// There are no children.
    NoChildren,
}

/// Reap one ended child, if any, without blocking.
pub fn reap_one() -> io::Result<Reaped> {
    let mut status: c_int = 0;
    // SAFETY: waitpid writes the status into the integer we pass.
    match check(unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) }) {
        Ok(0) => Ok(Reaped::Running),
        Ok(pid) => Ok(Reaped::Child(pid as libc::pid_t, status)),
        Err(e) if e.raw_os_error() == Some(libc::ECHILD) => Ok(Reaped::NoChildren),
        Err(e) => Err(e),
    }
}

/// sync(2).
pub fn sync() {
    // SAFETY: sync takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

/// reboot(2) with `cmd` (`RB_POWER_OFF`, `RB_AUTOBOOT`). Returns only on failure.
pub fn reboot(cmd: c_int) -> io::Error {
    // SAFETY: reboot takes an integer command; as PID 1 with CAP_SYS_BOOT it does not return.
    unsafe { libc::reboot(cmd) };
    io::Error::last_os_error()
}

/// Have Ctrl-Alt-Del send SIGINT to PID 1 instead of rebooting at once.
pub fn ctrl_alt_del_to_sigint() -> io::Result<()> {
    // SAFETY: reboot with RB_DISABLE_CAD only changes how the kernel handles Ctrl-Alt-Del.
    check(unsafe { libc::reboot(libc::RB_DISABLE_CAD) }).map(drop)
}

/// Wait until everything written to the terminal `fd` has been sent.
pub fn tcdrain(fd: impl AsFd) -> io::Result<()> {
    // SAFETY: tcdrain takes a descriptor we borrow.
    check(unsafe { libc::tcdrain(fd.as_fd().as_raw_fd()) }).map(drop)
}

// Block devices, ext4 and the RTC: the ioctls of keel-data's growth and the clock. The numbers
// are the asm-generic _IOC encodings, the same on x86_64 and aarch64.

/// `BLKFLSBUF`: `_IO(0x12, 97)`.
const BLKFLSBUF: c_ulong = 0x1261;
/// `BLKPG`: `_IO(0x12, 105)`.
const BLKPG: c_ulong = 0x1269;
/// `BLKPG_RESIZE_PARTITION`, the `op` of a `BLKPG` request.
const BLKPG_RESIZE_PARTITION: c_int = 3;
/// `EXT4_IOC_RESIZE_FS`: `_IOW('f', 16, __u64)`.
const EXT4_IOC_RESIZE_FS: c_ulong = 0x4008_6610;
/// `RTC_RD_TIME`: `_IOR('p', 0x09, struct rtc_time)` (9 ints, 36 bytes).
const RTC_RD_TIME: c_ulong = 0x8024_7009;

/// `struct blkpg_partition` (linux/blkpg.h).
#[repr(C)]
struct BlkpgPartition {
    start: libc::c_longlong,
    length: libc::c_longlong,
    pno: c_int,
    devname: [libc::c_char; 64],
    volname: [libc::c_char; 64],
}

/// `struct blkpg_ioctl_arg` (linux/blkpg.h).
#[repr(C)]
struct BlkpgIoctlArg {
    op: c_int,
    flags: c_int,
    datalen: c_int,
    data: *mut libc::c_void,
}

/// `struct rtc_time` (linux/rtc.h): a broken-down UTC time, `tm_year` since 1900, `tm_mon` 0-11.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RtcTime {
    /// Seconds, 0-59.
    pub sec: c_int,
    /// Minutes, 0-59.
    pub min: c_int,
    /// Hours, 0-23.
    pub hour: c_int,
    /// Day of the month, 1-31.
    pub mday: c_int,
    /// Month, 0-11.
    pub mon: c_int,
    /// Years since 1900.
    pub year: c_int,
    /// Unused.
    pub wday: c_int,
    /// Unused.
    pub yday: c_int,
    /// Unused.
    pub isdst: c_int,
}

/// Write back and drop the page cache of the block device `fd` (BLKFLSBUF).
pub fn blkflsbuf(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: BLKFLSBUF takes no argument; the descriptor is borrowed for the call.
    check(unsafe { libc::syscall(libc::SYS_ioctl, fd.as_raw_fd(), BLKFLSBUF, 0 as c_ulong) }).map(drop)
}

/// Tell the kernel that partition `number` of the whole disk `fd` now spans `length` bytes from
/// byte `start` (BLKPG_RESIZE_PARTITION; works while partitions of the disk are in use, unlike
/// BLKRRPART).
pub fn blkpg_resize(fd: BorrowedFd<'_>, number: u32, start: u64, length: u64) -> io::Result<()> {
    let invalid = |_| io::Error::from_raw_os_error(libc::EINVAL);
    let mut part = BlkpgPartition {
        start: i64::try_from(start).map_err(invalid)?,
        length: i64::try_from(length).map_err(invalid)?,
        pno: c_int::try_from(number).map_err(invalid)?,
        devname: [0; 64],
        volname: [0; 64],
    };
    let mut arg = BlkpgIoctlArg {
        op: BLKPG_RESIZE_PARTITION,
        flags: 0,
        datalen: std::mem::size_of::<BlkpgPartition>() as c_int,
        data: (&mut part as *mut BlkpgPartition).cast(),
    };
    // SAFETY: `arg` points at `part`, both live on our stack for the whole call and are laid out
    // as linux/blkpg.h declares them; the kernel only reads them.
    check(unsafe { libc::syscall(libc::SYS_ioctl, fd.as_raw_fd(), BLKPG, &mut arg as *mut BlkpgIoctlArg) }).map(drop)
}

/// A device-mapper request `nr` (`_IOWR(0xfd, nr, struct dm_ioctl)`) on the control node `fd`,
/// with `buf` holding a `struct dm_ioctl` (312 bytes) and its payload; the reply is written back
/// into `buf`. Its `data_size` is set here to the buffer's length.
pub fn dm_ioctl(fd: BorrowedFd<'_>, nr: u8, buf: &mut [u8]) -> io::Result<()> {
    const HEADER: usize = 312;
    let len = u32::try_from(buf.len()).ok().filter(|&l| l as usize >= HEADER);
    let len = len.ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    if let Some(size) = buf.get_mut(12..16) {
        size.copy_from_slice(&len.to_ne_bytes());
    }
    let request = (3 << 30) | ((HEADER as c_ulong) << 16) | (0xfd << 8) | c_ulong::from(nr);
    // SAFETY: `buf` is a live, writable buffer of `len` bytes, and `data_size` tells the kernel so;
    // it reads and writes no further.
    check(unsafe { libc::syscall(libc::SYS_ioctl, fd.as_raw_fd(), request, buf.as_mut_ptr()) }).map(drop)
}

/// Make a block device node at `path` for `major:minor`, readable by root only.
pub fn mknod_block(path: &Path, major: u32, minor: u32) -> io::Result<()> {
    let p = cpath(path)?;
    // SAFETY: `p` is a NUL-terminated path that outlives the call.
    check(unsafe { libc::mknod(p.as_ptr(), libc::S_IFBLK | 0o600, libc::makedev(major, minor)) }).map(drop)
}

/// Grow the mounted ext4 filesystem that `fd` (any file or directory on it) belongs to, online,
/// to `blocks` filesystem blocks (EXT4_IOC_RESIZE_FS).
pub fn ext4_resize_fs(fd: BorrowedFd<'_>, blocks: u64) -> io::Result<()> {
    let count: u64 = blocks;
    // SAFETY: the kernel reads one u64 from the pointer, which points at `count` on our stack.
    check(unsafe { libc::syscall(libc::SYS_ioctl, fd.as_raw_fd(), EXT4_IOC_RESIZE_FS, &count as *const u64) }).map(drop)
}

/// Read the RTC `fd` (/dev/rtcN) (RTC_RD_TIME).
pub fn rtc_read(fd: BorrowedFd<'_>) -> io::Result<RtcTime> {
    let mut t = RtcTime::default();
    // SAFETY: the kernel writes one struct rtc_time (9 ints, as RtcTime is laid out) into `t`.
    check(unsafe { libc::syscall(libc::SYS_ioctl, fd.as_raw_fd(), RTC_RD_TIME, &mut t as *mut RtcTime) })?;
    Ok(t)
}

/// Set the system clock (CLOCK_REALTIME) to `secs` seconds since the epoch.
pub fn set_realtime(secs: i64) -> io::Result<()> {
    let ts = libc::timespec { tv_sec: secs as _, tv_nsec: 0 };
    // SAFETY: clock_settime reads the timespec we pass.
    check(unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) }).map(drop)
}

/// Is the kernel's random pool ready, so that getrandom(2) would not block?
pub fn random_ready() -> bool {
    let mut b = [0u8; 1];
    // SAFETY: getrandom writes at most one byte into `b`; GRND_NONBLOCK makes it fail with
    // EAGAIN instead of blocking while the pool is not initialised.
    unsafe { libc::getrandom(b.as_mut_ptr().cast(), 1, libc::GRND_NONBLOCK) == 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_bound_to_a_device() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        match bind_to_device(l.as_fd(), "lo") {
            // Needs CAP_NET_RAW: nothing more to see without it.
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => return,
            r => r.unwrap(),
        }
        std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        assert!(bind_to_device(l.as_fd(), "no-such-if0").is_err());
        assert!(bind_to_device(l.as_fd(), "a\0b").is_err());
    }
}
