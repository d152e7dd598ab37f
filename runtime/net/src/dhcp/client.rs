//! The sans-IO DHCPv4 client state machine (RFC 2131 §4.4).

use std::net::{Ipv4Addr, SocketAddrV4};

use keel_plan::net::Cidr;

use super::codec::{code, mask_prefix, ClasslessRoute, Message, MessageType, Op, Options};

/// UDP port DHCP servers listen on.
pub const SERVER_PORT: u16 = 67;
/// UDP port DHCP clients listen on (bind the socket to `0.0.0.0:68`).
pub const CLIENT_PORT: u16 = 68;
/// Lease, T1 or T2 value meaning "forever".
pub const INFINITE: u32 = u32::MAX;
/// First retransmission delay of DISCOVER and REQUEST.
pub const INITIAL_RETRANSMIT_MS: u64 = 1_000;
/// Largest retransmission delay of DISCOVER and REQUEST.
pub const MAX_RETRANSMIT_MS: u64 = 16_000;
/// REQUESTs sent (in REQUESTING and INIT-REBOOT) before giving up on the exchange.
pub const REQUEST_ATTEMPTS: u32 = 4;
/// Smallest retransmission delay in RENEWING and REBINDING (RFC 2131 §4.4.5).
pub const MIN_RENEW_RETRY_MS: u64 = 60_000;
/// Lease assumed when an ACK carries no lease time (option 51).
pub const DEFAULT_LEASE_SECS: u32 = 3_600;
/// Shorter leases are taken as this long, and renewal waits at least [`MIN_T1_SECS`]: a server
/// handing out 0 s leases or T1 = 0 cannot make the client (PID 1) renew at network speed.
pub const MIN_LEASE_SECS: u32 = 60;
/// The earliest renewal after an ACK.
pub const MIN_T1_SECS: u32 = 30;
/// Classless static routes kept from one lease at most.
pub const MAX_ROUTES: usize = 16;
/// Options we ask every server for (option 55).
const PARAMETER_REQUEST: [u8; 11] = [
    code::SUBNET_MASK,
    code::ROUTERS,
    code::DNS,
    code::DOMAIN_NAME,
    code::MTU,
    code::LEASE_TIME,
    code::SERVER_ID,
    code::RENEWAL_TIME,
    code::REBINDING_TIME,
    code::DOMAIN_SEARCH,
    code::CLASSLESS_ROUTES,
];

/// Where a [`Transmit`] goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Destination {
    /// `255.255.255.255:67` (the socket needs `SO_BROADCAST`).
    Broadcast,
    /// The server at this address, port 67 (renewal).
    Unicast(Ipv4Addr),
}

impl Destination {
    /// The UDP destination.
    pub fn socket_addr(self) -> SocketAddrV4 {
        match self {
            Destination::Broadcast => SocketAddrV4::new(Ipv4Addr::BROADCAST, SERVER_PORT),
            Destination::Unicast(ip) => SocketAddrV4::new(ip, SERVER_PORT),
        }
    }
}

/// A datagram to send now from the client socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The UDP payload.
    pub bytes: Vec<u8>,
    /// Where to send it.
    pub to: Destination,
}

/// An address lease and the configuration that came with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Our address.
    pub address: Ipv4Addr,
    /// Prefix length of the subnet (from option 1, else the address's class).
    pub prefix: u8,
    /// Default routers (option 3), in preference order. Empty when the server sent none (QEMU
    /// slirp with `restrict=on`), or when it sent classless routes (RFC 3442: then option 3 is
    /// ignored and any default route is in `routes`).
    pub routers: Vec<Ipv4Addr>,
    /// DNS servers (option 6), in preference order.
    pub dns: Vec<Ipv4Addr>,
    /// Domain name (option 15), only if it is a syntactically valid DNS name (so it is safe to
    /// write into `resolv.conf`).
    pub domain: Option<String>,
    /// Interface MTU (option 26), only if at least 68.
    pub mtu: Option<u16>,
    /// The server that granted the lease (option 54); renewals go to it.
    pub server: Ipv4Addr,
    /// Lease length in seconds; [`INFINITE`] never expires.
    pub lease_secs: u32,
    /// Seconds after `obtained_ms` when renewal (unicast) starts; default half the lease.
    pub t1_secs: u32,
    /// Seconds after `obtained_ms` when rebinding (broadcast) starts; default 7/8 of the lease.
    pub t2_secs: u32,
    /// Caller's monotonic clock (ms) when the REQUEST that got this lease was sent.
    pub obtained_ms: u64,
    /// Classless static routes (option 121); a gateway of `0.0.0.0` means on-link.
    pub routes: Vec<ClasslessRoute>,
}

impl Lease {
    /// Address and prefix, for the interface.
    pub fn cidr(&self) -> Cidr {
        Cidr { addr: self.address, prefix: self.prefix }
    }

    /// Does the lease never expire?
    pub fn is_infinite(&self) -> bool {
        self.lease_secs == INFINITE
    }

    /// When renewal starts (T1), `None` if never.
    pub fn renew_at_ms(&self) -> Option<u64> {
        self.at(self.t1_secs)
    }

    /// When rebinding starts (T2), `None` if never.
    pub fn rebind_at_ms(&self) -> Option<u64> {
        self.at(self.t2_secs)
    }

    /// When the lease expires, `None` if never.
    pub fn expires_at_ms(&self) -> Option<u64> {
        self.at(self.lease_secs)
    }

    fn at(&self, secs: u32) -> Option<u64> {
        (!self.is_infinite() && secs != INFINITE).then(|| self.obtained_ms.saturating_add(u64::from(secs) * 1000))
    }

    fn expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms().is_some_and(|at| now_ms >= at)
    }

    /// Same interface configuration (everything but the timers and the server)?
    fn same_config(&self, other: &Lease) -> bool {
        self.address == other.address
            && self.prefix == other.prefix
            && self.routers == other.routers
            && self.dns == other.dns
            && self.domain == other.domain
            && self.mtu == other.mtu
            && self.routes == other.routes
    }
}

/// Something the caller must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Configure the interface from `lease`. `replaces` is the lease whose configuration it
    /// supersedes (remove that first): `None` for a first lease, `Some` when a renewal, rebinding
    /// or reboot returned a different address or different options.
    Bound {
        /// The new lease.
        lease: Lease,
        /// The previous lease, when one was configured.
        replaces: Option<Lease>,
    },
    /// The lease was extended with the same configuration: nothing to change.
    Renewed(Lease),
    /// The server refused; the client starts over with DISCOVER. Carries the lease to
    /// deconfigure when one was in use (NAK while renewing, rebinding or rebooting).
    Nak(Option<Lease>),
    /// The lease ran out without renewal: deconfigure it. The client starts over.
    Expired(Lease),
}

/// What [`Client::poll`] wants done.
#[allow(clippy::large_enum_variant, reason = "one value per poll, moved once; boxing buys nothing")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send this datagram, then poll again.
    Send(Transmit),
    /// Handle this event, then poll again.
    Event(Event),
    /// Nothing to do before [`Client::next_deadline`] or the next datagram.
    Idle,
}

/// The client's state (RFC 2131 figure 5), for logging and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// No lease; DISCOVER is due (possibly after a restart delay).
    Init,
    /// DISCOVER sent, waiting for an OFFER.
    Selecting,
    /// REQUEST for an offer sent, waiting for ACK or NAK.
    Requesting,
    /// INIT-REBOOT: after the link came back, REQUEST for the old address sent.
    Rebooting,
    /// Holding a lease, nothing to do until T1.
    Bound,
    /// Past T1: REQUEST unicast to the lease's server.
    Renewing,
    /// Past T2: REQUEST broadcast to any server.
    Rebinding,
    /// The link is down; the lease, if any, is kept until it expires.
    LinkDown,
}

/// One transaction: a xid and its retransmission schedule.
#[derive(Debug, Clone, Copy)]
struct Exchange {
    xid: u32,
    started_ms: u64,
    next_tx_ms: u64,
    last_tx_ms: u64,
    sent: u32,
}

impl Exchange {
    fn secs(&self, now_ms: u64) -> u16 {
        u16::try_from(now_ms.saturating_sub(self.started_ms) / 1000).unwrap_or(u16::MAX)
    }
}

#[derive(Debug, Clone)]
enum State {
    Init { at_ms: u64 },
    Selecting(Exchange),
    Requesting { ex: Exchange, offered: Ipv4Addr, server: Ipv4Addr },
    Rebooting { ex: Exchange, lease: Lease },
    Bound(Lease),
    Renewing { ex: Exchange, lease: Lease },
    Rebinding { ex: Exchange, lease: Lease },
    LinkDown(Option<Lease>),
}

/// A DHCPv4 client for one interface: pure state, no sockets, no clock.
///
/// See the [module documentation](super) for the states, timers and how to drive it.
#[derive(Debug, Clone)]
pub struct Client {
    mac: [u8; 6],
    hostname: Option<String>,
    rng: u64,
    /// Consecutive NAKs, expiries and abandoned exchanges since the last renewal: delays the
    /// next DISCOVER so a misbehaving server cannot make us loop at network speed.
    failures: u32,
    state: State,
}

/// The delay after the `n`th (1-based) transmission: 1 s, 2 s, 4 s, 8 s, then 16 s.
fn backoff_ms(n: u32) -> u64 {
    let shift = n.saturating_sub(1).min(5);
    (INITIAL_RETRANSMIT_MS << shift).min(MAX_RETRANSMIT_MS)
}

/// Next RENEWING/REBINDING retransmission: half the time left until `end`, at least a minute,
/// never past `end`.
fn renew_retry_ms(now_ms: u64, end_ms: u64) -> u64 {
    let wait = (end_ms.saturating_sub(now_ms) / 2).max(MIN_RENEW_RETRY_MS);
    now_ms.saturating_add(wait).min(end_ms)
}

/// Can this be our interface address?
fn usable_address(ip: Ipv4Addr) -> bool {
    !(ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || ip.is_loopback())
}

/// The classful prefix, for a server that sends no subnet mask.
fn classful_prefix(ip: Ipv4Addr) -> u8 {
    match ip.octets().first().copied().unwrap_or(0) {
        0..=127 => 8,
        128..=191 => 16,
        192..=223 => 24,
        _ => 32,
    }
}

/// A DNS name we are willing to hand to the resolver configuration.
fn valid_domain(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// The lease in an ACK, if the ACK is usable. `server` is used when option 54 is missing.
fn lease_from_ack(msg: &Message, server: Ipv4Addr, obtained_ms: u64) -> Option<Lease> {
    let o = &msg.options;
    let address = msg.yiaddr;
    if !usable_address(address) {
        return None;
    }
    let prefix = o.subnet_mask.and_then(mask_prefix).unwrap_or_else(|| classful_prefix(address));
    let lease_secs = o.lease_secs.unwrap_or(DEFAULT_LEASE_SECS).max(MIN_LEASE_SECS);
    let (t1_secs, t2_secs) = if lease_secs == INFINITE {
        (INFINITE, INFINITE)
    } else {
        let default_t2 = u32::try_from(u64::from(lease_secs) * 7 / 8).unwrap_or(lease_secs);
        let t2 = o.t2_secs.filter(|&t| t <= lease_secs).unwrap_or(default_t2);
        let t1 = o.t1_secs.filter(|&t| t <= t2).unwrap_or((lease_secs / 2).min(t2));
        let t1 = t1.max(MIN_T1_SECS.min(t2));
        (t1, t2.max(t1))
    };
    let (routers, routes) = match &o.classless_routes {
        Some(routes) => (Vec::new(), routes.iter().take(MAX_ROUTES).cloned().collect()),
        None => (o.routers.clone(), Vec::new()),
    };
    Some(Lease {
        address,
        prefix,
        routers,
        dns: o.dns.clone(),
        domain: o.domain_name.clone().filter(|d| valid_domain(d)),
        mtu: o.mtu.filter(|&m| m >= 68),
        server: o.server_id.unwrap_or(server),
        lease_secs,
        t1_secs,
        t2_secs,
        obtained_ms,
        routes,
    })
}

/// `Bound` or `Renewed`, depending on whether the configuration changed.
fn rebound(old: Lease, new: Lease) -> Event {
    if old.same_config(&new) {
        Event::Renewed(new)
    } else {
        Event::Bound { lease: new, replaces: Some(old) }
    }
}

/// What one round of [`Client::poll`] did.
#[allow(clippy::large_enum_variant, reason = "short-lived, on the stack")]
enum Flow {
    /// The state moved on without output; look again.
    Again,
    /// Return this to the caller.
    Done(Step),
}

/// Fields of an outgoing REQUEST or DISCOVER that vary by state.
struct Outgoing {
    kind: MessageType,
    ciaddr: Ipv4Addr,
    requested: Option<Ipv4Addr>,
    server: Option<Ipv4Addr>,
    to: Destination,
}

impl Client {
    /// A client for the interface with this MAC, in INIT with DISCOVER due at once.
    ///
    /// `hostname` is sent as option 12 (ignored if empty or over 255 bytes). `seed` seeds the
    /// transaction ids; use something that differs between boots and machines.
    pub fn new(mac: [u8; 6], hostname: Option<String>, seed: u64) -> Client {
        Client {
            mac,
            hostname: hostname.filter(|h| !h.is_empty() && h.len() <= 255),
            rng: seed,
            failures: 0,
            state: State::Init { at_ms: 0 },
        }
    }

    /// The current state.
    pub fn phase(&self) -> Phase {
        match self.state {
            State::Init { .. } => Phase::Init,
            State::Selecting(_) => Phase::Selecting,
            State::Requesting { .. } => Phase::Requesting,
            State::Rebooting { .. } => Phase::Rebooting,
            State::Bound(_) => Phase::Bound,
            State::Renewing { .. } => Phase::Renewing,
            State::Rebinding { .. } => Phase::Rebinding,
            State::LinkDown(_) => Phase::LinkDown,
        }
    }

    /// The lease the caller should have configured (reported by an event and not yet
    /// withdrawn by `Nak` or `Expired`).
    pub fn lease(&self) -> Option<&Lease> {
        match &self.state {
            State::Rebooting { lease, .. }
            | State::Bound(lease)
            | State::Renewing { lease, .. }
            | State::Rebinding { lease, .. }
            | State::LinkDown(Some(lease)) => Some(lease),
            State::Init { .. } | State::Selecting(_) | State::Requesting { .. } | State::LinkDown(None) => None,
        }
    }

    /// The earliest time (caller's monotonic ms) at which [`Client::poll`] has something to do;
    /// `None` only when nothing can happen without [`Client::receive`] or [`Client::link_up`]
    /// (link down without a lease, or an infinite lease). It may be in the past: poll now.
    pub fn next_deadline(&self) -> Option<u64> {
        match &self.state {
            State::Init { at_ms } => Some(*at_ms),
            State::Selecting(ex) | State::Requesting { ex, .. } => Some(ex.next_tx_ms),
            State::Rebooting { ex, lease } | State::Renewing { ex, lease } | State::Rebinding { ex, lease } => {
                Some(lease.expires_at_ms().map_or(ex.next_tx_ms, |at| at.min(ex.next_tx_ms)))
            }
            State::Bound(lease) => lease.renew_at_ms().or(lease.expires_at_ms()),
            State::LinkDown(lease) => lease.as_ref().and_then(Lease::expires_at_ms),
        }
    }

    /// Runs the timers: returns the next datagram to send or event to report, or `Idle`.
    /// Call it until it returns `Idle`, then sleep until [`Client::next_deadline`] or a
    /// datagram arrives.
    pub fn poll(&mut self, now_ms: u64) -> Step {
        // Each round either returns or moves to a state that returns within two more rounds
        // (e.g. Rebooting gives up → Bound → Rebinding → send).
        for _ in 0..8 {
            if let Flow::Done(step) = self.poll_once(now_ms) {
                return step;
            }
        }
        Step::Idle
    }

    /// Handles a datagram received on the client socket. Anything that is malformed, not a
    /// BOOTREPLY, not for our MAC, not for the current transaction or unexpected in the
    /// current state is ignored (`None`). After it, call [`Client::poll`]: an OFFER makes a
    /// REQUEST due at once.
    pub fn receive(&mut self, now_ms: u64, bytes: &[u8]) -> Option<Event> {
        let msg = Message::parse(bytes).ok()?;
        if msg.op != Op::Reply || msg.chaddr != self.mac {
            return None;
        }
        let kind = msg.options.message_type?;
        let xid = match &self.state {
            State::Selecting(ex)
            | State::Requesting { ex, .. }
            | State::Rebooting { ex, .. }
            | State::Renewing { ex, .. }
            | State::Rebinding { ex, .. } => ex.xid,
            State::Init { .. } | State::Bound(_) | State::LinkDown(_) => return None,
        };
        if msg.xid != xid {
            return None;
        }
        let state = std::mem::replace(&mut self.state, State::Init { at_ms: now_ms });
        let (state, event) = self.on_reply(state, now_ms, kind, &msg);
        self.state = state;
        event
    }

    /// The link went down: stop all exchanges. A lease is kept (the caller may leave the
    /// address configured) and still expires on time.
    pub fn link_lost(&mut self) {
        let lease = self.lease().cloned();
        self.state = State::LinkDown(lease);
    }

    /// The link is (back) up: with a lease, confirm it with INIT-REBOOT (REQUEST for the old
    /// address, broadcast; an expired lease is reported as `Expired` first); without one,
    /// DISCOVER at once. Not needed before the first `poll`.
    pub fn link_up(&mut self, now_ms: u64) {
        self.failures = 0;
        self.state = match self.lease().cloned() {
            Some(lease) => State::Rebooting { ex: self.exchange(now_ms), lease },
            None => State::Init { at_ms: now_ms },
        };
    }

    fn next_xid(&mut self) -> u32 {
        // splitmix64: any seed, including 0, gives a well-mixed sequence.
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        u32::try_from(z >> 32).unwrap_or_default()
    }

    fn exchange(&mut self, now_ms: u64) -> Exchange {
        Exchange { xid: self.next_xid(), started_ms: now_ms, next_tx_ms: now_ms, last_tx_ms: now_ms, sent: 0 }
    }

    /// INIT after a failure, with the restart delay: none the first time, then 1 s, 2 s, … 16 s.
    fn restart(&mut self, now_ms: u64) -> State {
        self.failures = self.failures.saturating_add(1);
        let delay = if self.failures <= 1 { 0 } else { backoff_ms(self.failures - 1) };
        State::Init { at_ms: now_ms.saturating_add(delay) }
    }

    /// Builds a message for `ex`, recording the transmission time.
    fn transmit(&self, ex: &mut Exchange, now_ms: u64, out: Outgoing) -> Transmit {
        let mut client_id = vec![1];
        client_id.extend_from_slice(&self.mac);
        let msg = Message {
            op: Op::Request,
            xid: ex.xid,
            secs: ex.secs(now_ms),
            // Without an address we cannot receive unicast.
            broadcast: out.ciaddr.is_unspecified(),
            ciaddr: out.ciaddr,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: Ipv4Addr::UNSPECIFIED,
            chaddr: self.mac,
            options: Options {
                message_type: Some(out.kind),
                requested_ip: out.requested,
                server_id: out.server,
                host_name: self.hostname.clone(),
                parameter_request: PARAMETER_REQUEST.to_vec(),
                client_id: Some(client_id),
                ..Options::default()
            },
        };
        ex.sent = ex.sent.saturating_add(1);
        ex.last_tx_ms = now_ms;
        Transmit { bytes: msg.encode(), to: out.to }
    }

    fn poll_once(&mut self, now: u64) -> Flow {
        let state = std::mem::replace(&mut self.state, State::Init { at_ms: now });
        let (state, flow) = match state {
            State::Init { at_ms } if now >= at_ms => (State::Selecting(self.exchange(now)), Flow::Again),
            State::Selecting(mut ex) if now >= ex.next_tx_ms => {
                let out = Outgoing {
                    kind: MessageType::Discover,
                    ciaddr: Ipv4Addr::UNSPECIFIED,
                    requested: None,
                    server: None,
                    to: Destination::Broadcast,
                };
                let t = self.transmit(&mut ex, now, out);
                ex.next_tx_ms = now.saturating_add(backoff_ms(ex.sent));
                (State::Selecting(ex), Flow::Done(Step::Send(t)))
            }
            State::Requesting { mut ex, offered, server } if now >= ex.next_tx_ms => {
                if ex.sent >= REQUEST_ATTEMPTS {
                    (self.restart(now), Flow::Again)
                } else {
                    let out = Outgoing {
                        kind: MessageType::Request,
                        ciaddr: Ipv4Addr::UNSPECIFIED,
                        requested: Some(offered),
                        server: Some(server),
                        to: Destination::Broadcast,
                    };
                    let t = self.transmit(&mut ex, now, out);
                    ex.next_tx_ms = now.saturating_add(backoff_ms(ex.sent));
                    (State::Requesting { ex, offered, server }, Flow::Done(Step::Send(t)))
                }
            }
            State::Rebooting { lease, .. }
            | State::Bound(lease)
            | State::Renewing { lease, .. }
            | State::Rebinding { lease, .. }
                if lease.expired(now) =>
            {
                (self.restart(now), Flow::Done(Step::Event(Event::Expired(lease))))
            }
            State::LinkDown(Some(lease)) if lease.expired(now) => {
                (State::LinkDown(None), Flow::Done(Step::Event(Event::Expired(lease))))
            }
            State::Rebooting { mut ex, lease } if now >= ex.next_tx_ms => {
                if ex.sent >= REQUEST_ATTEMPTS {
                    // No server answered: keep using the unexpired lease (RFC 2131 §3.2),
                    // renewing or rebinding as its timers say.
                    (State::Bound(lease), Flow::Again)
                } else {
                    let out = Outgoing {
                        kind: MessageType::Request,
                        ciaddr: Ipv4Addr::UNSPECIFIED,
                        requested: Some(lease.address),
                        server: None,
                        to: Destination::Broadcast,
                    };
                    let t = self.transmit(&mut ex, now, out);
                    ex.next_tx_ms = now.saturating_add(backoff_ms(ex.sent));
                    (State::Rebooting { ex, lease }, Flow::Done(Step::Send(t)))
                }
            }
            State::Bound(lease) | State::Renewing { lease, .. } if lease.rebind_at_ms().is_some_and(|at| now >= at) => {
                (State::Rebinding { ex: self.exchange(now), lease }, Flow::Again)
            }
            State::Bound(lease) if lease.renew_at_ms().is_some_and(|at| now >= at) => {
                (State::Renewing { ex: self.exchange(now), lease }, Flow::Again)
            }
            State::Renewing { mut ex, lease } if now >= ex.next_tx_ms => {
                let out = Outgoing {
                    kind: MessageType::Request,
                    ciaddr: lease.address,
                    requested: None,
                    server: None,
                    to: Destination::Unicast(lease.server),
                };
                let t = self.transmit(&mut ex, now, out);
                ex.next_tx_ms = renew_retry_ms(now, lease.rebind_at_ms().unwrap_or(u64::MAX));
                (State::Renewing { ex, lease }, Flow::Done(Step::Send(t)))
            }
            State::Rebinding { mut ex, lease } if now >= ex.next_tx_ms => {
                let out = Outgoing {
                    kind: MessageType::Request,
                    ciaddr: lease.address,
                    requested: None,
                    server: None,
                    to: Destination::Broadcast,
                };
                let t = self.transmit(&mut ex, now, out);
                ex.next_tx_ms = renew_retry_ms(now, lease.expires_at_ms().unwrap_or(u64::MAX));
                (State::Rebinding { ex, lease }, Flow::Done(Step::Send(t)))
            }
            other => (other, Flow::Done(Step::Idle)),
        };
        self.state = state;
        flow
    }

    /// A reply for the current transaction (`xid`, op and MAC already checked).
    fn on_reply(&mut self, state: State, now: u64, kind: MessageType, msg: &Message) -> (State, Option<Event>) {
        let from = msg.options.server_id;
        match (state, kind) {
            (State::Selecting(ex), MessageType::Offer) => match from {
                // The first usable offer wins; RFC 2131 requires option 54 in an OFFER.
                Some(server) if usable_address(msg.yiaddr) => {
                    let ex = Exchange { next_tx_ms: now, sent: 0, ..ex };
                    (State::Requesting { ex, offered: msg.yiaddr, server }, None)
                }
                _ => (State::Selecting(ex), None),
            },
            (State::Requesting { ex, offered, server }, MessageType::Ack) if from.is_none_or(|s| s == server) => {
                match lease_from_ack(msg, server, ex.last_tx_ms) {
                    Some(lease) => (State::Bound(lease.clone()), Some(Event::Bound { lease, replaces: None })),
                    None => (State::Requesting { ex, offered, server }, None),
                }
            }
            (State::Requesting { server, .. }, MessageType::Nak) if from.is_none_or(|s| s == server) => {
                (self.restart(now), Some(Event::Nak(None)))
            }
            (
                state @ (State::Rebooting { .. } | State::Renewing { .. } | State::Rebinding { .. }),
                MessageType::Ack,
            ) => {
                let found = match &state {
                    State::Rebooting { ex, lease } | State::Renewing { ex, lease } | State::Rebinding { ex, lease } => {
                        lease_from_ack(msg, lease.server, ex.last_tx_ms).map(|new| (lease.clone(), new))
                    }
                    _ => None,
                };
                match found {
                    Some((old, new)) => {
                        let event = rebound(old, new.clone());
                        if matches!(event, Event::Renewed(_)) {
                            self.failures = 0;
                        }
                        (State::Bound(new), Some(event))
                    }
                    None => (state, None),
                }
            }
            (
                State::Rebooting { lease, .. } | State::Renewing { lease, .. } | State::Rebinding { lease, .. },
                MessageType::Nak,
            ) => (self.restart(now), Some(Event::Nak(Some(lease)))),
            (state, _) => (state, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::codec::tests::slirp_reply;
    use super::*;

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
    const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
    const ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
    const LEASE: u32 = 86_400;
    const T1_MS: u64 = 43_200_000;
    const T2_MS: u64 = 75_600_000;
    const END_MS: u64 = 86_400_000;

    fn sent(step: Step) -> (Message, Destination) {
        match step {
            Step::Send(t) => (Message::parse(&t.bytes).unwrap(), t.to),
            other => panic!("expected a datagram, got {other:?}"),
        }
    }

    fn event(step: Step) -> Event {
        match step {
            Step::Event(e) => e,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    /// A server reply to `req`; `edit` adjusts the options.
    fn reply(req: &Message, kind: MessageType, edit: impl FnOnce(&mut Options)) -> Vec<u8> {
        let nak = kind == MessageType::Nak;
        let mut m = Message {
            op: Op::Reply,
            xid: req.xid,
            secs: 0,
            broadcast: req.broadcast,
            ciaddr: req.ciaddr,
            yiaddr: if nak { Ipv4Addr::UNSPECIFIED } else { ADDR },
            siaddr: SERVER,
            giaddr: Ipv4Addr::UNSPECIFIED,
            chaddr: req.chaddr,
            options: Options {
                message_type: Some(kind),
                server_id: Some(SERVER),
                lease_secs: (!nak).then_some(LEASE),
                subnet_mask: (!nak).then_some(Ipv4Addr::new(255, 255, 255, 0)),
                ..Options::default()
            },
        };
        edit(&mut m.options);
        m.encode()
    }

    /// The fake server: OFFER for DISCOVER, ACK for REQUEST.
    fn serve(req: &Message) -> Vec<u8> {
        assert_eq!(req.op, Op::Request);
        match req.options.message_type {
            Some(MessageType::Discover) => reply(req, MessageType::Offer, |_| {}),
            Some(MessageType::Request) => reply(req, MessageType::Ack, |_| {}),
            other => panic!("unexpected {other:?}"),
        }
    }

    /// A client bound at t=0 to ADDR with a 24 h lease.
    fn bound() -> (Client, Lease) {
        let mut c = Client::new(MAC, Some("keel".into()), 7);
        let (discover, _) = sent(c.poll(0));
        assert_eq!(c.receive(0, &serve(&discover)), None);
        let (request, _) = sent(c.poll(0));
        match c.receive(0, &serve(&request)) {
            Some(Event::Bound { lease, replaces: None }) => (c, lease),
            other => panic!("expected Bound, got {other:?}"),
        }
    }

    #[test]
    fn full_exchange() {
        let mut c = Client::new(MAC, Some("keel".into()), 7);
        assert_eq!(c.phase(), Phase::Init);
        assert_eq!(c.next_deadline(), Some(0));

        let (discover, to) = sent(c.poll(5));
        assert_eq!(to, Destination::Broadcast);
        assert_eq!(to.socket_addr().to_string(), "255.255.255.255:67");
        assert_eq!(discover.op, Op::Request);
        assert!(discover.broadcast);
        assert_eq!(discover.ciaddr, Ipv4Addr::UNSPECIFIED);
        assert_eq!(discover.chaddr, MAC);
        let o = &discover.options;
        assert_eq!(o.message_type, Some(MessageType::Discover));
        assert_eq!(o.client_id.as_deref(), Some(&[1, 0x52, 0x54, 0, 0x12, 0x34, 0x56][..]));
        assert_eq!(o.parameter_request, vec![1, 3, 6, 15, 26, 51, 54, 58, 59, 119, 121]);
        assert_eq!(o.host_name.as_deref(), Some("keel"));
        assert_eq!((o.requested_ip, o.server_id), (None, None));
        assert_eq!(c.phase(), Phase::Selecting);
        assert_eq!(c.poll(5), Step::Idle);
        assert_eq!(c.next_deadline(), Some(1_005));

        assert_eq!(c.receive(400, &serve(&discover)), None);
        assert_eq!(c.phase(), Phase::Requesting);
        assert_eq!(c.next_deadline(), Some(400));
        let (request, to) = sent(c.poll(400));
        assert_eq!(to, Destination::Broadcast);
        assert_eq!(request.xid, discover.xid);
        assert!(request.broadcast);
        assert_eq!(request.ciaddr, Ipv4Addr::UNSPECIFIED);
        assert_eq!(request.options.message_type, Some(MessageType::Request));
        assert_eq!(request.options.requested_ip, Some(ADDR));
        assert_eq!(request.options.server_id, Some(SERVER));
        assert_eq!(request.options.parameter_request, o.parameter_request);

        let Some(Event::Bound { lease, replaces: None }) = c.receive(450, &serve(&request)) else { panic!() };
        assert_eq!(lease.address, ADDR);
        assert_eq!(lease.prefix, 24);
        assert_eq!(lease.cidr().to_string(), "10.0.2.15/24");
        assert!(lease.routers.is_empty() && lease.dns.is_empty() && lease.routes.is_empty());
        assert_eq!(lease.server, SERVER);
        assert_eq!((lease.lease_secs, lease.t1_secs, lease.t2_secs), (LEASE, 43_200, 75_600));
        assert_eq!(lease.obtained_ms, 400);
        assert_eq!(lease.expires_at_ms(), Some(400 + END_MS));
        assert_eq!(c.phase(), Phase::Bound);
        assert_eq!(c.lease(), Some(&lease));
        assert_eq!(c.next_deadline(), Some(400 + T1_MS));
        assert_eq!(c.poll(500), Step::Idle);
        // Late duplicates of the ACK are ignored.
        assert_eq!(c.receive(500, &serve(&request)), None);
    }

    #[test]
    fn slirp_exchange() {
        let mut c = Client::new(MAC, None, 0);
        let (discover, _) = sent(c.poll(0));
        assert_eq!(discover.options.host_name, None);
        assert_eq!(c.receive(10, &slirp_reply(2, discover.xid, MAC)), None);
        let (request, _) = sent(c.poll(10));
        assert_eq!(request.options.requested_ip, Some(ADDR));
        assert_eq!(request.options.server_id, Some(SERVER));
        let Some(Event::Bound { lease, .. }) = c.receive(20, &slirp_reply(5, discover.xid, MAC)) else { panic!() };
        assert_eq!(lease.cidr().to_string(), "10.0.2.15/24");
        assert!(lease.routers.is_empty());
        assert!(lease.dns.is_empty());
        assert_eq!(lease.lease_secs, LEASE);
    }

    #[test]
    fn retransmission_backoff() {
        let mut c = Client::new(MAC, None, 3);
        let mut times = Vec::new();
        let mut xids = Vec::new();
        let mut now = 0;
        while times.len() < 8 {
            match c.poll(now) {
                Step::Send(t) => {
                    let m = Message::parse(&t.bytes).unwrap();
                    assert_eq!(u64::from(m.secs), now / 1000);
                    xids.push(m.xid);
                    times.push(now);
                }
                Step::Idle => now = c.next_deadline().unwrap(),
                Step::Event(e) => panic!("{e:?}"),
            }
        }
        assert_eq!(times, [0, 1_000, 3_000, 7_000, 15_000, 31_000, 47_000, 63_000]);
        assert!(xids.iter().all(|&x| x == xids[0]));
        // Polling early sends nothing.
        assert_eq!(c.poll(78_999), Step::Idle);

        // REQUEST: 1 s, 2 s, 4 s, 8 s, then give up and DISCOVER again with a new xid.
        let (discover, _) = sent(c.poll(79_000));
        c.receive(80_000, &serve(&discover));
        let mut times = Vec::new();
        now = 80_000;
        loop {
            let (m, _) = sent(c.poll(now));
            if m.options.message_type == Some(MessageType::Discover) {
                assert_ne!(m.xid, discover.xid);
                break;
            }
            times.push(now);
            assert_eq!(c.poll(now), Step::Idle);
            now = c.next_deadline().unwrap();
        }
        assert_eq!(times, [80_000, 81_000, 83_000, 87_000]);
        assert_eq!(now, 95_000);
        assert_eq!(c.phase(), Phase::Selecting);
    }

    #[test]
    fn renew_at_t1_unicast() {
        let (mut c, lease) = bound();
        assert_eq!(c.poll(T1_MS - 1), Step::Idle);
        let (renew, to) = sent(c.poll(T1_MS));
        assert_eq!(c.phase(), Phase::Renewing);
        assert_eq!(to, Destination::Unicast(SERVER));
        assert_eq!(to.socket_addr().to_string(), "10.0.2.2:67");
        assert_eq!(renew.ciaddr, ADDR);
        assert!(!renew.broadcast);
        assert_eq!(renew.options.message_type, Some(MessageType::Request));
        assert_eq!((renew.options.requested_ip, renew.options.server_id), (None, None));

        let Some(Event::Renewed(renewed)) = c.receive(T1_MS + 5, &serve(&renew)) else { panic!() };
        assert_eq!(renewed.obtained_ms, T1_MS);
        assert_eq!(Lease { obtained_ms: 0, ..renewed.clone() }, lease);
        assert_eq!(c.phase(), Phase::Bound);
        assert_eq!(c.next_deadline(), Some(2 * T1_MS));

        // A renewal that changes the configuration is a new binding replacing the old one.
        let (renew, _) = sent(c.poll(2 * T1_MS));
        let ack = reply(&renew, MessageType::Ack, |o| o.dns = vec![Ipv4Addr::new(10, 0, 2, 3)]);
        let Some(Event::Bound { lease: new, replaces: Some(old) }) = c.receive(2 * T1_MS, &ack) else { panic!() };
        assert_eq!(old, renewed);
        assert_eq!(new.dns, [Ipv4Addr::new(10, 0, 2, 3)]);
    }

    #[test]
    fn rebind_at_t2_then_expire() {
        let (mut c, lease) = bound();
        let mut log = Vec::new();
        let mut now = 0;
        let expired = loop {
            match c.poll(now) {
                Step::Send(t) => {
                    let m = Message::parse(&t.bytes).unwrap();
                    assert_eq!(m.ciaddr, ADDR);
                    assert!(!m.broadcast);
                    log.push((now, t.to));
                }
                Step::Event(e) => break e,
                Step::Idle => now = c.next_deadline().unwrap(),
            }
        };
        assert_eq!(expired, Event::Expired(lease));
        assert_eq!(now, END_MS);
        let unicast = Destination::Unicast(SERVER);
        let broadcast = Destination::Broadcast;
        assert_eq!(
            log,
            [
                (T1_MS, unicast),
                (T1_MS + 16_200_000, unicast),
                (T1_MS + 24_300_000, unicast),
                (T1_MS + 28_350_000, unicast),
                (T1_MS + 30_375_000, unicast),
                (T1_MS + 31_387_500, unicast),
                (T1_MS + 31_893_750, unicast),
                (T1_MS + 32_146_875, unicast),
                (T1_MS + 32_273_437, unicast),
                (T1_MS + 32_336_718, unicast),
                // Less than 2 min to T2: the 60 s floor applies.
                (T1_MS + 32_396_718, unicast),
                (T2_MS, broadcast),
                (T2_MS + 5_400_000, broadcast),
                (T2_MS + 8_100_000, broadcast),
                (T2_MS + 9_450_000, broadcast),
                (T2_MS + 10_125_000, broadcast),
                (T2_MS + 10_462_500, broadcast),
                (T2_MS + 10_631_250, broadcast),
                (T2_MS + 10_715_625, broadcast),
                (T2_MS + 10_775_625, broadcast),
                // The next would be past the lease's end: expiry comes first.
            ]
        );
        assert_eq!(c.phase(), Phase::Init);
        assert_eq!(c.lease(), None);
        let (discover, _) = sent(c.poll(now));
        assert_eq!(discover.options.message_type, Some(MessageType::Discover));
    }

    #[test]
    fn rebinding_ack_from_another_server() {
        let (mut c, _) = bound();
        sent(c.poll(T1_MS));
        let (rebind, to) = sent(c.poll(T2_MS));
        assert_eq!((to, c.phase()), (Destination::Broadcast, Phase::Rebinding));
        let other = Ipv4Addr::new(10, 0, 2, 4);
        let ack = reply(&rebind, MessageType::Ack, |o| o.server_id = Some(other));
        let Some(Event::Renewed(lease)) = c.receive(T2_MS, &ack) else { panic!() };
        assert_eq!(lease.server, other);
        let (renew, to) = sent(c.poll(T2_MS + T1_MS));
        assert_eq!(to, Destination::Unicast(other));
        assert_eq!(renew.ciaddr, ADDR);
    }

    #[test]
    fn nak() {
        // While requesting: nothing configured yet, discover again at once with a new xid.
        let mut c = Client::new(MAC, None, 9);
        let (discover, _) = sent(c.poll(0));
        c.receive(0, &serve(&discover));
        let (request, _) = sent(c.poll(0));
        // A NAK from a server we did not select is not ours.
        let stranger = reply(&request, MessageType::Nak, |o| o.server_id = Some(Ipv4Addr::new(10, 0, 2, 9)));
        assert_eq!(c.receive(10, &stranger), None);
        assert_eq!(c.receive(10, &reply(&request, MessageType::Nak, |_| {})), Some(Event::Nak(None)));
        assert_eq!(c.phase(), Phase::Init);
        let (again, _) = sent(c.poll(10));
        assert_eq!(again.options.message_type, Some(MessageType::Discover));
        assert_ne!(again.xid, discover.xid);

        // A second failure in a row waits a second before discovering.
        c.receive(20, &serve(&again));
        let (request, _) = sent(c.poll(20));
        assert_eq!(c.receive(30, &reply(&request, MessageType::Nak, |_| {})), Some(Event::Nak(None)));
        assert_eq!(c.poll(30), Step::Idle);
        assert_eq!(c.next_deadline(), Some(1_030));

        // While renewing: the lease is withdrawn.
        let (mut c, lease) = bound();
        let (renew, _) = sent(c.poll(T1_MS));
        assert_eq!(c.receive(T1_MS, &reply(&renew, MessageType::Nak, |_| {})), Some(Event::Nak(Some(lease))));
        assert_eq!(c.lease(), None);
        let (discover, _) = sent(c.poll(T1_MS));
        assert_eq!(discover.options.message_type, Some(MessageType::Discover));
    }

    #[test]
    fn ignores_what_is_not_ours() {
        let mut c = Client::new(MAC, None, 11);
        let (discover, _) = sent(c.poll(0));
        let offer = Message::parse(&serve(&discover)).unwrap();
        let variants = [
            Message { xid: discover.xid ^ 1, ..offer.clone() },
            Message { chaddr: [2, 0, 0, 0, 0, 1], ..offer.clone() },
            Message { op: Op::Request, ..offer.clone() },
            Message {
                options: Options { message_type: Some(MessageType::Ack), ..offer.options.clone() },
                ..offer.clone()
            },
            Message { options: Options { message_type: None, ..offer.options.clone() }, ..offer.clone() },
            Message { options: Options { server_id: None, ..offer.options.clone() }, ..offer.clone() },
            Message { yiaddr: Ipv4Addr::UNSPECIFIED, ..offer.clone() },
        ];
        for m in variants {
            assert_eq!(c.receive(1, &m.encode()), None, "{m:?}");
            assert_eq!((c.phase(), c.next_deadline()), (Phase::Selecting, Some(1_000)), "{m:?}");
        }
        let good = offer.encode();
        for bad in [&good[..100], &good[..239], &[][..]] {
            assert_eq!(c.receive(1, bad), None);
        }
        let mut bad_cookie = good.clone();
        bad_cookie[238] = 0;
        assert_eq!(c.receive(1, &bad_cookie), None);
        assert_eq!(c.phase(), Phase::Selecting);

        // In REQUESTING, further offers change nothing.
        assert_eq!(c.receive(2, &good), None);
        assert_eq!(c.phase(), Phase::Requesting);
        let second = Message { yiaddr: Ipv4Addr::new(10, 0, 2, 16), ..offer };
        assert_eq!(c.receive(2, &second.encode()), None);
        let (request, _) = sent(c.poll(2));
        assert_eq!(request.options.requested_ip, Some(ADDR));
        // An ACK from another server, or with an unusable address, is ignored.
        let stranger = reply(&request, MessageType::Ack, |o| o.server_id = Some(Ipv4Addr::new(10, 0, 2, 9)));
        assert_eq!(c.receive(3, &stranger), None);
        let mut broadcast = Message::parse(&serve(&request)).unwrap();
        broadcast.yiaddr = Ipv4Addr::BROADCAST;
        assert_eq!(c.receive(3, &broadcast.encode()), None);
        assert_eq!(c.phase(), Phase::Requesting);

        // BOUND listens to nothing.
        let (mut c, _) = bound();
        assert_eq!(c.receive(5, &good), None);
        assert_eq!(c.phase(), Phase::Bound);
    }

    #[test]
    fn link_down_and_up() {
        // Back within the lease: INIT-REBOOT, confirmed.
        let (mut c, lease) = bound();
        c.link_lost();
        assert_eq!(c.phase(), Phase::LinkDown);
        assert_eq!(c.lease(), Some(&lease));
        assert_eq!(c.next_deadline(), Some(END_MS));
        assert_eq!(c.poll(T1_MS), Step::Idle);
        c.link_up(T1_MS + 1);
        assert_eq!(c.phase(), Phase::Rebooting);
        let (reboot, to) = sent(c.poll(T1_MS + 1));
        assert_eq!(to, Destination::Broadcast);
        assert!(reboot.broadcast);
        assert_eq!(reboot.ciaddr, Ipv4Addr::UNSPECIFIED);
        assert_eq!(reboot.options.message_type, Some(MessageType::Request));
        assert_eq!(reboot.options.requested_ip, Some(ADDR));
        assert_eq!(reboot.options.server_id, None);
        let Some(Event::Renewed(renewed)) = c.receive(T1_MS + 2, &serve(&reboot)) else { panic!() };
        assert_eq!(renewed.obtained_ms, T1_MS + 1);

        // Nobody answers: the old lease is kept, with its timers (here past T1: renewing).
        let (mut c, _) = bound();
        c.link_lost();
        c.link_up(T1_MS);
        let mut now = T1_MS;
        let mut requests = 0;
        let to = loop {
            let (m, to) = sent(c.poll(now));
            if m.ciaddr == ADDR {
                break to;
            }
            requests += 1;
            assert_eq!(c.poll(now), Step::Idle);
            now = c.next_deadline().unwrap();
        };
        assert_eq!((requests, now), (REQUEST_ATTEMPTS, T1_MS + 15_000));
        assert_eq!((c.phase(), to), (Phase::Renewing, Destination::Unicast(SERVER)));

        // Back after the lease ran out: Expired, then DISCOVER.
        let (mut c, lease) = bound();
        c.link_lost();
        c.link_up(END_MS + 1);
        assert_eq!(event(c.poll(END_MS + 1)), Event::Expired(lease.clone()));
        let (m, _) = sent(c.poll(END_MS + 1));
        assert_eq!(m.options.message_type, Some(MessageType::Discover));

        // The lease runs out while the link is down.
        let (mut c, _) = bound();
        c.link_lost();
        assert_eq!(event(c.poll(END_MS)), Event::Expired(lease));
        assert_eq!((c.phase(), c.next_deadline(), c.lease()), (Phase::LinkDown, None, None));
        c.link_up(END_MS + 5);
        let (m, _) = sent(c.poll(END_MS + 5));
        assert_eq!(m.options.message_type, Some(MessageType::Discover));

        // Link lost mid-exchange: silence until it is back.
        let mut c = Client::new(MAC, None, 1);
        sent(c.poll(0));
        c.link_lost();
        assert_eq!((c.poll(60_000), c.next_deadline()), (Step::Idle, None));
    }

    #[test]
    fn lease_options() {
        let mut c = Client::new(MAC, None, 5);
        let (discover, _) = sent(c.poll(0));
        c.receive(0, &serve(&discover));
        let (request, _) = sent(c.poll(0));
        let gw = Ipv4Addr::new(10, 0, 2, 1);
        let ack = reply(&request, MessageType::Ack, |o| {
            o.routers = vec![Ipv4Addr::new(10, 0, 2, 254)];
            o.dns = vec![Ipv4Addr::new(1, 1, 1, 1)];
            o.classless_routes = Some(vec![ClasslessRoute {
                destination: Cidr { addr: Ipv4Addr::UNSPECIFIED, prefix: 0 },
                gateway: gw,
            }]);
            o.domain_name = Some("evil\nnameserver 6.6.6.6".into());
            o.mtu = Some(20);
            o.subnet_mask = None;
            o.lease_secs = Some(300);
            o.t1_secs = Some(100);
            o.t2_secs = Some(400);
        });
        let Some(Event::Bound { lease, .. }) = c.receive(0, &ack) else { panic!() };
        assert!(lease.routers.is_empty(), "option 121 overrides option 3");
        assert_eq!(lease.routes.len(), 1);
        assert_eq!(lease.routes[0].gateway, gw);
        assert_eq!(lease.dns, [Ipv4Addr::new(1, 1, 1, 1)]);
        assert_eq!((lease.domain.as_deref(), lease.mtu), (None, None));
        assert_eq!(lease.prefix, 8, "classful fallback for 10/8");
        assert_eq!((lease.t1_secs, lease.t2_secs), (100, 262));

        // Infinite lease: nothing to do, ever.
        let mut c = Client::new(MAC, None, 6);
        let (discover, _) = sent(c.poll(0));
        c.receive(0, &serve(&discover));
        let (request, _) = sent(c.poll(0));
        let ack = reply(&request, MessageType::Ack, |o| {
            o.lease_secs = Some(INFINITE);
            o.domain_name = Some("lan.example.".into());
            o.mtu = Some(1400);
        });
        let Some(Event::Bound { lease, .. }) = c.receive(0, &ack) else { panic!() };
        assert!(lease.is_infinite());
        assert_eq!((lease.domain.as_deref(), lease.mtu), (Some("lan.example."), Some(1400)));
        assert_eq!((lease.renew_at_ms(), lease.rebind_at_ms(), lease.expires_at_ms()), (None, None, None));
        assert_eq!(c.next_deadline(), None);
        assert_eq!(c.poll(u64::MAX), Step::Idle);
    }

    #[test]
    fn zero_leases_do_not_spin() {
        // A server that hands out 0-second leases: each expiry delays the next DISCOVER more.
        let mut c = Client::new(MAC, None, 8);
        let mut now = 0;
        let mut discovers = 0;
        while now < 60_000 {
            match c.poll(now) {
                Step::Send(t) => {
                    let m = Message::parse(&t.bytes).unwrap();
                    if m.options.message_type == Some(MessageType::Discover) {
                        discovers += 1;
                    }
                    let r = reply(
                        &m,
                        if discovers > 0 && m.options.requested_ip.is_some() {
                            MessageType::Ack
                        } else {
                            MessageType::Offer
                        },
                        |o| o.lease_secs = Some(0),
                    );
                    c.receive(now, &r);
                }
                Step::Event(_) => {}
                Step::Idle => now = c.next_deadline().unwrap(),
            }
        }
        assert!(discovers < 12, "{discovers} DISCOVERs in a minute");
    }
}
