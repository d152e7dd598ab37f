//! rtnetlink requests over one `NETLINK_ROUTE` socket: a veth whose peer is born inside a
//! container's network namespace, link up, the link list, addresses, routes, permanent
//! neighbours.
//!
//! Every request asks for an acknowledgement and waits for it (each wait bounded by
//! [`crate::sys::NETLINK_TIMEOUT`]); a refusal is a [`NetError::Kernel`] naming the request.

use std::fmt;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, BorrowedFd};

use keel_plan::net::Cidr;

use crate::error::{check_ifname, NetError, Result};
use crate::netlink::{
    attrs, find_attr, messages, parse_error, split_header, Malformed, Writer, NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP,
    NLMSG_OVERRUN, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST,
};
use crate::sys::{with_netns, NetlinkSocket, NETLINK_TIMEOUT};

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTM_NEWNEIGH: u16 = 28;

const AF_UNSPEC: u8 = 0;
const AF_INET: u8 = 2;

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_EXT_MASK: u16 = 29;
const IFLA_CARRIER: u16 = 33;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
/// `RTEXT_FILTER_SKIP_STATS`: leave the counters out of link replies.
const RTEXT_FILTER_SKIP_STATS: u32 = 1 << 3;

const IFF_UP: u32 = 0x1;
const IFF_LOOPBACK: u32 = 0x8;
const IFF_LOWER_UP: u32 = 0x1_0000;

const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;

const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PREFSRC: u16 = 7;
const RTA_TABLE: u16 = 15;
const RT_TABLE_MAIN: u8 = 254;
/// `RTPROT_BOOT`, what `ip route add` uses.
const RTPROT_BOOT: u8 = 3;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_LINK: u8 = 253;
/// Matches any scope in a delete.
const RT_SCOPE_NOWHERE: u8 = 255;
const RTN_UNICAST: u8 = 1;

const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
const NUD_PERMANENT: u16 = 0x80;

/// Dumps interrupted by a concurrent change are read again this many times at most.
const DUMP_ATTEMPTS: usize = 3;

/// `struct ifinfomsg`.
fn ifinfomsg(family: u8, index: u32, flags: u32, change: u32) -> [u8; 16] {
    let [i0, i1, i2, i3] = index.to_ne_bytes();
    let [f0, f1, f2, f3] = flags.to_ne_bytes();
    let [c0, c1, c2, c3] = change.to_ne_bytes();
    [family, 0, 0, 0, i0, i1, i2, i3, f0, f1, f2, f3, c0, c1, c2, c3]
}

/// `struct ifaddrmsg`.
fn ifaddrmsg(prefix: u8, index: u32) -> [u8; 8] {
    let [i0, i1, i2, i3] = index.to_ne_bytes();
    [AF_INET, prefix, 0, RT_SCOPE_UNIVERSE, i0, i1, i2, i3]
}

/// `struct rtmsg`.
fn rtmsg(dst_len: u8, protocol: u8, scope: u8, ty: u8) -> [u8; 12] {
    [AF_INET, dst_len, 0, 0, RT_TABLE_MAIN, protocol, scope, ty, 0, 0, 0, 0]
}

/// `struct ndmsg`.
fn ndmsg(index: u32, state: u16) -> [u8; 12] {
    let [i0, i1, i2, i3] = index.to_ne_bytes();
    let [s0, s1] = state.to_ne_bytes();
    [AF_INET, 0, 0, 0, i0, i1, i2, i3, s0, s1, 0, 0]
}

/// A MAC address as `aa:bb:cc:dd:ee:ff`.
struct Mac<'a>(&'a [u8; 6]);

impl fmt::Display for Mac<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// One network interface, as the link list reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Hardware address, when it is a 6-byte (ethernet) one.
    pub mac: Option<[u8; 6]>,
    /// `IFF_LOOPBACK`.
    pub loopback: bool,
    /// `IFF_UP`: administratively up.
    pub up: bool,
    /// The link has a carrier (`IFLA_CARRIER`, else `IFF_LOWER_UP`).
    pub carrier: bool,
    /// `IFLA_INFO_KIND` (`veth`, `bridge`, …); `None` for a physical NIC.
    pub kind: Option<String>,
}

/// An IPv4 route in the main table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Destination; prefix 0 is the default route.
    pub dst: Cidr,
    /// Next hop, if not directly on the link.
    pub gateway: Option<Ipv4Addr>,
    /// Output interface index; 0 (delete only): any.
    pub index: u32,
    /// Preferred source address.
    pub src: Option<Ipv4Addr>,
    /// `scope link` (the destination is directly on the link) instead of `scope global`.
    pub scope_link: bool,
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.dst.prefix == 0 {
            f.write_str("default")?;
        } else {
            write!(f, "{}/{}", self.dst.network(), self.dst.prefix)?;
        }
        if let Some(gw) = self.gateway {
            write!(f, " via {gw}")?;
        }
        write!(f, " dev {}", self.index)?;
        if let Some(src) = self.src {
            write!(f, " src {src}")?;
        }
        Ok(())
    }
}

/// One rtnetlink socket, bound to the network namespace it was opened in.
#[derive(Debug)]
pub struct Rtnl {
    sock: NetlinkSocket,
    seq: u32,
    /// Requests sent so far (each is one round trip to the kernel), for benchmarks.
    pub requests: u64,
}

impl Rtnl {
    /// Open a socket in the calling thread's network namespace.
    pub fn open() -> Result<Rtnl> {
        let sock = NetlinkSocket::open(libc::NETLINK_ROUTE)
            .map_err(|source| NetError::Io { what: "open an rtnetlink socket".into(), source })?;
        Ok(Rtnl { sock, seq: 0, requests: 0 })
    }

    /// Open a socket inside the network namespace `netns`; every request on it acts there.
    pub fn open_in(netns: BorrowedFd<'_>) -> Result<Rtnl> {
        with_netns(netns, Rtnl::open)?
    }

    /// Send one request built by `body` and read its replies up to the acknowledgement (or the
    /// end of a dump). Returns the payloads of the data replies and whether a dump was
    /// interrupted by a concurrent change.
    fn request(
        &mut self,
        what: &dyn Fn() -> String,
        ty: u16,
        flags: u16,
        body: impl FnOnce(&mut Writer<'_>),
    ) -> Result<(Vec<Vec<u8>>, bool)> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        self.requests += 1;
        let mut msg = Vec::with_capacity(256);
        body(&mut Writer::new(&mut msg, ty, NLM_F_REQUEST | flags, seq));
        self.sock.send(&msg).map_err(|source| NetError::Io { what: what(), source })?;
        let mut data = Vec::new();
        let mut interrupted = false;
        loop {
            let dgram = match self.sock.recv() {
                Ok(Some(dgram)) => dgram,
                Ok(None) => return Err(NetError::Timeout { what: what(), timeout: NETLINK_TIMEOUT }),
                Err(source) => return Err(NetError::Io { what: what(), source }),
            };
            for msg in messages(dgram) {
                let msg = msg.map_err(|source| NetError::Malformed { what: what(), source })?;
                if msg.header.seq != seq {
                    // A late answer to an earlier request that timed out.
                    continue;
                }
                interrupted |= msg.header.flags & NLM_F_DUMP_INTR != 0;
                match msg.header.ty {
                    NLMSG_ERROR => {
                        let reply = parse_error(msg.header.flags, msg.payload)
                            .map_err(|source| NetError::Malformed { what: what(), source })?;
                        if reply.errno != 0 {
                            return Err(NetError::Kernel { what: what(), errno: reply.errno, message: reply.message });
                        }
                        return Ok((data, interrupted));
                    }
                    NLMSG_DONE => {
                        // A dump's end carries the dump's own error code, if any.
                        let code = msg.payload.get(..4).and_then(|b| b.try_into().ok()).map(i32::from_ne_bytes);
                        if let Some(code @ ..=-1) = code {
                            return Err(NetError::Kernel { what: what(), errno: code.saturating_neg(), message: None });
                        }
                        return Ok((data, interrupted));
                    }
                    NLMSG_NOOP => {}
                    NLMSG_OVERRUN => {
                        return Err(NetError::Malformed {
                            what: what(),
                            source: Malformed("the kernel reports lost messages"),
                        })
                    }
                    _ => data.push(msg.payload.to_vec()),
                }
            }
        }
    }

    /// Create a veth pair in one request: `host` (with MAC `host_mac`) here, and its peer `peer`
    /// created directly inside the network namespace `peer_netns`. Both ends start down.
    pub fn create_veth(&mut self, host: &str, host_mac: [u8; 6], peer: &str, peer_netns: BorrowedFd<'_>) -> Result<()> {
        check_ifname(host)?;
        check_ifname(peer)?;
        let fd = u32::try_from(peer_netns.as_raw_fd()).unwrap_or(u32::MAX);
        let what = || format!("create veth {host}");
        self.request(&what, RTM_NEWLINK, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, |w| {
            w.header(&ifinfomsg(AF_UNSPEC, 0, 0, 0));
            w.attr_str(IFLA_IFNAME, host);
            w.attr(IFLA_ADDRESS, &host_mac);
            let info = w.begin_nest(IFLA_LINKINFO);
            w.attr_str(IFLA_INFO_KIND, "veth");
            let data = w.begin_nest(IFLA_INFO_DATA);
            let peer_info = w.begin_nest(VETH_INFO_PEER);
            w.header(&ifinfomsg(AF_UNSPEC, 0, 0, 0));
            w.attr_str(IFLA_IFNAME, peer);
            w.attr_u32(IFLA_NET_NS_FD, fd);
            w.end_nest(peer_info);
            w.end_nest(data);
            w.end_nest(info);
        })
        .map(drop)
    }

    /// The index of interface `name`.
    pub fn link_index(&mut self, name: &str) -> Result<u32> {
        check_ifname(name)?;
        let what = || format!("look up link {name}");
        let (replies, _) = self.request(&what, RTM_GETLINK, NLM_F_ACK, |w| {
            w.header(&ifinfomsg(AF_UNSPEC, 0, 0, 0));
            w.attr_str(IFLA_IFNAME, name);
            w.attr_u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
        })?;
        let first = replies
            .first()
            .ok_or_else(|| NetError::Malformed { what: what(), source: Malformed("acknowledged without the link") })?;
        parse_link(first).map(|l| l.index).map_err(|source| NetError::Malformed { what: what(), source })
    }

    /// Bring interface `index` up.
    pub fn set_up(&mut self, index: u32) -> Result<()> {
        let what = || format!("set link {index} up");
        self.request(&what, RTM_NEWLINK, NLM_F_ACK, |w| w.header(&ifinfomsg(AF_UNSPEC, index, IFF_UP, IFF_UP)))
            .map(drop)
    }

    /// Delete interface `index` (for a veth, both ends go).
    pub fn delete_link(&mut self, index: u32) -> Result<()> {
        let what = || format!("delete link {index}");
        self.request(&what, RTM_DELLINK, NLM_F_ACK, |w| w.header(&ifinfomsg(AF_UNSPEC, index, 0, 0))).map(drop)
    }

    /// Every interface of the namespace (one dump).
    pub fn links(&mut self) -> Result<Vec<Link>> {
        let what = || "list links".to_owned();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (replies, interrupted) = self.request(&what, RTM_GETLINK, NLM_F_DUMP, |w| {
                w.header(&ifinfomsg(AF_UNSPEC, 0, 0, 0));
                w.attr_u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
            })?;
            if interrupted && attempt < DUMP_ATTEMPTS {
                continue;
            }
            return replies
                .iter()
                .map(|r| parse_link(r))
                .collect::<Result<_, _>>()
                .map_err(|source| NetError::Malformed { what: what(), source });
        }
    }

    /// Add (or replace) address `addr/prefix` on interface `index`, with the broadcast address
    /// of its subnet for prefixes up to /30.
    pub fn add_address(&mut self, index: u32, addr: Ipv4Addr, prefix: u8) -> Result<()> {
        let what = || format!("add address {addr}/{prefix} to link {index}");
        self.request(&what, RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE, |w| {
            w.header(&ifaddrmsg(prefix, index));
            w.attr(IFA_LOCAL, &addr.octets());
            w.attr(IFA_ADDRESS, &addr.octets());
            if prefix <= 30 {
                let cidr = Cidr { addr, prefix };
                let broadcast = Ipv4Addr::from(u32::from(cidr.network()) | !u32::from(cidr.mask()));
                w.attr(IFA_BROADCAST, &broadcast.octets());
            }
        })
        .map(drop)
    }

    /// Remove address `addr/prefix` from interface `index`.
    pub fn delete_address(&mut self, index: u32, addr: Ipv4Addr, prefix: u8) -> Result<()> {
        let what = || format!("delete address {addr}/{prefix} from link {index}");
        self.request(&what, RTM_DELADDR, NLM_F_ACK, |w| {
            w.header(&ifaddrmsg(prefix, index));
            w.attr(IFA_LOCAL, &addr.octets());
            w.attr(IFA_ADDRESS, &addr.octets());
        })
        .map(drop)
    }

    /// Add (or replace) a route in the main table (protocol `boot`, like `ip route add`).
    pub fn add_route(&mut self, r: &Route) -> Result<()> {
        let what = || format!("add route {r}");
        let scope = if r.scope_link { RT_SCOPE_LINK } else { RT_SCOPE_UNIVERSE };
        self.request(&what, RTM_NEWROUTE, NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE, |w| {
            w.header(&rtmsg(r.dst.prefix, RTPROT_BOOT, scope, RTN_UNICAST));
            route_attrs(w, r);
        })
        .map(drop)
    }

    /// Delete a route from the main table: the one matching `r`'s destination, and its gateway,
    /// interface (unless 0) and source where given, whatever its scope and protocol.
    pub fn delete_route(&mut self, r: &Route) -> Result<()> {
        let what = || format!("delete route {r}");
        self.request(&what, RTM_DELROUTE, NLM_F_ACK, |w| {
            w.header(&rtmsg(r.dst.prefix, 0, RT_SCOPE_NOWHERE, 0));
            route_attrs(w, r);
        })
        .map(drop)
    }

    /// Add (or replace) a permanent neighbour entry: `ip` is at `mac` on interface `index`.
    pub fn add_neighbour(&mut self, index: u32, ip: Ipv4Addr, mac: [u8; 6]) -> Result<()> {
        let what = || format!("add neighbour {ip} lladdr {} on link {index}", Mac(&mac));
        self.request(&what, RTM_NEWNEIGH, NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE, |w| {
            w.header(&ndmsg(index, NUD_PERMANENT));
            w.attr(NDA_DST, &ip.octets());
            w.attr(NDA_LLADDR, &mac);
        })
        .map(drop)
    }
}

fn route_attrs(w: &mut Writer<'_>, r: &Route) {
    w.attr_u32(RTA_TABLE, u32::from(RT_TABLE_MAIN));
    if r.dst.prefix > 0 {
        w.attr(RTA_DST, &r.dst.network().octets());
    }
    if let Some(gw) = r.gateway {
        w.attr(RTA_GATEWAY, &gw.octets());
    }
    if r.index != 0 {
        w.attr_u32(RTA_OIF, r.index);
    }
    if let Some(src) = r.src {
        w.attr(RTA_PREFSRC, &src.octets());
    }
}

/// Read an `RTM_NEWLINK` payload.
fn parse_link(payload: &[u8]) -> Result<Link, Malformed> {
    let (fixed, rest) = split_header::<16>(payload)?;
    let [_family, _, _type0, _type1, i0, i1, i2, i3, f0, f1, f2, f3, ..] = fixed;
    let flags = u32::from_ne_bytes([f0, f1, f2, f3]);
    let mut link = Link {
        index: u32::from_ne_bytes([i0, i1, i2, i3]),
        name: String::new(),
        mac: None,
        loopback: flags & IFF_LOOPBACK != 0,
        up: flags & IFF_UP != 0,
        carrier: flags & IFF_LOWER_UP != 0,
        kind: None,
    };
    for attr in attrs(rest) {
        let attr = attr?;
        match attr.ty {
            IFLA_IFNAME => link.name = attr.str()?.to_owned(),
            IFLA_ADDRESS => link.mac = attr.data.try_into().ok(),
            IFLA_CARRIER => link.carrier = attr.u8()? != 0,
            IFLA_LINKINFO => {
                if let Some(kind) = find_attr(attr.data, IFLA_INFO_KIND)? {
                    link.kind = Some(kind.str()?.to_owned());
                }
            }
            _ => {}
        }
    }
    Ok(link)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::{Attr, NLA_F_NESTED};

    fn collect(buf: &[u8]) -> Vec<Attr<'_>> {
        attrs(buf).collect::<Result<_, _>>().unwrap()
    }

    #[test]
    fn fixed_headers_have_the_kernel_layout() {
        let m = ifinfomsg(AF_UNSPEC, 7, IFF_UP, IFF_UP);
        assert_eq!(&m[4..8], &7u32.to_ne_bytes());
        assert_eq!(&m[8..12], &1u32.to_ne_bytes());
        assert_eq!(&m[12..16], &1u32.to_ne_bytes());
        assert_eq!(m[..4], [0, 0, 0, 0]);
        assert_eq!(ifaddrmsg(24, 3)[..4], [AF_INET, 24, 0, 0]);
        assert_eq!(rtmsg(0, RTPROT_BOOT, RT_SCOPE_LINK, RTN_UNICAST)[..8], [2, 0, 0, 0, 254, 3, 253, 1]);
        assert_eq!(&ndmsg(5, NUD_PERMANENT)[8..10], &0x80u16.to_ne_bytes());
    }

    #[test]
    fn link_payloads_parse() {
        let mut buf = Vec::new();
        let mut w = Writer::new(&mut buf, RTM_NEWLINK, 0, 1);
        w.header(&ifinfomsg(AF_UNSPEC, 4, IFF_UP | IFF_LOWER_UP, 0));
        w.attr_str(IFLA_IFNAME, "k-web");
        w.attr(IFLA_ADDRESS, &[2, 0, 0, 0, 0, 9]);
        let info = w.begin_nest(IFLA_LINKINFO | NLA_F_NESTED);
        w.attr_str(IFLA_INFO_KIND, "veth");
        w.end_nest(info);
        w.attr_u8(IFLA_CARRIER, 0);
        let msg = messages(&buf).next().unwrap().unwrap();
        let link = parse_link(msg.payload).unwrap();
        assert_eq!(
            link,
            Link {
                index: 4,
                name: "k-web".into(),
                mac: Some([2, 0, 0, 0, 0, 9]),
                loopback: false,
                up: true,
                carrier: false,
                kind: Some("veth".into()),
            }
        );
        for end in 0..msg.payload.len() {
            let _ = parse_link(&msg.payload[..end]);
        }
    }

    #[test]
    fn veth_request_nests_the_peer_with_its_namespace() {
        // Same body as create_veth builds, checked structurally.
        let mut buf = Vec::new();
        let mut w = Writer::new(&mut buf, RTM_NEWLINK, NLM_F_REQUEST, 1);
        w.header(&ifinfomsg(AF_UNSPEC, 0, 0, 0));
        let info = w.begin_nest(IFLA_LINKINFO);
        w.attr_str(IFLA_INFO_KIND, "veth");
        let data = w.begin_nest(IFLA_INFO_DATA);
        let peer = w.begin_nest(VETH_INFO_PEER);
        w.header(&ifinfomsg(AF_UNSPEC, 0, 0, 0));
        w.attr_str(IFLA_IFNAME, "eth0");
        w.attr_u32(IFLA_NET_NS_FD, 9);
        w.end_nest(peer);
        w.end_nest(data);
        w.end_nest(info);
        let msg = messages(&buf).next().unwrap().unwrap();
        let (_, rest) = split_header::<16>(msg.payload).unwrap();
        let info = collect(rest);
        let data = collect(info[0].data);
        assert_eq!(data[0].str().unwrap(), "veth");
        let peer = collect(data[1].data)[0];
        assert_eq!(peer.ty, VETH_INFO_PEER);
        let (_, peer_attrs) = split_header::<16>(peer.data).unwrap();
        let peer_attrs = collect(peer_attrs);
        assert_eq!(peer_attrs[0].str().unwrap(), "eth0");
        assert_eq!(peer_attrs[1].u32().unwrap(), 9);
    }

    #[test]
    fn routes_print_like_ip_route() {
        let r = Route {
            dst: Cidr { addr: Ipv4Addr::UNSPECIFIED, prefix: 0 },
            gateway: Some(Ipv4Addr::new(169, 254, 1, 1)),
            index: 2,
            src: Some(Ipv4Addr::new(10, 89, 1, 2)),
            scope_link: false,
        };
        assert_eq!(r.to_string(), "default via 169.254.1.1 dev 2 src 10.89.1.2");
        assert_eq!(Mac(&[2, 0xab, 0, 0, 1, 0xff]).to_string(), "02:ab:00:00:01:ff");
    }
}
