//! DHCPv4 wire format (RFC 2131 §2, RFC 2132, RFC 3396 long options, RFC 3442 classless routes).
//!
//! [`Message::parse`] takes untrusted bytes and either returns a fully checked [`Message`] or a
//! [`ParseError`]; it never panics and allocates at most in proportion to the input.
//! [`Message::encode`] writes a message that `parse` reads back unchanged.

use std::net::Ipv4Addr;

use keel_plan::net::Cidr;

/// Length of the fixed BOOTP header, before the magic cookie.
const HEADER_LEN: usize = 236;
/// The magic cookie that starts the options field (99.130.83.99).
pub const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// Smallest message we send (the BOOTP minimum some relays and servers insist on).
const MIN_ENCODED_LEN: usize = 300;
/// Ethernet hardware type.
const HTYPE_ETHERNET: u8 = 1;
/// Ethernet address length.
const HLEN_ETHERNET: u8 = 6;
/// The broadcast bit of the flags field.
const FLAG_BROADCAST: u16 = 0x8000;

/// Option codes this codec understands (RFC 2132, RFC 3442).
pub mod code {
    /// Padding.
    pub const PAD: u8 = 0;
    /// Subnet mask.
    pub const SUBNET_MASK: u8 = 1;
    /// Routers.
    pub const ROUTERS: u8 = 3;
    /// DNS servers.
    pub const DNS: u8 = 6;
    /// Host name.
    pub const HOST_NAME: u8 = 12;
    /// Domain name.
    pub const DOMAIN_NAME: u8 = 15;
    /// Interface MTU.
    pub const MTU: u8 = 26;
    /// Requested IP address.
    pub const REQUESTED_IP: u8 = 50;
    /// IP address lease time.
    pub const LEASE_TIME: u8 = 51;
    /// DHCP message type.
    pub const MESSAGE_TYPE: u8 = 53;
    /// Server identifier.
    pub const SERVER_ID: u8 = 54;
    /// Parameter request list.
    pub const PARAMETER_REQUEST: u8 = 55;
    /// Renewal (T1) time.
    pub const RENEWAL_TIME: u8 = 58;
    /// Rebinding (T2) time.
    pub const REBINDING_TIME: u8 = 59;
    /// Client identifier.
    pub const CLIENT_ID: u8 = 61;
    /// Domain search list (RFC 3397); requested, not decoded.
    pub const DOMAIN_SEARCH: u8 = 119;
    /// Classless static routes (RFC 3442).
    pub const CLASSLESS_ROUTES: u8 = 121;
    /// End of options.
    pub const END: u8 = 255;
}

/// Why bytes are not a DHCP message we accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Shorter than the fixed header plus the magic cookie.
    #[error("message of {0} bytes is shorter than the 240-byte BOOTP header and cookie")]
    Truncated(usize),
    /// The op field is neither BOOTREQUEST (1) nor BOOTREPLY (2).
    #[error("unknown BOOTP op {0}")]
    BadOp(u8),
    /// Not Ethernet (htype 1, hlen 6).
    #[error("unsupported hardware type {htype} with address length {hlen}")]
    BadHardware {
        /// The htype field.
        htype: u8,
        /// The hlen field.
        hlen: u8,
    },
    /// The options field does not start with 99.130.83.99.
    #[error("bad magic cookie {0:?}")]
    BadCookie([u8; 4]),
    /// An option's length byte, or its data, runs past the end of the message.
    #[error("option {code} runs past the end of the message")]
    OptionTruncated {
        /// The option code.
        code: u8,
    },
    /// A known option has a length its format does not allow.
    #[error("option {code} has invalid length {len}")]
    BadLength {
        /// The option code.
        code: u8,
        /// Its total data length (after joining split instances).
        len: usize,
    },
    /// Option 53 holds an unknown message type.
    #[error("unknown DHCP message type {0}")]
    BadMessageType(u8),
    /// Option 1 is not a contiguous netmask.
    #[error("subnet mask {0} is not contiguous")]
    BadSubnetMask(Ipv4Addr),
    /// Option 121 has a prefix longer than 32 bits or a truncated entry.
    #[error("malformed classless static route option")]
    BadRoute,
    /// A text option (host name, domain name) is not UTF-8.
    #[error("option {code} is not valid UTF-8")]
    BadString {
        /// The option code.
        code: u8,
    },
}

/// The BOOTP op field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// BOOTREQUEST (1): client to server.
    Request,
    /// BOOTREPLY (2): server to client.
    Reply,
}

/// DHCP message type (option 53).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// DHCPDISCOVER (1).
    Discover,
    /// DHCPOFFER (2).
    Offer,
    /// DHCPREQUEST (3).
    Request,
    /// DHCPDECLINE (4).
    Decline,
    /// DHCPACK (5).
    Ack,
    /// DHCPNAK (6).
    Nak,
    /// DHCPRELEASE (7).
    Release,
    /// DHCPINFORM (8).
    Inform,
}

impl MessageType {
    /// The option 53 value.
    pub fn number(self) -> u8 {
        match self {
            MessageType::Discover => 1,
            MessageType::Offer => 2,
            MessageType::Request => 3,
            MessageType::Decline => 4,
            MessageType::Ack => 5,
            MessageType::Nak => 6,
            MessageType::Release => 7,
            MessageType::Inform => 8,
        }
    }

    /// The type with option 53 value `n`, if known.
    pub fn from_number(n: u8) -> Option<MessageType> {
        Some(match n {
            1 => MessageType::Discover,
            2 => MessageType::Offer,
            3 => MessageType::Request,
            4 => MessageType::Decline,
            5 => MessageType::Ack,
            6 => MessageType::Nak,
            7 => MessageType::Release,
            8 => MessageType::Inform,
            _ => return None,
        })
    }
}

/// One classless static route (RFC 3442).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClasslessRoute {
    /// Destination prefix (host bits cleared).
    pub destination: Cidr,
    /// Next hop; `0.0.0.0` means the destination is on-link.
    pub gateway: Ipv4Addr,
}

/// The options this codec knows; everything else is skipped on parse and never encoded.
///
/// Lists are empty and strings `None` when the option is absent. Parsed strings have trailing
/// NULs removed, and are `None` when nothing is left.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Options {
    /// 53: message type. A message without it is plain BOOTP.
    pub message_type: Option<MessageType>,
    /// 50: requested IP address.
    pub requested_ip: Option<Ipv4Addr>,
    /// 54: server identifier.
    pub server_id: Option<Ipv4Addr>,
    /// 51: lease time in seconds (`u32::MAX`: infinite).
    pub lease_secs: Option<u32>,
    /// 58: renewal (T1) time in seconds.
    pub t1_secs: Option<u32>,
    /// 59: rebinding (T2) time in seconds.
    pub t2_secs: Option<u32>,
    /// 1: subnet mask (always contiguous once parsed).
    pub subnet_mask: Option<Ipv4Addr>,
    /// 3: routers, in preference order.
    pub routers: Vec<Ipv4Addr>,
    /// 6: DNS servers, in preference order.
    pub dns: Vec<Ipv4Addr>,
    /// 12: host name.
    pub host_name: Option<String>,
    /// 15: domain name.
    pub domain_name: Option<String>,
    /// 26: interface MTU.
    pub mtu: Option<u16>,
    /// 55: parameter request list (option codes).
    pub parameter_request: Vec<u8>,
    /// 61: client identifier (type byte, then the identifier).
    pub client_id: Option<Vec<u8>>,
    /// 121: classless static routes; `Some` (and non-empty) when the option is present.
    pub classless_routes: Option<Vec<ClasslessRoute>>,
}

/// A DHCPv4 message: the BOOTP fixed header and the options we understand.
///
/// `sname`, `file`, `hops` and option overload (52) are ignored on parse and zero on encode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Request (client) or reply (server).
    pub op: Op,
    /// Transaction id chosen by the client.
    pub xid: u32,
    /// Seconds since the client began the exchange.
    pub secs: u16,
    /// The broadcast flag: the client cannot receive unicast yet.
    pub broadcast: bool,
    /// Client's address, when it has one and can answer ARP.
    pub ciaddr: Ipv4Addr,
    /// "Your" address: what the server offers or assigns.
    pub yiaddr: Ipv4Addr,
    /// Next server (TFTP) address.
    pub siaddr: Ipv4Addr,
    /// Relay agent address.
    pub giaddr: Ipv4Addr,
    /// Client's Ethernet address.
    pub chaddr: [u8; 6],
    /// The options.
    pub options: Options,
}

/// A cursor over untrusted bytes: every read is checked.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.buf.split_first_chunk::<N>()?;
        self.buf = rest;
        Some(*head)
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.buf.split_at_checked(n)?;
        self.buf = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        let (&first, rest) = self.buf.split_first()?;
        self.buf = rest;
        Some(first)
    }

    fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_be_bytes)
    }

    fn ip(&mut self) -> Option<Ipv4Addr> {
        self.array::<4>().map(Ipv4Addr::from)
    }
}

/// The prefix length of a contiguous netmask.
pub fn mask_prefix(mask: Ipv4Addr) -> Option<u8> {
    let bits = u32::from(mask);
    let ones = bits.leading_ones();
    // Contiguous: no one bit after the first zero.
    if bits.checked_shl(ones).unwrap_or(0) != 0 {
        return None;
    }
    u8::try_from(ones).ok()
}

fn fixed<const N: usize>(code: u8, data: &[u8]) -> Result<[u8; N], ParseError> {
    <[u8; N]>::try_from(data).map_err(|_| ParseError::BadLength { code, len: data.len() })
}

fn ip_list(code: u8, data: &[u8]) -> Result<Vec<Ipv4Addr>, ParseError> {
    let chunks = data.chunks_exact(4);
    if data.is_empty() || !chunks.remainder().is_empty() {
        return Err(ParseError::BadLength { code, len: data.len() });
    }
    Ok(chunks.filter_map(|c| <[u8; 4]>::try_from(c).ok()).map(Ipv4Addr::from).collect())
}

fn text(code: u8, data: &[u8]) -> Result<Option<String>, ParseError> {
    if data.is_empty() {
        return Err(ParseError::BadLength { code, len: 0 });
    }
    let end = data.iter().rposition(|&b| b != 0).map_or(0, |last| last + 1);
    let trimmed = data.get(..end).unwrap_or_default();
    let s = std::str::from_utf8(trimmed).map_err(|_| ParseError::BadString { code })?;
    Ok((!s.is_empty()).then(|| s.to_owned()))
}

fn classless_routes(data: &[u8]) -> Result<Vec<ClasslessRoute>, ParseError> {
    // RFC 3442: the option is at least 5 bytes (a default route).
    if data.len() < 5 {
        return Err(ParseError::BadRoute);
    }
    let mut r = Reader { buf: data };
    let mut routes = Vec::new();
    while let Some(width) = r.u8() {
        if width > 32 {
            return Err(ParseError::BadRoute);
        }
        let significant = usize::from(width).div_ceil(8);
        let octets = r.take(significant).ok_or(ParseError::BadRoute)?;
        let mut dest = [0u8; 4];
        for (d, o) in dest.iter_mut().zip(octets) {
            *d = *o;
        }
        let gateway = r.ip().ok_or(ParseError::BadRoute)?;
        let cidr = Cidr { addr: Ipv4Addr::from(dest), prefix: width };
        routes.push(ClasslessRoute { destination: Cidr { addr: cidr.network(), prefix: width }, gateway });
    }
    Ok(routes)
}

/// Collects the options TLVs, joining repeated codes (RFC 3396), in first-seen order.
fn collect_options(buf: &[u8]) -> Result<Vec<(u8, Vec<u8>)>, ParseError> {
    let mut r = Reader { buf };
    let mut found: Vec<(u8, Vec<u8>)> = Vec::new();
    while let Some(c) = r.u8() {
        match c {
            code::PAD => continue,
            code::END => break,
            _ => {}
        }
        let len = r.u8().ok_or(ParseError::OptionTruncated { code: c })?;
        let data = r.take(usize::from(len)).ok_or(ParseError::OptionTruncated { code: c })?;
        match found.iter_mut().find(|(k, _)| *k == c) {
            Some((_, v)) => v.extend_from_slice(data),
            None => found.push((c, data.to_vec())),
        }
    }
    Ok(found)
}

impl Options {
    fn parse(buf: &[u8]) -> Result<Options, ParseError> {
        let mut o = Options::default();
        for (c, data) in collect_options(buf)? {
            let data = data.as_slice();
            match c {
                code::MESSAGE_TYPE => {
                    let [n] = fixed::<1>(c, data)?;
                    o.message_type = Some(MessageType::from_number(n).ok_or(ParseError::BadMessageType(n))?);
                }
                code::REQUESTED_IP => o.requested_ip = Some(Ipv4Addr::from(fixed::<4>(c, data)?)),
                code::SERVER_ID => o.server_id = Some(Ipv4Addr::from(fixed::<4>(c, data)?)),
                code::LEASE_TIME => o.lease_secs = Some(u32::from_be_bytes(fixed(c, data)?)),
                code::RENEWAL_TIME => o.t1_secs = Some(u32::from_be_bytes(fixed(c, data)?)),
                code::REBINDING_TIME => o.t2_secs = Some(u32::from_be_bytes(fixed(c, data)?)),
                code::SUBNET_MASK => {
                    let mask = Ipv4Addr::from(fixed::<4>(c, data)?);
                    mask_prefix(mask).ok_or(ParseError::BadSubnetMask(mask))?;
                    o.subnet_mask = Some(mask);
                }
                code::ROUTERS => o.routers = ip_list(c, data)?,
                code::DNS => o.dns = ip_list(c, data)?,
                code::HOST_NAME => o.host_name = text(c, data)?,
                code::DOMAIN_NAME => o.domain_name = text(c, data)?,
                code::MTU => o.mtu = Some(u16::from_be_bytes(fixed(c, data)?)),
                code::PARAMETER_REQUEST => {
                    if data.is_empty() {
                        return Err(ParseError::BadLength { code: c, len: 0 });
                    }
                    o.parameter_request = data.to_vec();
                }
                code::CLIENT_ID => {
                    if data.len() < 2 {
                        return Err(ParseError::BadLength { code: c, len: data.len() });
                    }
                    o.client_id = Some(data.to_vec());
                }
                code::CLASSLESS_ROUTES => o.classless_routes = Some(classless_routes(data)?),
                _ => {}
            }
        }
        Ok(o)
    }

    fn encode(&self, out: &mut Vec<u8>) {
        if let Some(t) = self.message_type {
            put(out, code::MESSAGE_TYPE, &[t.number()]);
        }
        if let Some(id) = &self.client_id {
            put(out, code::CLIENT_ID, id);
        }
        if let Some(ip) = self.requested_ip {
            put(out, code::REQUESTED_IP, &ip.octets());
        }
        if let Some(ip) = self.server_id {
            put(out, code::SERVER_ID, &ip.octets());
        }
        if let Some(name) = &self.host_name {
            put(out, code::HOST_NAME, name.as_bytes());
        }
        put(out, code::PARAMETER_REQUEST, &self.parameter_request);
        if let Some(secs) = self.lease_secs {
            put(out, code::LEASE_TIME, &secs.to_be_bytes());
        }
        if let Some(secs) = self.t1_secs {
            put(out, code::RENEWAL_TIME, &secs.to_be_bytes());
        }
        if let Some(secs) = self.t2_secs {
            put(out, code::REBINDING_TIME, &secs.to_be_bytes());
        }
        if let Some(mask) = self.subnet_mask {
            put(out, code::SUBNET_MASK, &mask.octets());
        }
        put(out, code::ROUTERS, &self.routers.iter().flat_map(|ip| ip.octets()).collect::<Vec<_>>());
        put(out, code::DNS, &self.dns.iter().flat_map(|ip| ip.octets()).collect::<Vec<_>>());
        if let Some(name) = &self.domain_name {
            put(out, code::DOMAIN_NAME, name.as_bytes());
        }
        if let Some(mtu) = self.mtu {
            put(out, code::MTU, &mtu.to_be_bytes());
        }
        if let Some(routes) = &self.classless_routes {
            let mut data = Vec::new();
            for route in routes {
                let width = route.destination.prefix.min(32);
                let significant = usize::from(width).div_ceil(8);
                data.push(width);
                data.extend(route.destination.network().octets().iter().take(significant));
                data.extend_from_slice(&route.gateway.octets());
            }
            put(out, code::CLASSLESS_ROUTES, &data);
        }
    }
}

/// Appends option `c`, split into several instances if longer than 255 bytes (RFC 3396);
/// nothing for empty data (no option we write may be empty).
fn put(out: &mut Vec<u8>, c: u8, data: &[u8]) {
    for chunk in data.chunks(255) {
        out.push(c);
        out.push(u8::try_from(chunk.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(chunk);
    }
}

impl Message {
    /// Parses a DHCP message from untrusted bytes (a UDP payload).
    pub fn parse(bytes: &[u8]) -> Result<Message, ParseError> {
        let truncated = || ParseError::Truncated(bytes.len());
        let mut r = Reader { buf: bytes };
        let op = match r.u8().ok_or_else(truncated)? {
            1 => Op::Request,
            2 => Op::Reply,
            other => return Err(ParseError::BadOp(other)),
        };
        let [htype, hlen, _hops] = r.array().ok_or_else(truncated)?;
        if htype != HTYPE_ETHERNET || hlen != HLEN_ETHERNET {
            return Err(ParseError::BadHardware { htype, hlen });
        }
        let xid = r.u32().ok_or_else(truncated)?;
        let secs = r.u16().ok_or_else(truncated)?;
        let flags = r.u16().ok_or_else(truncated)?;
        let ciaddr = r.ip().ok_or_else(truncated)?;
        let yiaddr = r.ip().ok_or_else(truncated)?;
        let siaddr = r.ip().ok_or_else(truncated)?;
        let giaddr = r.ip().ok_or_else(truncated)?;
        let chaddr16: [u8; 16] = r.array().ok_or_else(truncated)?;
        let (chaddr, _) = chaddr16.split_first_chunk::<6>().ok_or_else(truncated)?;
        // sname (64) and file (128).
        r.take(192).ok_or_else(truncated)?;
        let cookie: [u8; 4] = r.array().ok_or_else(truncated)?;
        if cookie != MAGIC_COOKIE {
            return Err(ParseError::BadCookie(cookie));
        }
        let options = Options::parse(r.buf)?;
        Ok(Message {
            op,
            xid,
            secs,
            broadcast: flags & FLAG_BROADCAST != 0,
            ciaddr,
            yiaddr,
            siaddr,
            giaddr,
            chaddr: *chaddr,
            options,
        })
    }

    /// Encodes the message, padded to the 300-byte BOOTP minimum.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MIN_ENCODED_LEN + 64);
        out.push(match self.op {
            Op::Request => 1,
            Op::Reply => 2,
        });
        out.extend_from_slice(&[HTYPE_ETHERNET, HLEN_ETHERNET, 0]);
        out.extend_from_slice(&self.xid.to_be_bytes());
        out.extend_from_slice(&self.secs.to_be_bytes());
        out.extend_from_slice(&(if self.broadcast { FLAG_BROADCAST } else { 0 }).to_be_bytes());
        for ip in [self.ciaddr, self.yiaddr, self.siaddr, self.giaddr] {
            out.extend_from_slice(&ip.octets());
        }
        out.extend_from_slice(&self.chaddr);
        // Rest of chaddr (10), sname (64), file (128).
        out.resize(HEADER_LEN, 0);
        out.extend_from_slice(&MAGIC_COOKIE);
        self.options.encode(&mut out);
        out.push(code::END);
        if out.len() < MIN_ENCODED_LEN {
            out.resize(MIN_ENCODED_LEN, 0);
        }
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn ip(a: u8, b: u8, c: u8, d: u8) -> Ipv4Addr {
        Ipv4Addr::new(a, b, c, d)
    }

    /// A full message with every option set.
    pub(crate) fn full_message() -> Message {
        Message {
            op: Op::Reply,
            xid: 0xdead_beef,
            secs: 7,
            broadcast: true,
            ciaddr: ip(0, 0, 0, 0),
            yiaddr: ip(192, 168, 1, 50),
            siaddr: ip(192, 168, 1, 1),
            giaddr: ip(0, 0, 0, 0),
            chaddr: [0x52, 0x54, 0, 0x12, 0x34, 0x56],
            options: Options {
                message_type: Some(MessageType::Ack),
                requested_ip: Some(ip(192, 168, 1, 50)),
                server_id: Some(ip(192, 168, 1, 1)),
                lease_secs: Some(3600),
                t1_secs: Some(1800),
                t2_secs: Some(3150),
                subnet_mask: Some(ip(255, 255, 255, 0)),
                routers: vec![ip(192, 168, 1, 1), ip(192, 168, 1, 2)],
                dns: vec![ip(1, 1, 1, 1), ip(8, 8, 8, 8)],
                host_name: Some("keel".into()),
                domain_name: Some("example.org".into()),
                mtu: Some(1500),
                parameter_request: vec![1, 3, 6],
                client_id: Some(vec![1, 0x52, 0x54, 0, 0x12, 0x34, 0x56]),
                classless_routes: Some(vec![
                    ClasslessRoute {
                        destination: Cidr { addr: ip(0, 0, 0, 0), prefix: 0 },
                        gateway: ip(192, 168, 1, 1),
                    },
                    ClasslessRoute {
                        destination: Cidr { addr: ip(10, 0, 0, 0), prefix: 8 },
                        gateway: ip(192, 168, 1, 3),
                    },
                    ClasslessRoute {
                        destination: Cidr { addr: ip(172, 16, 32, 0), prefix: 20 },
                        gateway: ip(0, 0, 0, 0),
                    },
                    ClasslessRoute {
                        destination: Cidr { addr: ip(1, 2, 3, 4), prefix: 32 },
                        gateway: ip(192, 168, 1, 4),
                    },
                ]),
            },
        }
    }

    #[test]
    fn round_trip() {
        let m = full_message();
        let bytes = m.encode();
        assert!(bytes.len() >= MIN_ENCODED_LEN);
        assert_eq!(Message::parse(&bytes).unwrap(), m);

        let empty = Message { options: Options::default(), broadcast: false, ..full_message() };
        assert_eq!(Message::parse(&empty.encode()).unwrap(), empty);
    }

    #[test]
    fn long_options_are_split_and_joined() {
        let mut m = full_message();
        m.options.dns = (0..100).map(|i| ip(10, 0, 0, i)).collect();
        let bytes = m.encode();
        assert_eq!(Message::parse(&bytes).unwrap(), m);
    }

    /// An OFFER laid out the way libslirp's bootp.c writes it (restrict=on: no router, no DNS).
    pub(crate) fn slirp_reply(msg_type: u8, xid: u32, chaddr: [u8; 6]) -> Vec<u8> {
        let mut b = vec![0u8; 548];
        b[0] = 2; // BOOTP_REPLY
        b[1] = 1;
        b[2] = 6;
        b[4..8].copy_from_slice(&xid.to_be_bytes());
        b[16..20].copy_from_slice(&[10, 0, 2, 15]); // yiaddr
        b[20..24].copy_from_slice(&[10, 0, 2, 2]); // siaddr
        b[28..34].copy_from_slice(&chaddr);
        b[236..240].copy_from_slice(&MAGIC_COOKIE);
        let opts: &[u8] = &[
            53, 1, msg_type, // RFC2132_MSG_TYPE
            54, 4, 10, 0, 2, 2, // RFC2132_SRV_ID
            51, 4, 0, 1, 0x51, 0x80, // RFC2132_LEASE_TIME: 86400
            1, 4, 255, 255, 255, 0, // RFC1533_NETMASK
            255,
        ];
        b[240..240 + opts.len()].copy_from_slice(opts);
        b
    }

    #[test]
    fn slirp_offer() {
        let mac = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
        let m = Message::parse(&slirp_reply(2, 0x1234_5678, mac)).unwrap();
        assert_eq!(m.op, Op::Reply);
        assert_eq!(m.xid, 0x1234_5678);
        assert_eq!(m.chaddr, mac);
        assert_eq!(m.yiaddr, ip(10, 0, 2, 15));
        assert_eq!(m.siaddr, ip(10, 0, 2, 2));
        assert_eq!(m.options.message_type, Some(MessageType::Offer));
        assert_eq!(m.options.server_id, Some(ip(10, 0, 2, 2)));
        assert_eq!(m.options.lease_secs, Some(86400));
        assert_eq!(m.options.subnet_mask, Some(ip(255, 255, 255, 0)));
        assert!(m.options.routers.is_empty());
        assert!(m.options.dns.is_empty());
        assert_eq!(m.options.classless_routes, None);
    }

    #[test]
    fn malformed() {
        let good = full_message().encode();
        assert_eq!(Message::parse(&[]), Err(ParseError::Truncated(0)));
        assert_eq!(Message::parse(&good[..100]), Err(ParseError::Truncated(100)));
        assert_eq!(Message::parse(&good[..239]), Err(ParseError::Truncated(239)));

        let mut b = good.clone();
        b[236] = 0;
        assert_eq!(Message::parse(&b), Err(ParseError::BadCookie([0, 130, 83, 99])));

        let mut b = good.clone();
        b[0] = 3;
        assert_eq!(Message::parse(&b), Err(ParseError::BadOp(3)));

        let mut b = good.clone();
        b[2] = 16;
        assert_eq!(Message::parse(&b), Err(ParseError::BadHardware { htype: 1, hlen: 16 }));

        let header = &good[..240];
        let with = |opts: &[u8]| [header, opts].concat();
        // Length past the end.
        assert_eq!(Message::parse(&with(&[53, 1, 2, 3, 10, 1, 2])), Err(ParseError::OptionTruncated { code: 3 }));
        // Length byte missing.
        assert_eq!(Message::parse(&with(&[53, 1, 2, 6])), Err(ParseError::OptionTruncated { code: 6 }));
        // Zero-length subnet mask.
        assert_eq!(Message::parse(&with(&[1, 0, 255])), Err(ParseError::BadLength { code: 1, len: 0 }));
        assert_eq!(Message::parse(&with(&[1, 3, 255, 255, 255])), Err(ParseError::BadLength { code: 1, len: 3 }));
        assert_eq!(Message::parse(&with(&[1, 4, 255, 0, 255, 0])), Err(ParseError::BadSubnetMask(ip(255, 0, 255, 0))));
        assert_eq!(Message::parse(&with(&[3, 6, 1, 2, 3, 4, 5, 6])), Err(ParseError::BadLength { code: 3, len: 6 }));
        assert_eq!(Message::parse(&with(&[53, 1, 99])), Err(ParseError::BadMessageType(99)));
        assert_eq!(Message::parse(&with(&[53, 0])), Err(ParseError::BadLength { code: 53, len: 0 }));
        assert_eq!(Message::parse(&with(&[121, 5, 33, 1, 2, 3, 4])), Err(ParseError::BadRoute));
        assert_eq!(Message::parse(&with(&[121, 6, 24, 10, 0, 0, 1, 2])), Err(ParseError::BadRoute));
        assert_eq!(Message::parse(&with(&[12, 2, 0xff, 0xfe])), Err(ParseError::BadString { code: 12 }));
        // Unknown options are skipped, a missing END is tolerated, data after END is ignored.
        let m = Message::parse(&with(&[0, 0, 200, 2, 9, 9, 53, 1, 5])).unwrap();
        assert_eq!(m.options.message_type, Some(MessageType::Ack));
        let m = Message::parse(&with(&[53, 1, 5, 255, 1, 99])).unwrap();
        assert_eq!(m.options.message_type, Some(MessageType::Ack));
        // Trailing NULs are dropped from strings; an all-NUL string is absent.
        let m = Message::parse(&with(&[15, 5, b'l', b'a', b'n', 0, 0, 12, 1, 0])).unwrap();
        assert_eq!(m.options.domain_name.as_deref(), Some("lan"));
        assert_eq!(m.options.host_name, None);
    }

    #[test]
    fn masks() {
        assert_eq!(mask_prefix(ip(255, 255, 255, 0)), Some(24));
        assert_eq!(mask_prefix(ip(0, 0, 0, 0)), Some(0));
        assert_eq!(mask_prefix(ip(255, 255, 255, 255)), Some(32));
        assert_eq!(mask_prefix(ip(255, 255, 254, 0)), Some(23));
        assert_eq!(mask_prefix(ip(255, 255, 0, 255)), None);
        assert_eq!(mask_prefix(ip(0, 0, 0, 1)), None);
    }
}
