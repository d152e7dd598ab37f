//! keel-net's only unsafe code: the system calls, behind a safe API.
//!
//! - a netlink socket with bounded waits ([`NETLINK_TIMEOUT`]) and buffers large enough for an
//!   nf_tables batch of a few hundred KB and its acknowledgements;
//! - [`with_netns`]: run a closure with the calling thread inside another network namespace;
//! - [`dhcp_socket`]: the UDP socket a DHCPv4 client talks through;
//! - [`interface_index`], by `if_nametoindex`.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::mem;
use std::net::UdpSocket;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use libc::{c_int, socklen_t};

use crate::error::{check_ifname, NetError, Result};

/// Longest a netlink socket waits for one reply before the request counts as unanswered.
pub const NETLINK_TIMEOUT: Duration = Duration::from_secs(2);
/// Send and receive buffer asked for (the kernel doubles it): a batch of a few hundred KB, and
/// one acknowledgement per message of it, must fit.
const SOCKET_BUFFER: c_int = 4 << 20;
/// Receive buffer: the kernel never builds a dump datagram above 32 KiB, and errors come back
/// without the request's payload (`NETLINK_CAP_ACK`).
const RECV_BUFFER: usize = 64 << 10;
/// Attempts of a send interrupted by a signal before giving up.
const SEND_ATTEMPTS: usize = 8;

fn cvt(ret: c_int) -> io::Result<c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> NetError {
    let what = what.into();
    move |source| NetError::Io { what, source }
}

/// setsockopt(2) with a plain-data value (an integer or a `timeval`).
fn setsockopt<T: Copy>(fd: BorrowedFd<'_>, level: c_int, name: c_int, value: &T) -> io::Result<()> {
    let len = socklen_t::try_from(mem::size_of::<T>()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `value` points to a live `T` of `len` bytes, which the kernel only reads.
    cvt(unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, (value as *const T).cast(), len) }).map(drop)
}

/// setsockopt(2) with a byte string value.
fn setsockopt_bytes(fd: BorrowedFd<'_>, level: c_int, name: c_int, value: &[u8]) -> io::Result<()> {
    let len = socklen_t::try_from(value.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `value` is a live slice of `len` bytes, which the kernel only reads.
    cvt(unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, value.as_ptr().cast(), len) }).map(drop)
}

/// socket(2), owning the new descriptor.
fn socket(domain: c_int, ty: c_int, protocol: c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket takes integers.
    let raw = cvt(unsafe { libc::socket(domain, ty, protocol) })?;
    // SAFETY: `raw` was just returned by socket(2) and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

fn timeval(d: Duration) -> libc::timeval {
    // Through i32, which converts into `time_t` and `suseconds_t` whatever their width.
    libc::timeval {
        tv_sec: i32::try_from(d.as_secs()).unwrap_or(i32::MAX).into(),
        tv_usec: i32::try_from(d.subsec_micros()).unwrap_or(0).into(),
    }
}

/// A bound netlink socket talking to the kernel, in the network namespace it was created in.
#[derive(Debug)]
pub(crate) struct NetlinkSocket {
    fd: OwnedFd,
    buf: Vec<u8>,
}

impl NetlinkSocket {
    /// Open and bind a socket of netlink `protocol` (`NETLINK_ROUTE`, `NETLINK_NETFILTER`).
    pub(crate) fn open(protocol: c_int) -> io::Result<NetlinkSocket> {
        let fd = socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, protocol)?;
        for (forced, plain) in [(libc::SO_SNDBUFFORCE, libc::SO_SNDBUF), (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF)] {
            // The forced size needs CAP_NET_ADMIN; without it the plain one is capped by
            // net.core.{w,r}mem_max, which still holds a batch of some hundred KB.
            if setsockopt(fd.as_fd(), libc::SOL_SOCKET, forced, &SOCKET_BUFFER).is_err() {
                setsockopt(fd.as_fd(), libc::SOL_SOCKET, plain, &SOCKET_BUFFER)?;
            }
        }
        let tv = timeval(NETLINK_TIMEOUT);
        setsockopt(fd.as_fd(), libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)?;
        setsockopt(fd.as_fd(), libc::SOL_SOCKET, libc::SO_SNDTIMEO, &tv)?;
        // Both are optional: small acknowledgements and the kernel's error text.
        let one: c_int = 1;
        let _ = setsockopt(fd.as_fd(), libc::SOL_NETLINK, libc::NETLINK_CAP_ACK, &one);
        let _ = setsockopt(fd.as_fd(), libc::SOL_NETLINK, libc::NETLINK_EXT_ACK, &one);
        // SAFETY: sockaddr_nl is plain integers; all zeroes is valid (port 0: the kernel picks).
        let mut addr: libc::sockaddr_nl = unsafe { mem::zeroed() };
        addr.nl_family = libc::sa_family_t::try_from(libc::AF_NETLINK).unwrap_or_default();
        let len = socklen_t::try_from(mem::size_of::<libc::sockaddr_nl>()).unwrap_or_default();
        // SAFETY: `addr` is a live sockaddr_nl of `len` bytes, which bind only reads.
        cvt(unsafe { libc::bind(fd.as_raw_fd(), (&raw const addr).cast(), len) })?;
        Ok(NetlinkSocket { fd, buf: vec![0; RECV_BUFFER] })
    }

    /// Send `data` (one or more messages) to the kernel in one sendmsg.
    pub(crate) fn send(&self, data: &[u8]) -> io::Result<()> {
        for _ in 0..SEND_ATTEMPTS {
            // SAFETY: `data` is a live slice; send only reads `data.len()` bytes of it.
            let sent = unsafe { libc::send(self.fd.as_raw_fd(), data.as_ptr().cast(), data.len(), 0) };
            match usize::try_from(sent) {
                Ok(n) if n == data.len() => return Ok(()),
                Ok(_) => return Err(io::Error::new(io::ErrorKind::WriteZero, "the kernel took part of the message")),
                Err(_) => {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
            }
        }
        Err(io::Error::from(io::ErrorKind::Interrupted))
    }

    /// Receive one datagram; `None` when nothing arrived within [`NETLINK_TIMEOUT`] (give or
    /// take one more timeout if a signal interrupts the wait).
    pub(crate) fn recv(&mut self) -> io::Result<Option<&[u8]>> {
        let deadline = Instant::now() + NETLINK_TIMEOUT;
        loop {
            // SAFETY: recv writes at most `buf.len()` bytes into `buf`, which lives for the call.
            // With MSG_TRUNC it returns the datagram's real length, which may be larger.
            let got = unsafe {
                libc::recv(self.fd.as_raw_fd(), self.buf.as_mut_ptr().cast(), self.buf.len(), libc::MSG_TRUNC)
            };
            match usize::try_from(got) {
                Ok(n) if n > self.buf.len() => {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "netlink datagram larger than 64 KiB"))
                }
                Ok(n) => return Ok(Some(self.buf.get(..n).unwrap_or(&[]))),
                Err(_) => {
                    let e = io::Error::last_os_error();
                    match e.kind() {
                        io::ErrorKind::WouldBlock => return Ok(None),
                        io::ErrorKind::Interrupted if Instant::now() < deadline => {}
                        io::ErrorKind::Interrupted => return Ok(None),
                        _ => return Err(e),
                    }
                }
            }
        }
    }
}

fn setns(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: setns takes a descriptor, open for the call, and an integer.
    cvt(unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) }).map(drop)
}

/// Puts the thread back into its own network namespace, also when the closure unwinds.
struct Return(Option<File>);

impl Return {
    fn now(&mut self) -> io::Result<()> {
        match self.0.take() {
            Some(own) => setns(own.as_fd()),
            None => Ok(()),
        }
    }
}

impl Drop for Return {
    fn drop(&mut self) {
        let _ = self.now();
    }
}

/// Run `f` with the calling thread inside the network namespace `netns`, then return to the
/// thread's own (`/proc/thread-self/ns/net`).
///
/// setns(2) moves only the calling thread: other threads stay where they are. keel-init (PID 1)
/// is single-threaded, so there it moves the whole process for the duration of `f`. Sockets
/// that `f` creates belong to `netns` for their whole life, which is the point: a netlink socket
/// opened here configures `netns`, a listener opened here accepts connections there.
///
/// Fails with [`NetError::NetnsRestore`] if the way back fails; `f`'s result is then lost and
/// the thread is still in `netns`.
pub fn with_netns<R>(netns: BorrowedFd<'_>, f: impl FnOnce() -> R) -> Result<R> {
    // thread-self (Linux 3.17) names the calling thread's namespace, not the main thread's.
    let own = File::open("/proc/thread-self/ns/net")
        .or_else(|_| File::open("/proc/self/ns/net"))
        .map_err(io_err("open this thread's network namespace"))?;
    setns(netns).map_err(io_err("enter the network namespace"))?;
    let mut back = Return(Some(own));
    let out = f();
    back.now().map_err(NetError::NetnsRestore)?;
    Ok(out)
}

/// The socket a DHCPv4 client on `ifname` talks through: UDP `0.0.0.0:68`, bound to the device
/// (`SO_BINDTODEVICE`), with `SO_BROADCAST` and `SO_REUSEADDR`, non-blocking, close-on-exec.
///
/// It receives the server's replies as long as `rp_filter` on `ifname` is not strict (1).
pub fn dhcp_socket(ifname: &str) -> Result<UdpSocket> {
    check_ifname(ifname)?;
    let fd = socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, libc::IPPROTO_UDP)
        .map_err(io_err(format!("open the DHCP socket for {ifname}")))?;
    let one: c_int = 1;
    setsockopt(fd.as_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, &one)
        .and_then(|()| setsockopt(fd.as_fd(), libc::SOL_SOCKET, libc::SO_BROADCAST, &one))
        .map_err(io_err(format!("set the options of the DHCP socket for {ifname}")))?;
    setsockopt_bytes(fd.as_fd(), libc::SOL_SOCKET, libc::SO_BINDTODEVICE, ifname.as_bytes())
        .map_err(io_err(format!("bind the DHCP socket to device {ifname}")))?;
    // SAFETY: sockaddr_in is plain integers; all zeroes is 0.0.0.0 port 0.
    let mut addr: libc::sockaddr_in = unsafe { mem::zeroed() };
    addr.sin_family = libc::sa_family_t::try_from(libc::AF_INET).unwrap_or_default();
    addr.sin_port = 68u16.to_be();
    let len = socklen_t::try_from(mem::size_of::<libc::sockaddr_in>()).unwrap_or_default();
    // SAFETY: `addr` is a live sockaddr_in of `len` bytes, which bind only reads.
    cvt(unsafe { libc::bind(fd.as_raw_fd(), (&raw const addr).cast(), len) })
        .map_err(io_err(format!("bind the DHCP socket for {ifname} to 0.0.0.0:68")))?;
    Ok(UdpSocket::from(fd))
}

/// The index of interface `name` in the calling thread's network namespace.
pub fn interface_index(name: &str) -> Result<u32> {
    check_ifname(name)?;
    let cname = CString::new(name).map_err(|_| NetError::InterfaceName(name.to_owned()))?;
    // SAFETY: `cname` is a NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if index == 0 {
        return Err(NetError::Io { what: format!("look up interface {name}"), source: io::Error::last_os_error() });
    }
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_an_index_and_bad_names_are_refused() {
        assert!(interface_index("lo").unwrap() > 0);
        assert!(matches!(interface_index("no/such"), Err(NetError::InterfaceName(_))));
        let err = interface_index("keelnosuchif").unwrap_err();
        assert_eq!(err.to_string(), "look up interface keelnosuchif");
        assert!(matches!(dhcp_socket(""), Err(NetError::InterfaceName(_))));
    }

    #[test]
    fn timeval_of_two_seconds() {
        let tv = timeval(Duration::from_millis(2500));
        assert_eq!((tv.tv_sec, tv.tv_usec), (2, 500_000));
    }
}
