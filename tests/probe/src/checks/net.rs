//! Networking from inside: which interfaces the container sees, that it cannot open raw sockets,
//! and what keel-init grants a networked container in its own namespace (ping sockets for its
//! groups, ports below 1024). A container on no network keeps the kernel's defaults, so there the
//! ping and port checks assert the refusal instead: each check states the expected behaviour for
//! both cases, and none is skipped.
//!
//! "On a network" means `eth0` exists: keel gives a networked container exactly one interface
//! besides `lo`, the container end of its veth, and a container on no network nothing but `lo`.

use std::net::{Ipv4Addr, TcpListener};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use crate::child;
use crate::errno::{signal_name, Errno};
use crate::parse;
use crate::report::{verdict, Outcome, Report};
use crate::sys::{self, WaitStatus};

/// The loopback interface every network namespace has.
const LOOPBACK: &str = "lo";
/// The container end of its veth (keel_plan::net::CONTAINER_IF).
const CONTAINER_IF: &str = "eth0";
/// Link kind (IFLA_INFO_KIND) of keel's container interface.
const VETH: &str = "veth";
/// How long an echo request to 127.0.0.1 may take.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

// include/uapi/linux/netlink.h, rtnetlink.h, if_link.h, icmp.h
const NETLINK_ROUTE: i32 = 0;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
/// Header sizes: nlmsghdr, ifinfomsg.
const NLMSG_HDR: usize = 16;
const IFINFOMSG: usize = 16;
const ICMP_ECHOREPLY: u8 = 0;
const ICMP_ECHO: u8 = 8;

/// One interface as rtnetlink describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Link {
    name: String,
    /// IFLA_INFO_KIND (`veth`, `bridge`, …); `None` for loopback and real NICs.
    kind: Option<String>,
}

/// Records net-interfaces, net-raw-socket, net-ping and net-bind-80.
pub fn run(report: &mut Report) {
    let dump = rtnl_links();
    let names = sys::interface_names().map(|v| v.into_iter().map(|(_, n)| n).collect::<Vec<_>>());
    report.record("net-interfaces", interfaces(&dump, &names));
    report.record("net-raw-socket", raw_sockets());
    report.record("net-ping", ping());
    report.record("net-bind-80", bind_80());
}

/// Only `lo`, plus `eth0` (a veth) when on a network; rtnetlink and if_nameindex must agree.
fn interfaces(dump: &Result<Vec<Link>, String>, names: &Result<Vec<String>, Errno>) -> Outcome {
    let links = match (dump, names) {
        (Ok(links), _) => links,
        (Err(e), Ok(names)) => return Err(format!("rtnetlink link dump: {e}; if_nameindex: {}", names.join(","))),
        (Err(e), Err(n)) => return Err(format!("rtnetlink link dump: {e}; if_nameindex: {n}")),
    };
    let shown: Vec<String> = links
        .iter()
        .map(|l| match &l.kind {
            Some(k) => format!("{}({k})", l.name),
            None => l.name.clone(),
        })
        .collect();
    let mut problems = Vec::new();
    if !links.iter().any(|l| l.name == LOOPBACK) {
        problems.push(format!("no {LOOPBACK}"));
    }
    let others: Vec<&str> =
        links.iter().map(|l| l.name.as_str()).filter(|n| *n != LOOPBACK && *n != CONTAINER_IF).collect();
    if !others.is_empty() {
        problems.push(format!("not the container's: {}", others.join(",")));
    }
    let eth0 = links.iter().find(|l| l.name == CONTAINER_IF);
    if let Some(l) = eth0 {
        if l.kind.as_deref() != Some(VETH) {
            let kind = l.kind.as_deref().unwrap_or("none: a real NIC");
            problems.push(format!("{CONTAINER_IF} is not keel's veth (kind {kind}): the host's uplink?"));
        }
    }
    match names {
        Ok(names) => {
            let mut a: Vec<&str> = names.iter().map(String::as_str).collect();
            let mut b: Vec<&str> = links.iter().map(|l| l.name.as_str()).collect();
            a.sort_unstable();
            b.sort_unstable();
            if a != b {
                problems.push(format!("if_nameindex says {}", names.join(",")));
            }
        }
        Err(e) => problems.push(format!("if_nameindex: {e}")),
    }
    let state = if eth0.is_some() { "on a network" } else { "on no network" };
    let mut detail = format!("interfaces {}: {state}", shown.join(","));
    if !problems.is_empty() {
        detail = format!("{detail}; {}", problems.join("; "));
    }
    verdict(problems.is_empty(), detail)
}

/// Every link in this network namespace, from one RTM_GETLINK dump.
fn rtnl_links() -> Result<Vec<Link>, String> {
    let fd = sys::socket(libc::AF_NETLINK, libc::SOCK_RAW, NETLINK_ROUTE).map_err(|e| format!("socket: {e}"))?;
    let fd = fd.as_fd();
    let seq: u32 = 0x6b65_656c;
    let mut req = Vec::with_capacity(NLMSG_HDR + IFINFOMSG);
    req.extend_from_slice(&((NLMSG_HDR + IFINFOMSG) as u32).to_ne_bytes());
    req.extend_from_slice(&RTM_GETLINK.to_ne_bytes());
    req.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req.extend_from_slice(&seq.to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes());
    req.extend_from_slice(&[0u8; IFINFOMSG]); // AF_UNSPEC: every link
    sys::send(fd, &req).map_err(|e| format!("send: {e}"))?;
    let mut links = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = recv_within(fd, &mut buf, Duration::from_secs(2))?;
        match parse_links(buf.get(..n).unwrap_or_default(), seq, &mut links)? {
            Dump::More => continue,
            Dump::Done => return Ok(links),
        }
    }
}

/// Whether a dump goes on after this datagram.
#[derive(Debug, PartialEq, Eq)]
enum Dump {
    More,
    Done,
}

/// The RTM_NEWLINK messages of one datagram of the dump `seq`, appended to `links`.
fn parse_links(mut data: &[u8], seq: u32, links: &mut Vec<Link>) -> Result<Dump, String> {
    while data.len() >= NLMSG_HDR {
        let len = u32_at(data, 0) as usize;
        let kind = u16_at(data, 4);
        if len < NLMSG_HDR || len > data.len() {
            return Err(format!("bad netlink message length {len}"));
        }
        let body = data.get(NLMSG_HDR..len).unwrap_or_default();
        if u32_at(data, 8) == seq {
            match kind {
                NLMSG_DONE => return Ok(Dump::Done),
                NLMSG_ERROR => {
                    let errno = i32::from_ne_bytes(body.get(..4).and_then(|b| b.try_into().ok()).unwrap_or([0; 4]));
                    return Err(format!("kernel says {}", Errno(-errno)));
                }
                RTM_NEWLINK => links.push(link(body.get(IFINFOMSG..).unwrap_or_default())),
                _ => {}
            }
        }
        data = data.get(align4(len)..).unwrap_or_default();
    }
    Ok(Dump::More)
}

/// One link from the attributes after its ifinfomsg.
fn link(attrs: &[u8]) -> Link {
    let mut l = Link { name: String::new(), kind: None };
    for (ty, value) in attributes(attrs) {
        match ty {
            IFLA_IFNAME => l.name = c_string(value),
            IFLA_LINKINFO => {
                l.kind = attributes(value).find(|(t, _)| *t == IFLA_INFO_KIND).map(|(_, v)| c_string(v));
            }
            _ => {}
        }
    }
    l
}

/// `(type, value)` of each rtattr in `data` (the nested and byte-order flags cleared).
fn attributes(mut data: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if data.len() < 4 {
            return None;
        }
        let len = usize::from(u16_at(data, 0));
        let ty = u16_at(data, 2) & 0x3fff;
        let value = data.get(4..len)?;
        data = data.get(align4(len)..).unwrap_or_default();
        Some((ty, value))
    })
}

fn u16_at(data: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes(data.get(at..at + 2).and_then(|b| b.try_into().ok()).unwrap_or([0; 2]))
}

fn u32_at(data: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(data.get(at..at + 4).and_then(|b| b.try_into().ok()).unwrap_or([0; 4]))
}

fn align4(n: usize) -> usize {
    n.saturating_add(3) & !3
}

/// A NUL-terminated (or not) attribute string.
fn c_string(v: &[u8]) -> String {
    let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
    String::from_utf8_lossy(v.get(..end).unwrap_or_default()).into_owned()
}

/// One datagram, waiting at most `timeout` for it.
fn recv_within(fd: BorrowedFd<'_>, buf: &mut [u8], timeout: Duration) -> Result<usize, String> {
    let deadline = sys::monotonic().saturating_add(timeout);
    loop {
        let left = deadline.saturating_sub(sys::monotonic());
        if left.is_zero() {
            return Err(format!("nothing within {} ms", timeout.as_millis()));
        }
        match sys::wait_readable(fd, left) {
            Ok(false) => return Err(format!("nothing within {} ms", timeout.as_millis())),
            Ok(true) | Err(Errno(libc::EINTR)) => {}
            Err(e) => return Err(format!("poll: {e}")),
        }
        match sys::recv_now(fd, buf) {
            Ok(n) => return Ok(n),
            Err(Errno(libc::EAGAIN | libc::EINTR)) => {}
            Err(e) => return Err(format!("recv: {e}")),
        }
    }
}

/// Raw IP and packet sockets are refused: no CAP_NET_RAW (and seccomp for AF_PACKET). Each is
/// tried in a throwaway child, as the `deny-*` calls are.
fn raw_sockets() -> Outcome {
    let icmp = in_child(|| sys::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP));
    let packet = in_child(|| sys::socket(libc::AF_PACKET, libc::SOCK_RAW, 0));
    let detail =
        format!("socket(AF_INET,SOCK_RAW,IPPROTO_ICMP)={} socket(AF_PACKET,SOCK_RAW,0)={}", show(&icmp), show(&packet));
    let icmp_denied = icmp == Ok(Some(Errno(libc::EPERM)));
    let packet_denied = matches!(packet, Ok(Some(Errno(libc::EPERM | libc::EACCES))));
    verdict(icmp_denied && packet_denied, detail)
}

/// How a call made in a child ended: `Ok(None)` it succeeded, `Ok(Some(errno))` it failed,
/// `Err(why)` the child did not report (killed, or no fork).
fn in_child(call: impl FnOnce() -> Result<std::os::fd::OwnedFd, Errno>) -> Result<Option<Errno>, String> {
    let end = child::run(|| match call() {
        Ok(_) => 0,
        Err(Errno(e)) if (1..=254).contains(&e) => e,
        Err(_) => 255,
    });
    match end {
        Ok(WaitStatus::Exited(0)) => Ok(None),
        Ok(WaitStatus::Exited(255)) => Err("an unknown errno".to_string()),
        Ok(WaitStatus::Exited(e)) => Ok(Some(Errno(e))),
        Ok(WaitStatus::Signaled(s)) => Err(format!("killed by {}", signal_name(s))),
        Ok(WaitStatus::Other(s)) => Err(format!("status {s:#x}")),
        Err(e) => Err(format!("no fork: {e}")),
    }
}

fn show(r: &Result<Option<Errno>, String>) -> String {
    match r {
        Ok(None) => "allowed".to_string(),
        Ok(Some(e)) => e.name(),
        Err(why) => why.clone(),
    }
}

/// An ICMP datagram socket opens (keel-init sets ping_group_range to the container's groups in
/// every container's namespace, networked or not) and an echo request to 127.0.0.1 is answered
/// within 2 s.
fn ping() -> Outcome {
    let ctx = format!(
        "ping_group_range=\"{}\" gid={}",
        sysctl("ping_group_range").split_whitespace().collect::<Vec<_>>().join(" "),
        status_id("Gid")
    );
    let call = "socket(AF_INET,SOCK_DGRAM,IPPROTO_ICMP)";
    match sys::socket(libc::AF_INET, libc::SOCK_DGRAM, libc::IPPROTO_ICMP) {
        Err(e) => Err(format!("{call}={e} ({ctx})")),
        Ok(fd) => match echo(fd.as_fd()) {
            Ok(took) => Ok(format!("echo reply from 127.0.0.1 in {} ms ({ctx})", took.as_millis())),
            Err(e) => Err(format!("{e} ({ctx})")),
        },
    }
}

/// One ICMP echo to 127.0.0.1 on a ping socket (the kernel fills in the id and checksum) and
/// its reply, within [`PING_TIMEOUT`].
fn echo(fd: BorrowedFd<'_>) -> Result<Duration, String> {
    const SEQ: u16 = 0x6b70;
    const PAYLOAD: &[u8] = b"keel-probe ping";
    let mut packet = vec![ICMP_ECHO, 0, 0, 0, 0, 0];
    packet.extend_from_slice(&SEQ.to_be_bytes());
    packet.extend_from_slice(PAYLOAD);
    let start = sys::monotonic();
    sys::send_to_v4(fd, &packet, Ipv4Addr::LOCALHOST, 0).map_err(|e| format!("sendto 127.0.0.1: {e}"))?;
    let mut buf = [0u8; 256];
    loop {
        let left = PING_TIMEOUT.saturating_sub(sys::monotonic().saturating_sub(start));
        let n = recv_within(fd, &mut buf, left).map_err(|e| format!("echo reply from 127.0.0.1: {e}"))?;
        if is_reply(buf.get(..n).unwrap_or_default(), SEQ, PAYLOAD) {
            return Ok(sys::monotonic().saturating_sub(start));
        }
    }
}

/// An echo reply to our request: type 0, our sequence number and payload.
fn is_reply(msg: &[u8], seq: u16, payload: &[u8]) -> bool {
    msg.first() == Some(&ICMP_ECHOREPLY)
        && msg.get(6..8) == Some(&seq.to_be_bytes()[..])
        && msg.get(8..) == Some(payload)
}

/// A TCP socket binds 0.0.0.0:80 without capabilities (keel-init sets
/// ip_unprivileged_port_start to 0 in every container's namespace).
fn bind_80() -> Outcome {
    let start = sysctl("ip_unprivileged_port_start");
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let cap_eff = parse::status_field(&status, "CapEff").unwrap_or("?");
    let ctx = format!("uid={} CapEff={cap_eff} ip_unprivileged_port_start={start}", status_id("Uid"));
    match TcpListener::bind((Ipv4Addr::UNSPECIFIED, 80)).map(drop).map_err(|e| Errno::from_io(&e)) {
        Ok(()) => Ok(format!("bound and closed 0.0.0.0:80/tcp ({ctx})")),
        Err(e) => Err(format!("bind 0.0.0.0:80/tcp: {e} ({ctx})")),
    }
}

/// /proc/sys/net/ipv4/NAME (this network namespace's value), trimmed, or why not.
fn sysctl(name: &str) -> String {
    match std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}")) {
        Ok(v) => v.trim().to_string(),
        Err(e) => format!("? ({})", Errno::from_io(&e)),
    }
}

/// The effective id from the `Uid:` or `Gid:` line of /proc/self/status.
fn status_id(key: &str) -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    parse::status_field(&status, key).and_then(|v| v.split_whitespace().nth(1)).unwrap_or("?").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(ty: u16, value: &[u8]) -> Vec<u8> {
        let mut a = ((4 + value.len()) as u16).to_ne_bytes().to_vec();
        a.extend_from_slice(&ty.to_ne_bytes());
        a.extend_from_slice(value);
        a.resize(align4(a.len()), 0);
        a
    }

    fn msg(kind: u16, seq: u32, body: &[u8]) -> Vec<u8> {
        let mut m = ((NLMSG_HDR + body.len()) as u32).to_ne_bytes().to_vec();
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(body);
        m
    }

    fn newlink(name: &str, kind: Option<&str>) -> Vec<u8> {
        let mut body = vec![0u8; IFINFOMSG];
        body.extend(attr(IFLA_IFNAME, format!("{name}\0").as_bytes()));
        if let Some(k) = kind {
            body.extend(attr(IFLA_LINKINFO | 0x8000, &attr(IFLA_INFO_KIND, k.as_bytes())));
        }
        msg(RTM_NEWLINK, 7, &body)
    }

    #[test]
    fn link_dump() {
        let mut data = newlink("lo", None);
        data.extend(newlink("eth0", Some("veth")));
        let mut links = Vec::new();
        assert_eq!(parse_links(&data, 7, &mut links), Ok(Dump::More));
        assert_eq!(
            links,
            [Link { name: "lo".into(), kind: None }, Link { name: "eth0".into(), kind: Some("veth".into()) }]
        );
        assert_eq!(parse_links(&msg(NLMSG_DONE, 7, &[0; 4]), 7, &mut links), Ok(Dump::Done));
        let err = msg(NLMSG_ERROR, 7, &(-libc::EPERM).to_ne_bytes());
        assert_eq!(parse_links(&err, 7, &mut links), Err("kernel says EPERM".to_string()));
        assert!(parse_links(&[0xff; 20], 7, &mut links).is_err(), "a length past the end");
    }

    #[test]
    fn interface_verdicts() {
        let l = |name: &str, kind: Option<&str>| Link { name: name.into(), kind: kind.map(Into::into) };
        let names = |n: &[&str]| Ok(n.iter().map(|s| s.to_string()).collect());
        let lo = Ok(vec![l("lo", None)]);
        assert_eq!(interfaces(&lo, &names(&["lo"])), Ok("interfaces lo: on no network".to_string()));
        let net = Ok(vec![l("lo", None), l("eth0", Some("veth"))]);
        assert_eq!(interfaces(&net, &names(&["lo", "eth0"])), Ok("interfaces lo,eth0(veth): on a network".to_string()));
        let uplink = Ok(vec![l("lo", None), l("eth0", None)]);
        assert!(interfaces(&uplink, &names(&["lo", "eth0"])).is_err_and(|d| d.contains("uplink")));
        let host = Ok(vec![l("lo", None), l("eth0", Some("veth")), l("k-web", Some("veth"))]);
        assert!(interfaces(&host, &names(&["lo", "eth0", "k-web"])).is_err_and(|d| d.contains("k-web")));
        assert!(interfaces(&net, &names(&["lo"])).is_err(), "the two views disagree");
        assert!(interfaces(&Err("socket: EPERM".into()), &names(&["lo"])).is_err());
    }

    #[test]
    fn echo_replies() {
        let mut reply = vec![ICMP_ECHOREPLY, 0, 0x12, 0x34, 0, 9];
        reply.extend_from_slice(&0x6b70u16.to_be_bytes());
        reply.extend_from_slice(b"x");
        assert!(is_reply(&reply, 0x6b70, b"x"));
        assert!(!is_reply(&reply, 0x6b71, b"x"));
        assert!(!is_reply(&reply, 0x6b70, b"y"));
        reply[0] = ICMP_ECHO;
        assert!(!is_reply(&reply, 0x6b70, b"x"));
        assert!(!is_reply(&[], 1, b""));
    }
}
