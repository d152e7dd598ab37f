//! The firewall as one nf_tables batch, built in process and sent over `NETLINK_NETFILTER`.
//!
//! [`batch`] turns a [`Firewall`] and the uplink's interface name into this ruleset (what
//! `nft list table inet keel` prints back, modulo nft's shorthand: `meta l4proto tcp th dport`
//! lists as `tcp dport`, and `reject with icmpx port-unreachable` as `reject`):
//!
//! ```text
//! table inet keel {
//!   chain forward { type filter hook forward priority 0; policy drop;
//!     ct state established,related accept
//!     ct state invalid drop
//!     iifname UPLINK ct status dnat accept              # published ports (with an uplink)
//!     # each Flow, in order:
//!     iifname "k-*" oifname "k-*" ip saddr FROM ip daddr TO [meta l4proto P th dport N] accept
//!     # each egress source (with an uplink):
//!     iifname "k-*" ip saddr SRC oifname UPLINK accept
//!     reject with icmpx port-unreachable                # denied clients fail fast
//!   }
//!   chain input { type filter hook input priority 0; policy accept;
//!     iifname "k-*" reject with icmpx port-unreachable  # containers never reach the host
//!   }
//!   chain prerouting { type nat hook prerouting priority -100; policy accept;
//!     # each Publish (with an uplink):
//!     iifname UPLINK meta l4proto P th dport HOST_PORT dnat ip to TO:PORT
//!   }
//!   chain postrouting { type nat hook postrouting priority 100; policy accept;
//!     # each egress source (with an uplink):
//!     ip saddr SRC oifname UPLINK masquerade
//!   }
//! }
//! ```
//!
//! The expressions are the ones nft 1.0 generates for that text: every `ip saddr`/`ip daddr` is
//! preceded by `meta nfproto ipv4` (the table is `inet`); a /32 is one compare, a shorter prefix
//! a mask then a compare; interface names compare all 16 bytes (`IFNAMSIZ`, NUL-padded) and the
//! `k-*` wildcard only its 2-byte prefix.
//!
//! The batch adds the table, deletes it and adds it again before the chains: loading it replaces
//! whatever `inet keel` held, atomically, and works the same whether the table exists or not.
//!
//! Every message between the batch's begin and end asks for an acknowledgement (`NLM_F_ACK`):
//! [`apply`] then knows when the kernel is done (all acknowledged) and which message failed (an
//! error carries that message's sequence number). The socket's receive buffer is sized for one
//! acknowledgement per message.

use std::collections::BTreeSet;

use keel_plan::net::{Cidr, Firewall, Proto, HOST_IF_PREFIX, TABLE};

use crate::error::{NetError, Result};
use crate::netlink::{
    find_attr, messages, parse_error, split_header, Writer, NLA_F_NESTED, NLMSG_ERROR, NLM_F_ACK, NLM_F_APPEND,
    NLM_F_CREATE, NLM_F_REQUEST,
};
use crate::sys::{NetlinkSocket, NETLINK_TIMEOUT};

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 16;
const NFNL_MSG_BATCH_END: u16 = 17;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;

const NFPROTO_UNSPEC: u8 = 0;
const NFPROTO_INET: u8 = 1;
const NFPROTO_IPV4: u8 = 2;

const NFTA_TABLE_NAME: u16 = 1;
const NFTA_TABLE_FLAGS: u16 = 2;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;

const NF_INET_PRE_ROUTING: u32 = 0;
const NF_INET_LOCAL_IN: u32 = 1;
const NF_INET_FORWARD: u32 = 2;
const NF_INET_POST_ROUTING: u32 = 4;
const NF_DROP: u32 = 0;
const NF_ACCEPT: u32 = 1;

const NFT_REG_VERDICT: u32 = 0;
const NFT_REG_1: u32 = 1;
const NFT_REG_2: u32 = 2;

const NFTA_META_DREG: u16 = 1;
const NFTA_META_KEY: u16 = 2;
const NFT_META_IIFNAME: u32 = 6;
const NFT_META_OIFNAME: u32 = 7;
const NFT_META_NFPROTO: u32 = 15;
const NFT_META_L4PROTO: u32 = 16;

const NFTA_CMP_SREG: u16 = 1;
const NFTA_CMP_OP: u16 = 2;
const NFTA_CMP_DATA: u16 = 3;
const NFT_CMP_EQ: u32 = 0;
const NFT_CMP_NEQ: u32 = 1;

const NFTA_PAYLOAD_DREG: u16 = 1;
const NFTA_PAYLOAD_BASE: u16 = 2;
const NFTA_PAYLOAD_OFFSET: u16 = 3;
const NFTA_PAYLOAD_LEN: u16 = 4;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;

const NFTA_BITWISE_SREG: u16 = 1;
const NFTA_BITWISE_DREG: u16 = 2;
const NFTA_BITWISE_LEN: u16 = 3;
const NFTA_BITWISE_MASK: u16 = 4;
const NFTA_BITWISE_XOR: u16 = 5;

const NFTA_CT_DREG: u16 = 1;
const NFTA_CT_KEY: u16 = 2;
const NFT_CT_STATE: u32 = 0;
const NFT_CT_STATUS: u32 = 2;
/// `NF_CT_STATE_INVALID_BIT`.
const CT_STATE_INVALID: u32 = 1;
/// `NF_CT_STATE_BIT(IP_CT_ESTABLISHED) | NF_CT_STATE_BIT(IP_CT_RELATED)`.
const CT_STATE_ESTABLISHED_RELATED: u32 = 2 | 4;
/// `IPS_DST_NAT`.
const CT_STATUS_DNAT: u32 = 1 << 5;

const NFTA_IMMEDIATE_DREG: u16 = 1;
const NFTA_IMMEDIATE_DATA: u16 = 2;

const NFTA_NAT_TYPE: u16 = 1;
const NFTA_NAT_FAMILY: u16 = 2;
const NFTA_NAT_REG_ADDR_MIN: u16 = 3;
const NFTA_NAT_REG_PROTO_MIN: u16 = 5;
const NFTA_NAT_FLAGS: u16 = 7;
const NFT_NAT_DNAT: u32 = 1;
const NF_NAT_RANGE_PROTO_SPECIFIED: u32 = 2;

const NFTA_REJECT_TYPE: u16 = 1;
const NFTA_REJECT_ICMP_CODE: u16 = 2;
const NFT_REJECT_ICMPX_UNREACH: u32 = 2;
const NFT_REJECT_ICMPX_PORT_UNREACH: u8 = 1;

/// Offsets of the addresses in the IPv4 header, and of the destination port in TCP and UDP.
const IP_SADDR: u32 = 12;
const IP_DADDR: u32 = 16;
const TH_DPORT: u32 = 2;

/// `IFNAMSIZ`.
const IFNAMSIZ: usize = 16;

const FORWARD: &str = "forward";
const INPUT: &str = "input";
const PREROUTING: &str = "prerouting";
const POSTROUTING: &str = "postrouting";

fn nfnl_type(msg: u16) -> u16 {
    (NFNL_SUBSYS_NFTABLES << 8) | msg
}

/// `struct nfgenmsg`.
fn nfgenmsg(family: u8, res_id: u16) -> [u8; 4] {
    let [r0, r1] = res_id.to_be_bytes();
    [family, 0, r0, r1]
}

/// An interface name as `meta iifname`/`oifname` loads it: NUL-padded to `IFNAMSIZ` (names
/// longer than 15 bytes cannot exist and are cut).
fn ifname(name: &str) -> [u8; IFNAMSIZ] {
    let mut out = [0u8; IFNAMSIZ];
    for (slot, byte) in out.iter_mut().zip(name.bytes().take(IFNAMSIZ - 1)) {
        *slot = byte;
    }
    out
}

/// The expressions of one rule.
struct Rule<'w, 'b> {
    w: &'w mut Writer<'b>,
}

impl Rule<'_, '_> {
    fn expr(&mut self, name: &str, body: impl FnOnce(&mut Writer<'_>)) {
        let elem = self.w.begin_nest(NFTA_LIST_ELEM | NLA_F_NESTED);
        self.w.attr_str(NFTA_EXPR_NAME, name);
        let data = self.w.begin_nest(NFTA_EXPR_DATA | NLA_F_NESTED);
        body(self.w);
        self.w.end_nest(data);
        self.w.end_nest(elem);
    }

    fn value(w: &mut Writer<'_>, ty: u16, data: &[u8]) {
        let nest = w.begin_nest(ty | NLA_F_NESTED);
        w.attr(NFTA_DATA_VALUE, data);
        w.end_nest(nest);
    }

    /// `[ meta load KEY => reg 1 ]`
    fn meta(&mut self, key: u32) {
        self.expr("meta", |w| {
            w.attr_be32(NFTA_META_KEY, key);
            w.attr_be32(NFTA_META_DREG, NFT_REG_1);
        });
    }

    /// `[ cmp OP reg 1 DATA ]`
    fn cmp(&mut self, op: u32, data: &[u8]) {
        self.expr("cmp", |w| {
            w.attr_be32(NFTA_CMP_SREG, NFT_REG_1);
            w.attr_be32(NFTA_CMP_OP, op);
            Rule::value(w, NFTA_CMP_DATA, data);
        });
    }

    /// `[ payload load LENb @ BASE header + OFFSET => reg 1 ]`
    fn payload(&mut self, base: u32, offset: u32, len: u32) {
        self.expr("payload", |w| {
            w.attr_be32(NFTA_PAYLOAD_DREG, NFT_REG_1);
            w.attr_be32(NFTA_PAYLOAD_BASE, base);
            w.attr_be32(NFTA_PAYLOAD_OFFSET, offset);
            w.attr_be32(NFTA_PAYLOAD_LEN, len);
        });
    }

    /// `[ bitwise reg 1 = ( reg 1 & MASK ) ^ 0 ]`
    fn mask(&mut self, mask: &[u8]) {
        let zero = vec![0u8; mask.len()];
        self.expr("bitwise", |w| {
            w.attr_be32(NFTA_BITWISE_SREG, NFT_REG_1);
            w.attr_be32(NFTA_BITWISE_DREG, NFT_REG_1);
            w.attr_be32(NFTA_BITWISE_LEN, u32::try_from(mask.len()).unwrap_or(u32::MAX));
            Rule::value(w, NFTA_BITWISE_MASK, mask);
            Rule::value(w, NFTA_BITWISE_XOR, &zero);
        });
    }

    /// `[ ct load KEY => reg 1 ]`
    fn ct(&mut self, key: u32) {
        self.expr("ct", |w| {
            w.attr_be32(NFTA_CT_KEY, key);
            w.attr_be32(NFTA_CT_DREG, NFT_REG_1);
        });
    }

    /// `[ immediate reg REG DATA ]`
    fn load(&mut self, reg: u32, data: &[u8]) {
        self.expr("immediate", |w| {
            w.attr_be32(NFTA_IMMEDIATE_DREG, reg);
            Rule::value(w, NFTA_IMMEDIATE_DATA, data);
        });
    }

    /// `[ immediate reg 0 accept|drop ]`
    fn verdict(&mut self, code: u32) {
        self.expr("immediate", |w| {
            w.attr_be32(NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT);
            let data = w.begin_nest(NFTA_IMMEDIATE_DATA | NLA_F_NESTED);
            let verdict = w.begin_nest(NFTA_DATA_VERDICT | NLA_F_NESTED);
            w.attr_be32(NFTA_VERDICT_CODE, code);
            w.end_nest(verdict);
            w.end_nest(data);
        });
    }

    /// `meta nfproto ipv4`
    fn ipv4(&mut self) {
        self.meta(NFT_META_NFPROTO);
        self.cmp(NFT_CMP_EQ, &[NFPROTO_IPV4]);
    }

    /// `ip saddr|daddr CIDR` (after [`Rule::ipv4`]).
    fn ip(&mut self, offset: u32, cidr: Cidr) {
        self.payload(NFT_PAYLOAD_NETWORK_HEADER, offset, 4);
        if cidr.prefix < 32 {
            self.mask(&cidr.mask().octets());
        }
        self.cmp(NFT_CMP_EQ, &cidr.network().octets());
    }

    /// `iifname|oifname "PREFIX*"`: only the prefix's bytes are compared.
    fn ifname_prefix(&mut self, key: u32, prefix: &str) {
        self.meta(key);
        self.cmp(NFT_CMP_EQ, prefix.as_bytes());
    }

    /// `iifname|oifname NAME`
    fn ifname(&mut self, key: u32, name: &str) {
        self.meta(key);
        self.cmp(NFT_CMP_EQ, &ifname(name));
    }

    /// `meta l4proto P th dport N`
    fn dport(&mut self, proto: Proto, port: u16) {
        self.meta(NFT_META_L4PROTO);
        self.cmp(NFT_CMP_EQ, &[proto.number()]);
        self.payload(NFT_PAYLOAD_TRANSPORT_HEADER, TH_DPORT, 2);
        self.cmp(NFT_CMP_EQ, &port.to_be_bytes());
    }

    /// `ct state|status BITS` (any of them set).
    fn ct_any(&mut self, key: u32, bits: u32) {
        self.ct(key);
        self.mask(&bits.to_ne_bytes());
        self.cmp(NFT_CMP_NEQ, &[0; 4]);
    }

    /// `reject with icmpx port-unreachable`
    fn reject(&mut self) {
        self.expr("reject", |w| {
            w.attr_be32(NFTA_REJECT_TYPE, NFT_REJECT_ICMPX_UNREACH);
            w.attr_u8(NFTA_REJECT_ICMP_CODE, NFT_REJECT_ICMPX_PORT_UNREACH);
        });
    }
}

/// A batch under construction.
struct Batch {
    buf: Vec<u8>,
    seq: u32,
}

impl Batch {
    fn message(&mut self, ty: u16, flags: u16, family: u8, res_id: u16) -> Writer<'_> {
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        let mut w = Writer::new(&mut self.buf, ty, NLM_F_REQUEST | flags, seq);
        w.header(&nfgenmsg(family, res_id));
        w
    }

    fn table(&mut self, msg: u16) {
        let flags = if msg == NFT_MSG_NEWTABLE { NLM_F_ACK | NLM_F_CREATE } else { NLM_F_ACK };
        let mut w = self.message(nfnl_type(msg), flags, NFPROTO_INET, 0);
        w.attr_str(NFTA_TABLE_NAME, TABLE);
        w.attr_be32(NFTA_TABLE_FLAGS, 0);
    }

    fn chain(&mut self, name: &str, ty: &str, hook: u32, priority: i32, policy: u32) {
        let mut w = self.message(nfnl_type(NFT_MSG_NEWCHAIN), NLM_F_ACK | NLM_F_CREATE, NFPROTO_INET, 0);
        w.attr_str(NFTA_CHAIN_TABLE, TABLE);
        w.attr_str(NFTA_CHAIN_NAME, name);
        w.attr_str(NFTA_CHAIN_TYPE, ty);
        w.attr_be32(NFTA_CHAIN_POLICY, policy);
        let nest = w.begin_nest(NFTA_CHAIN_HOOK | NLA_F_NESTED);
        w.attr_be32(NFTA_HOOK_HOOKNUM, hook);
        w.attr(NFTA_HOOK_PRIORITY, &priority.to_be_bytes());
        w.end_nest(nest);
    }

    fn rule(&mut self, chain: &str, body: impl FnOnce(&mut Rule<'_, '_>)) {
        let mut w = self.message(nfnl_type(NFT_MSG_NEWRULE), NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND, NFPROTO_INET, 0);
        w.attr_str(NFTA_RULE_TABLE, TABLE);
        w.attr_str(NFTA_RULE_CHAIN, chain);
        let exprs = w.begin_nest(NFTA_RULE_EXPRESSIONS | NLA_F_NESTED);
        body(&mut Rule { w: &mut w });
        w.end_nest(exprs);
    }
}

/// The whole ruleset (see the module documentation) as one batch of netlink messages, numbered
/// from `seq`. `uplink` is the uplink's interface name; without one, nothing is published and
/// nothing leaves (no egress, no DNAT).
pub fn batch(fw: &Firewall, uplink: Option<&str>, seq: u32) -> Vec<u8> {
    let mut b = Batch { buf: Vec::with_capacity(2048 + 512 * (fw.flows.len() + 2 * fw.egress.len())), seq };
    b.message(NFNL_MSG_BATCH_BEGIN, 0, NFPROTO_UNSPEC, NFNL_SUBSYS_NFTABLES);
    b.table(NFT_MSG_NEWTABLE);
    b.table(NFT_MSG_DELTABLE);
    b.table(NFT_MSG_NEWTABLE);
    b.chain(FORWARD, "filter", NF_INET_FORWARD, 0, NF_DROP);
    b.chain(INPUT, "filter", NF_INET_LOCAL_IN, 0, NF_ACCEPT);
    b.chain(PREROUTING, "nat", NF_INET_PRE_ROUTING, -100, NF_ACCEPT);
    b.chain(POSTROUTING, "nat", NF_INET_POST_ROUTING, 100, NF_ACCEPT);

    b.rule(FORWARD, |r| {
        r.ct_any(NFT_CT_STATE, CT_STATE_ESTABLISHED_RELATED);
        r.verdict(NF_ACCEPT);
    });
    b.rule(FORWARD, |r| {
        r.ct_any(NFT_CT_STATE, CT_STATE_INVALID);
        r.verdict(NF_DROP);
    });
    if let Some(up) = uplink {
        b.rule(FORWARD, |r| {
            r.ifname(NFT_META_IIFNAME, up);
            r.ct_any(NFT_CT_STATUS, CT_STATUS_DNAT);
            r.verdict(NF_ACCEPT);
        });
    }
    // Flows and egress only ever start at a container's veth: without that, a host on the
    // uplink's LAN could forge a container subnet as its source and be forwarded in.
    for flow in &fw.flows {
        b.rule(FORWARD, |r| {
            r.ifname_prefix(NFT_META_IIFNAME, HOST_IF_PREFIX);
            r.ifname_prefix(NFT_META_OIFNAME, HOST_IF_PREFIX);
            r.ipv4();
            r.ip(IP_SADDR, flow.from);
            r.ip(IP_DADDR, flow.to);
            if let Some((proto, port)) = flow.port {
                r.dport(proto, port);
            }
            r.verdict(NF_ACCEPT);
        });
    }
    if let Some(up) = uplink {
        for &src in &fw.egress {
            b.rule(FORWARD, |r| {
                r.ifname_prefix(NFT_META_IIFNAME, HOST_IF_PREFIX);
                r.ipv4();
                r.ip(IP_SADDR, src);
                r.ifname(NFT_META_OIFNAME, up);
                r.verdict(NF_ACCEPT);
            });
        }
    }
    b.rule(FORWARD, |r| r.reject());

    b.rule(INPUT, |r| {
        r.ifname_prefix(NFT_META_IIFNAME, HOST_IF_PREFIX);
        r.reject();
    });

    if let Some(up) = uplink {
        for p in &fw.publish {
            b.rule(PREROUTING, |r| {
                r.ifname(NFT_META_IIFNAME, up);
                r.dport(p.proto, p.host_port);
                r.load(NFT_REG_1, &p.to.octets());
                r.load(NFT_REG_2, &p.port.to_be_bytes());
                r.expr("nat", |w| {
                    w.attr_be32(NFTA_NAT_TYPE, NFT_NAT_DNAT);
                    w.attr_be32(NFTA_NAT_FAMILY, u32::from(NFPROTO_IPV4));
                    w.attr_be32(NFTA_NAT_REG_ADDR_MIN, NFT_REG_1);
                    w.attr_be32(NFTA_NAT_REG_PROTO_MIN, NFT_REG_2);
                    w.attr_be32(NFTA_NAT_FLAGS, NF_NAT_RANGE_PROTO_SPECIFIED);
                });
            });
        }
        for &src in &fw.egress {
            b.rule(POSTROUTING, |r| {
                r.ipv4();
                r.ip(IP_SADDR, src);
                r.ifname(NFT_META_OIFNAME, up);
                r.expr("masq", |_| {});
            });
        }
    }
    b.message(NFNL_MSG_BATCH_END, 0, NFPROTO_UNSPEC, NFNL_SUBSYS_NFTABLES);
    b.buf
}

/// Size of a batch, for benchmarks and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchStats {
    /// Netlink messages, the batch's begin and end included.
    pub messages: usize,
    /// Bytes sent in the one sendmsg.
    pub bytes: usize,
}

/// Count the messages of a batch.
pub fn stats(batch: &[u8]) -> BatchStats {
    BatchStats { messages: messages(batch).count(), bytes: batch.len() }
}

/// Send `batch` to nf_tables in the calling thread's network namespace, in one sendmsg, and
/// wait until every message that asked for an acknowledgement has one. The first error the
/// kernel reports fails the whole batch (nf_tables then applies none of it) and names its
/// message, e.g. `add rule 3 of chain inet keel forward: No such file or directory`.
pub fn apply(batch: &[u8]) -> Result<()> {
    let mut pending = BTreeSet::new();
    for msg in messages(batch) {
        let msg = msg.map_err(|source| NetError::Malformed { what: "read the nftables batch".into(), source })?;
        if msg.header.flags & NLM_F_ACK != 0 {
            pending.insert(msg.header.seq);
        }
    }
    let mut sock = NetlinkSocket::open(libc::NETLINK_NETFILTER)
        .map_err(|source| NetError::Io { what: "open an nfnetlink socket".into(), source })?;
    sock.send(batch).map_err(|source| NetError::Io { what: "send the nftables batch".into(), source })?;
    while !pending.is_empty() {
        let unanswered = pending.len();
        let dgram = match sock.recv() {
            Ok(Some(dgram)) => dgram,
            Ok(None) => {
                let what = format!("load the nftables batch ({unanswered} messages unanswered)");
                return Err(NetError::Timeout { what, timeout: NETLINK_TIMEOUT });
            }
            Err(source) => return Err(NetError::Io { what: "read the nftables batch's answers".into(), source }),
        };
        for msg in messages(dgram) {
            let malformed = |source| NetError::Malformed { what: "read the nftables batch's answers".into(), source };
            let msg = msg.map_err(malformed)?;
            if msg.header.ty != NLMSG_ERROR {
                continue;
            }
            let reply = parse_error(msg.header.flags, msg.payload).map_err(malformed)?;
            if reply.errno != 0 {
                let what = describe(batch, reply.request.seq);
                return Err(NetError::Kernel { what, errno: reply.errno, message: reply.message });
            }
            pending.remove(&msg.header.seq);
        }
    }
    Ok(())
}

fn family(family: u8) -> String {
    match family {
        NFPROTO_INET => "inet".into(),
        NFPROTO_IPV4 => "ip".into(),
        10 => "ip6".into(),
        other => format!("family {other}"),
    }
}

/// Name the message numbered `seq` in `batch`, for an error.
fn describe(batch: &[u8], seq: u32) -> String {
    let mut rules: Vec<(String, usize)> = Vec::new();
    for msg in messages(batch).map_while(Result::ok) {
        let Ok((fixed, attributes)) = split_header::<4>(msg.payload) else { continue };
        let [fam, ..] = fixed;
        let text = |ty| find_attr(attributes, ty).ok().flatten().and_then(|a| a.str().ok()).unwrap_or("?");
        let rule_no = if msg.header.ty == nfnl_type(NFT_MSG_NEWRULE) {
            let chain = format!("{} {}", text(NFTA_RULE_TABLE), text(NFTA_RULE_CHAIN));
            match rules.iter_mut().find(|(c, _)| *c == chain) {
                Some((_, n)) => {
                    *n += 1;
                    *n
                }
                None => {
                    rules.push((chain, 1));
                    1
                }
            }
        } else {
            0
        };
        if msg.header.seq != seq {
            continue;
        }
        let ty = msg.header.ty;
        return if ty == NFNL_MSG_BATCH_BEGIN {
            "begin the nftables batch".into()
        } else if ty == NFNL_MSG_BATCH_END {
            "commit the nftables batch".into()
        } else if ty == nfnl_type(NFT_MSG_NEWTABLE) {
            format!("add table {} {}", family(fam), text(NFTA_TABLE_NAME))
        } else if ty == nfnl_type(NFT_MSG_DELTABLE) {
            format!("delete table {} {}", family(fam), text(NFTA_TABLE_NAME))
        } else if ty == nfnl_type(NFT_MSG_NEWCHAIN) {
            format!("add chain {} {} {}", family(fam), text(NFTA_CHAIN_TABLE), text(NFTA_CHAIN_NAME))
        } else if ty == nfnl_type(NFT_MSG_NEWRULE) {
            format!("add rule {rule_no} of chain {} {} {}", family(fam), text(NFTA_RULE_TABLE), text(NFTA_RULE_CHAIN))
        } else {
            format!("nftables message {seq} (type {ty:#x})")
        };
    }
    format!("nftables batch (message {seq})")
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use keel_plan::net::{Flow, Publish};

    use super::*;
    use crate::netlink::{attrs, Attr};

    fn host(a: [u8; 4]) -> Cidr {
        Cidr::host(Ipv4Addr::from(a))
    }

    fn firewall() -> Firewall {
        let flow = |from, to, port| Flow { from, to, port, why: "test".into() };
        Firewall {
            flows: vec![
                flow(host([10, 89, 1, 2]), host([10, 89, 2, 3]), Some((Proto::Tcp, 5432))),
                flow(
                    Cidr { addr: Ipv4Addr::new(10, 88, 0, 0), prefix: 15 },
                    Cidr { addr: Ipv4Addr::UNSPECIFIED, prefix: 0 },
                    None,
                ),
                flow(host([10, 89, 1, 2]), host([10, 89, 2, 3]), Some((Proto::Udp, 53))),
            ],
            egress: vec![host([10, 89, 1, 2])],
            publish: vec![Publish {
                proto: Proto::Tcp,
                host_port: 8080,
                to: Ipv4Addr::new(10, 89, 1, 2),
                port: 80,
                container: "web".into(),
            }],
        }
    }

    fn all(buf: &[u8]) -> Vec<Attr<'_>> {
        attrs(buf).collect::<Result<_, _>>().unwrap()
    }

    fn words(data: &[u8]) -> String {
        data.chunks(4)
            .map(|c| {
                let mut w = [0u8; 4];
                w[..c.len()].copy_from_slice(c);
                format!("0x{:08x}", u32::from_le_bytes(w))
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn get<'a>(data: &[Attr<'a>], ty: u16) -> Attr<'a> {
        *data.iter().find(|a| a.ty == ty).unwrap()
    }

    fn value(data: &[Attr<'_>], ty: u16) -> String {
        words(all(get(data, ty).data)[0].data)
    }

    /// Render one expression the way `nft --debug=netlink` prints it.
    fn render(expr: &Attr<'_>) -> String {
        let parts = all(expr.data);
        let name = get(&parts, NFTA_EXPR_NAME).str().unwrap();
        let d = all(get(&parts, NFTA_EXPR_DATA).data);
        let n = |ty| get(&d, ty).be32().unwrap();
        match name {
            "meta" => {
                let key = match n(NFTA_META_KEY) {
                    NFT_META_IIFNAME => "iifname",
                    NFT_META_OIFNAME => "oifname",
                    NFT_META_NFPROTO => "nfproto",
                    NFT_META_L4PROTO => "l4proto",
                    k => panic!("meta key {k}"),
                };
                format!("[ meta load {key} => reg {} ]", n(NFTA_META_DREG))
            }
            "cmp" => {
                let op = ["eq", "neq"][n(NFTA_CMP_OP) as usize];
                format!("[ cmp {op} reg {} {} ]", n(NFTA_CMP_SREG), value(&d, NFTA_CMP_DATA))
            }
            "payload" => {
                let base = ["link", "network", "transport"][n(NFTA_PAYLOAD_BASE) as usize];
                format!(
                    "[ payload load {}b @ {base} header + {} => reg {} ]",
                    n(NFTA_PAYLOAD_LEN),
                    n(NFTA_PAYLOAD_OFFSET),
                    n(NFTA_PAYLOAD_DREG)
                )
            }
            "bitwise" => format!(
                "[ bitwise reg {} = ( reg {} & {} ) ^ {} ]",
                n(NFTA_BITWISE_DREG),
                n(NFTA_BITWISE_SREG),
                value(&d, NFTA_BITWISE_MASK),
                value(&d, NFTA_BITWISE_XOR)
            ),
            "ct" => {
                let key = ["state", "direction", "status"][n(NFTA_CT_KEY) as usize];
                format!("[ ct load {key} => reg {} ]", n(NFTA_CT_DREG))
            }
            "immediate" => {
                let data = all(get(&d, NFTA_IMMEDIATE_DATA).data);
                if n(NFTA_IMMEDIATE_DREG) == 0 {
                    let verdict = all(get(&data, NFTA_DATA_VERDICT).data);
                    let v = ["drop", "accept"][get(&verdict, NFTA_VERDICT_CODE).be32().unwrap() as usize];
                    format!("[ immediate reg 0 {v} ]")
                } else {
                    format!("[ immediate reg {} {} ]", n(NFTA_IMMEDIATE_DREG), words(data[0].data))
                }
            }
            "nat" => format!(
                "[ nat {} ip addr_min reg {} proto_min reg {} flags {:#x} ]",
                ["snat", "dnat"][n(NFTA_NAT_TYPE) as usize],
                n(NFTA_NAT_REG_ADDR_MIN),
                n(NFTA_NAT_REG_PROTO_MIN),
                n(NFTA_NAT_FLAGS)
            ),
            "masq" => "[ masq ]".into(),
            "reject" => {
                format!("[ reject type {} code {} ]", n(NFTA_REJECT_TYPE), get(&d, NFTA_REJECT_ICMP_CODE).u8().unwrap())
            }
            other => panic!("unexpected expression {other}"),
        }
    }

    /// Every rule of the batch as `nft --debug=netlink` prints it.
    fn rendered(batch: &[u8]) -> String {
        let mut out = String::new();
        for msg in messages(batch) {
            let msg = msg.unwrap();
            if msg.header.ty != nfnl_type(NFT_MSG_NEWRULE) {
                continue;
            }
            let (_, rest) = split_header::<4>(msg.payload).unwrap();
            let top = all(rest);
            out += &format!(
                "inet {} {}\n",
                get(&top, NFTA_RULE_TABLE).str().unwrap(),
                get(&top, NFTA_RULE_CHAIN).str().unwrap()
            );
            for expr in all(get(&top, NFTA_RULE_EXPRESSIONS).data) {
                assert!(expr.nested);
                out += &format!("  {}\n", render(&expr));
            }
            out.push('\n');
        }
        out
    }

    /// What nft 1.0.6 prints with `--debug=netlink` for the module documentation's ruleset with
    /// the rules of [`firewall`] and uplink `eth0`.
    const NFT_GENERATED: &str = "\
inet keel forward
  [ ct load state => reg 1 ]
  [ bitwise reg 1 = ( reg 1 & 0x00000006 ) ^ 0x00000000 ]
  [ cmp neq reg 1 0x00000000 ]
  [ immediate reg 0 accept ]

inet keel forward
  [ ct load state => reg 1 ]
  [ bitwise reg 1 = ( reg 1 & 0x00000001 ) ^ 0x00000000 ]
  [ cmp neq reg 1 0x00000000 ]
  [ immediate reg 0 drop ]

inet keel forward
  [ meta load iifname => reg 1 ]
  [ cmp eq reg 1 0x30687465 0x00000000 0x00000000 0x00000000 ]
  [ ct load status => reg 1 ]
  [ bitwise reg 1 = ( reg 1 & 0x00000020 ) ^ 0x00000000 ]
  [ cmp neq reg 1 0x00000000 ]
  [ immediate reg 0 accept ]

inet keel forward
  [ meta load iifname => reg 1 ]
  [ cmp eq reg 1 0x00002d6b ]
  [ meta load oifname => reg 1 ]
  [ cmp eq reg 1 0x00002d6b ]
  [ meta load nfproto => reg 1 ]
  [ cmp eq reg 1 0x00000002 ]
  [ payload load 4b @ network header + 12 => reg 1 ]
  [ cmp eq reg 1 0x0201590a ]
  [ payload load 4b @ network header + 16 => reg 1 ]
  [ cmp eq reg 1 0x0302590a ]
  [ meta load l4proto => reg 1 ]
  [ cmp eq reg 1 0x00000006 ]
  [ payload load 2b @ transport header + 2 => reg 1 ]
  [ cmp eq reg 1 0x00003815 ]
  [ immediate reg 0 accept ]

inet keel forward
  [ meta load iifname => reg 1 ]
  [ cmp eq reg 1 0x00002d6b ]
  [ meta load oifname => reg 1 ]
  [ cmp eq reg 1 0x00002d6b ]
  [ meta load nfproto => reg 1 ]
  [ cmp eq reg 1 0x00000002 ]
  [ payload load 4b @ network header + 12 => reg 1 ]
  [ bitwise reg 1 = ( reg 1 & 0x0000feff ) ^ 0x00000000 ]
  [ cmp eq reg 1 0x0000580a ]
  [ payload load 4b @ network header + 16 => reg 1 ]
  [ bitwise reg 1 = ( reg 1 & 0x00000000 ) ^ 0x00000000 ]
  [ cmp eq reg 1 0x00000000 ]
  [ immediate reg 0 accept ]

inet keel forward
  [ meta load iifname => reg 1 ]
  [ cmp eq reg 1 0x00002d6b ]
  [ meta load oifname => reg 1 ]
  [ cmp eq reg 1 0x00002d6b ]
  [ meta load nfproto => reg 1 ]
  [ cmp eq reg 1 0x00000002 ]
  [ payload load 4b @ network header + 12 => reg 1 ]
  [ cmp eq reg 1 0x0201590a ]
  [ payload load 4b @ network header + 16 => reg 1 ]
  [ cmp eq reg 1 0x0302590a ]
  [ meta load l4proto => reg 1 ]
  [ cmp eq reg 1 0x00000011 ]
  [ payload load 2b @ transport header + 2 => reg 1 ]
  [ cmp eq reg 1 0x00003500 ]
  [ immediate reg 0 accept ]

inet keel forward
  [ meta load iifname => reg 1 ]
  [ cmp eq reg 1 0x00002d6b ]
  [ meta load nfproto => reg 1 ]
  [ cmp eq reg 1 0x00000002 ]
  [ payload load 4b @ network header + 12 => reg 1 ]
  [ cmp eq reg 1 0x0201590a ]
  [ meta load oifname => reg 1 ]
  [ cmp eq reg 1 0x30687465 0x00000000 0x00000000 0x00000000 ]
  [ immediate reg 0 accept ]

inet keel forward
  [ reject type 2 code 1 ]

inet keel input
  [ meta load iifname => reg 1 ]
  [ cmp eq reg 1 0x00002d6b ]
  [ reject type 2 code 1 ]

inet keel prerouting
  [ meta load iifname => reg 1 ]
  [ cmp eq reg 1 0x30687465 0x00000000 0x00000000 0x00000000 ]
  [ meta load l4proto => reg 1 ]
  [ cmp eq reg 1 0x00000006 ]
  [ payload load 2b @ transport header + 2 => reg 1 ]
  [ cmp eq reg 1 0x0000901f ]
  [ immediate reg 1 0x0201590a ]
  [ immediate reg 2 0x00005000 ]
  [ nat dnat ip addr_min reg 1 proto_min reg 2 flags 0x2 ]

inet keel postrouting
  [ meta load nfproto => reg 1 ]
  [ cmp eq reg 1 0x00000002 ]
  [ payload load 4b @ network header + 12 => reg 1 ]
  [ cmp eq reg 1 0x0201590a ]
  [ meta load oifname => reg 1 ]
  [ cmp eq reg 1 0x30687465 0x00000000 0x00000000 0x00000000 ]
  [ masq ]

";

    #[test]
    fn rules_are_the_expressions_nft_generates() {
        let b = batch(&firewall(), Some("eth0"), 1);
        assert_eq!(rendered(&b), NFT_GENERATED);
    }

    #[test]
    fn batch_frame_tables_and_chains() {
        let b = batch(&firewall(), Some("eth0"), 100);
        let msgs: Vec<_> = messages(&b).collect::<Result<_, _>>().unwrap();
        // begin, 3 table messages, 4 chains, 8 forward + 1 input + 1 prerouting + 1 postrouting
        // rules, end.
        assert_eq!(msgs.len(), 20);
        assert_eq!(stats(&b), BatchStats { messages: 20, bytes: b.len() });
        let seqs: Vec<u32> = msgs.iter().map(|m| m.header.seq).collect();
        assert_eq!(seqs, (100..120).collect::<Vec<_>>());
        let types: Vec<u16> = msgs.iter().map(|m| m.header.ty).collect();
        assert_eq!(types[..8], [16, 0xa00, 0xa02, 0xa00, 0xa03, 0xa03, 0xa03, 0xa03]);
        assert_eq!(types[19], 17);
        // Begin and end: nfgenmsg AF_UNSPEC, res_id NFNL_SUBSYS_NFTABLES big-endian, no ACK.
        for m in [&msgs[0], &msgs[19]] {
            assert_eq!(m.payload, [0, 0, 0, 10]);
            assert_eq!(m.header.flags, NLM_F_REQUEST);
        }
        for m in &msgs[1..19] {
            assert_ne!(m.header.flags & NLM_F_ACK, 0);
            assert_eq!(m.payload[..4], [NFPROTO_INET, 0, 0, 0]);
        }
        for m in &msgs[8..19] {
            assert_eq!(m.header.flags, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND);
        }
        // The prerouting chain: type nat, hook 0, priority -100 (big-endian), policy accept.
        let (_, rest) = split_header::<4>(msgs[6].payload).unwrap();
        let chain = all(rest);
        assert_eq!(get(&chain, NFTA_CHAIN_NAME).str().unwrap(), "prerouting");
        assert_eq!(get(&chain, NFTA_CHAIN_TYPE).str().unwrap(), "nat");
        assert_eq!(get(&chain, NFTA_CHAIN_POLICY).be32().unwrap(), NF_ACCEPT);
        let hook = get(&chain, NFTA_CHAIN_HOOK);
        assert!(hook.nested);
        let hook = all(hook.data);
        assert_eq!(get(&hook, NFTA_HOOK_HOOKNUM).be32().unwrap(), 0);
        assert_eq!(get(&hook, NFTA_HOOK_PRIORITY).data, [0xff, 0xff, 0xff, 0x9c]);
    }

    #[test]
    fn without_uplink_nothing_leaves_and_nothing_is_published() {
        let b = batch(&firewall(), None, 1);
        // begin, 3 tables, 4 chains, forward: 2 + 3 flows + reject, input: 1, end.
        assert_eq!(stats(&b).messages, 16);
        let text = rendered(&b);
        assert!(!text.contains("nat") && !text.contains("masq") && !text.contains("0x30687465"));
        assert!(!text.contains("ct load status"));
    }

    #[test]
    fn errors_name_the_failing_message() {
        let b = batch(&firewall(), Some("eth0"), 1);
        assert_eq!(describe(&b, 1), "begin the nftables batch");
        assert_eq!(describe(&b, 3), "delete table inet keel");
        assert_eq!(describe(&b, 5), "add chain inet keel forward");
        assert_eq!(describe(&b, 11), "add rule 3 of chain inet keel forward");
        assert_eq!(describe(&b, 17), "add rule 1 of chain inet keel input");
        assert_eq!(describe(&b, 20), "commit the nftables batch");
        assert_eq!(describe(&b, 99), "nftables batch (message 99)");
    }

    #[test]
    fn long_interface_names_are_cut_to_ifnamsiz() {
        assert_eq!(&ifname("eth0")[..5], b"eth0\0");
        assert_eq!(ifname("0123456789abcdefgh")[15], 0);
    }
}
