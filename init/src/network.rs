//! The machine's network: loopback, the uplink (static, DHCP or none), the firewall, and each
//! container's veth.
//!
//! Order at boot: `lo` up; the uplink chosen and brought up (a static address is set at once; DHCP
//! only starts, and its lease arrives later through the supervisor's poll loop, so no container
//! waits for it); then, when any container is on a network, the nftables table is loaded in one
//! batch and only after that is forwarding turned on. If the table cannot be loaded, forwarding
//! stays off: containers then reach nothing beyond their own veth, never more than the policy.
//!
//! Per container ([`Network::prepare`], between clone and release): a veth whose container end is
//! created inside the container's network namespace, a /32 per network on it, routes through the
//! link-local gateway with a permanent neighbour entry (nothing is shared at L2), strict
//! reverse-path filtering on the host end, no IPv6, and, inside the namespace, unprivileged ports
//! from 0 and ping for the container's groups. Nothing here can stall PID 1: every netlink
//! request is bounded by keel-net's socket timeout, and DHCP is non-blocking.

use std::fs::File;
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::time::{Duration, Instant};

use keel_net::dhcp::{Client, Event, Lease, Step};
use keel_net::{nft, NetError, Route, Rtnl};
use keel_plan::net::{Cidr, ContainerNet, Net, UplinkMode, HOST_IF_PREFIX};

use crate::console;

/// The uplink interface keel-init chose.
#[derive(Debug, Clone)]
struct Uplink {
    name: String,
    index: u32,
    mac: [u8; 6],
    /// The containers' subnets and link-local space: no DHCP lease may claim or route them.
    protected: Vec<Cidr>,
}

/// Set once the table is loaded: a container is given a veth only then (fail closed).
static FIREWALL_LOADED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether the firewall's table (its input chain keeps containers off the host) is loaded.
pub fn firewall_loaded() -> bool {
    FIREWALL_LOADED.load(std::sync::atomic::Ordering::Relaxed)
}

/// The DHCP client, its socket, and the lease it holds.
#[derive(Debug)]
struct Dhcp {
    client: Client,
    socket: UdpSocket,
}

/// The machine's network, as set up at boot.
#[derive(Debug)]
pub struct Network {
    uplink: Option<Uplink>,
    dhcp: Option<Dhcp>,
    /// When DHCP's clock started.
    epoch: Instant,
}

/// How many datagrams one wakeup reads from the DHCP socket at most.
const DATAGRAMS_PER_WAKEUP: usize = 16;

impl Network {
    /// No uplink, nothing to drive.
    pub fn none() -> Network {
        Network { uplink: None, dhcp: None, epoch: Instant::now() }
    }

    /// Set up loopback, the uplink and the firewall. Never fails: each problem is reported, and
    /// what it leaves out stays closed.
    pub fn boot(net: &Net, containers: &[keel_plan::Container]) -> Network {
        let networked = containers.iter().any(|c| c.net.is_some());
        let mut protected = vec![Cidr { addr: Ipv4Addr::new(169, 254, 0, 0), prefix: 16 }];
        for a in containers.iter().filter_map(|c| c.net.as_ref()).flat_map(|n| &n.addresses) {
            if !protected.contains(&a.subnet) {
                protected.push(a.subnet);
            }
        }
        let epoch = Instant::now();
        let mut me = Network { uplink: None, dhcp: None, epoch };
        let mut rtnl = match Rtnl::open() {
            Ok(r) => r,
            Err(e) => {
                console::say(format_args!("network: {e}"));
                return me;
            }
        };
        if let Err(e) = rtnl.link_index("lo").and_then(|i| rtnl.set_up(i)) {
            console::say(format_args!("network: loopback: {e}"));
        }
        if net.uplink.mode != UplinkMode::None {
            me.uplink = choose_uplink(&mut rtnl, net.uplink.interface.as_deref(), protected);
        }
        if let Some(up) = &me.uplink {
            if let Err(e) = rtnl.set_up(up.index) {
                console::say(format_args!("uplink {}: {e}", up.name));
            }
            match &net.uplink.mode {
                UplinkMode::Static { address, gateway, .. } => {
                    static_uplink(&mut rtnl, up, *address, *gateway);
                }
                UplinkMode::Dhcp => match keel_net::dhcp_socket(&up.name) {
                    Ok(socket) => {
                        let seed = u64::from_le_bytes([
                            up.mac[0], up.mac[1], up.mac[2], up.mac[3], up.mac[4], up.mac[5], 0, 0,
                        ]) ^ crate::sys::boottime().as_nanos() as u64;
                        console::say(format_args!("uplink {}: DHCP started", up.name));
                        crate::timeline::mark(crate::timeline::Event::DhcpStart);
                        me.dhcp = Some(Dhcp { client: Client::new(up.mac, None, seed), socket });
                    }
                    Err(e) => console::say(format_args!("uplink {}: DHCP: {e}", up.name)),
                },
                UplinkMode::None => {}
            }
        }
        if networked {
            firewall(net, me.uplink.as_ref().map(|u| u.name.as_str()));
        }
        me.tick(false);
        me
    }

    /// The uplink's interface name, if there is one.
    pub fn uplink(&self) -> Option<&str> {
        self.uplink.as_ref().map(|u| u.name.as_str())
    }

    /// The DHCP socket, to poll for reading.
    pub fn fd(&self) -> Option<RawFd> {
        self.dhcp.as_ref().map(|d| d.socket.as_raw_fd())
    }

    /// How long until DHCP needs a wakeup.
    pub fn wake(&self, now: Instant) -> Option<Duration> {
        let d = self.dhcp.as_ref()?;
        let at = d.client.next_deadline()?;
        let now_ms = self.ms(now);
        Some(Duration::from_millis(at.saturating_sub(now_ms)))
    }

    fn ms(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// Drive DHCP: read what arrived (when `readable`), send what is due, apply the lease.
    pub fn tick(&mut self, readable: bool) {
        let now = self.ms(Instant::now());
        let (Some(d), Some(up)) = (self.dhcp.as_mut(), self.uplink.as_ref()) else { return };
        let mut events = Vec::new();
        if readable {
            let mut buf = [0u8; 1500];
            for _ in 0..DATAGRAMS_PER_WAKEUP {
                match d.socket.recv_from(&mut buf) {
                    Ok((n, _)) => events.extend(d.client.receive(now, buf.get(..n).unwrap_or_default())),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        console::say(format_args!("uplink {}: DHCP receive: {e}", up.name));
                        break;
                    }
                }
            }
        }
        // Bounded: each step either sends once or reports once; the client goes Idle quickly.
        for _ in 0..8 {
            match d.client.poll(now) {
                Step::Send(t) => {
                    if let Err(e) = d.socket.send_to(&t.bytes, t.to.socket_addr()) {
                        console::say(format_args!("uplink {}: DHCP send: {e}", up.name));
                    }
                }
                Step::Event(e) => events.push(e),
                Step::Idle => break,
            }
        }
        for e in events {
            apply(up, e);
        }
    }

    /// Give the container whose first process is `pid` its veth and addresses, when it is on a
    /// network (see the module doc), and in any case let it bind low ports and ping inside its
    /// own namespace. `id_base` is the host gid of its group 0, for `ping_group_range`.
    pub fn prepare(c: Option<&ContainerNet>, pid: libc::pid_t, id_base: u32) -> Result<(), String> {
        let ns = File::open(format!("/proc/{pid}/ns/net"))
            .map_err(|source| NetError::Io { what: format!("open /proc/{pid}/ns/net"), source });
        if c.is_some() && !FIREWALL_LOADED.load(std::sync::atomic::Ordering::Relaxed) {
            return Err("network: the firewall is not loaded, so no container gets a veth".into());
        }
        ns.and_then(|ns| keel_net::container::setup(c, ns.as_fd(), id_base).map(drop))
            .map_err(|e| format!("network: {e}"))
    }
}

/// The uplink: the named interface (or MAC), else the first ethernet NIC.
fn choose_uplink(rtnl: &mut Rtnl, want: Option<&str>, protected: Vec<Cidr>) -> Option<Uplink> {
    let links = match rtnl.links() {
        Ok(l) => l,
        Err(e) => {
            console::say(format_args!("uplink: {e}"));
            return None;
        }
    };
    let mac_text = |m: [u8; 6]| m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
    let found = links.iter().filter(|l| !l.loopback && !l.name.starts_with(HOST_IF_PREFIX)).find(|l| match want {
        Some(w) => l.name == w || l.mac.is_some_and(|m| mac_text(m).eq_ignore_ascii_case(w)),
        None => l.kind.is_none() && l.mac.is_some(),
    });
    match found {
        Some(l) => {
            let mac = l.mac.unwrap_or_default();
            console::say(format_args!("uplink {} ({})", l.name, mac_text(mac)));
            Some(Uplink { name: l.name.clone(), index: l.index, mac, protected })
        }
        None => {
            match want {
                Some(w) => console::say(format_args!("uplink: no interface {w} found")),
                None => console::say("uplink: no network interface found"),
            }
            None
        }
    }
}

fn static_uplink(rtnl: &mut Rtnl, up: &Uplink, address: Cidr, gateway: Option<Ipv4Addr>) {
    if let Err(e) = rtnl.add_address(up.index, address.addr, address.prefix) {
        console::say(format_args!("uplink {}: {e}", up.name));
        return;
    }
    if let Some(gw) = gateway {
        let r = Route {
            dst: Cidr { addr: Ipv4Addr::UNSPECIFIED, prefix: 0 },
            gateway: Some(gw),
            index: up.index,
            src: None,
            scope_link: false,
        };
        if let Err(e) = rtnl.add_route(&r) {
            console::say(format_args!("uplink {}: default route: {e}", up.name));
        }
    }
    let gw = gateway.map(|g| g.to_string()).unwrap_or_else(|| "none".into());
    console::say(format_args!("uplink {}: static {address}, gateway {gw}", up.name));
}

/// Load the table in one batch, then turn forwarding on.
fn firewall(net: &Net, uplink: Option<&str>) {
    let start = Instant::now();
    let batch = nft::batch(&net.firewall, uplink, 1);
    let stats = nft::stats(&batch);
    match nft::apply(&batch) {
        Ok(()) => {
            let ms = start.elapsed().as_secs_f64() * 1000.0;
            console::say(format_args!(
                "firewall: table inet keel loaded: {} rules in one batch ({} messages, {} bytes, {ms:.1} ms)",
                net.firewall.flows.len() + net.firewall.egress.len() * 2 + net.firewall.publish.len(),
                stats.messages,
                stats.bytes
            ));
            FIREWALL_LOADED.store(true, std::sync::atomic::Ordering::Relaxed);
            let path = "/proc/sys/net/ipv4/ip_forward";
            if let Err(e) = std::fs::write(path, "1") {
                console::say(format_args!("firewall: {path}: {e}"));
            }
        }
        Err(e) => console::say(format_args!("firewall: {e}; forwarding stays off")),
    }
}

/// Apply a DHCP event to the uplink.
fn apply(up: &Uplink, event: Event) {
    let mut rtnl = match Rtnl::open() {
        Ok(r) => r,
        Err(e) => {
            console::say(format_args!("uplink {}: {e}", up.name));
            return;
        }
    };
    match event {
        Event::Bound { lease, replaces } => {
            if let Some(old) = replaces {
                remove(&mut rtnl, up, &old);
            }
            if let Some(p) = up.protected.iter().find(|p| p.contains(lease.address)) {
                console::say(format_args!(
                    "uplink {}: refusing DHCP lease {} from {}: the address is inside {p}, kept for containers",
                    up.name,
                    lease.cidr(),
                    lease.server
                ));
                return;
            }
            install(&mut rtnl, up, &lease);
            let routers: Vec<String> = lease.routers.iter().map(|r| r.to_string()).collect();
            let dns: Vec<String> = lease.dns.iter().map(|r| r.to_string()).collect();
            let none = |v: &[String]| if v.is_empty() { "none".to_string() } else { v.join(" ") };
            console::say(format_args!(
                "uplink {}: DHCP lease {} from {} for {} s (router {}, dns {})",
                up.name,
                lease.cidr(),
                lease.server,
                lease.lease_secs,
                none(&routers),
                none(&dns)
            ));
            crate::timeline::mark(crate::timeline::Event::Lease);
        }
        Event::Renewed(lease) => {
            if up.protected.iter().any(|p| p.contains(lease.address)) {
                return;
            }
            install(&mut rtnl, up, &lease);
            console::say(format_args!(
                "uplink {}: DHCP lease {} renewed for {} s",
                up.name,
                lease.cidr(),
                lease.lease_secs
            ));
        }
        Event::Nak(old) => {
            console::say(format_args!("uplink {}: DHCP server refused the lease; asking again", up.name));
            if let Some(old) = old {
                remove(&mut rtnl, up, &old);
            }
        }
        Event::Expired(old) => {
            console::say(format_args!("uplink {}: DHCP lease {} expired", up.name, old.cidr()));
            remove(&mut rtnl, up, &old);
        }
    }
}

fn default_route(up: &Uplink, lease: &Lease) -> Option<Route> {
    lease.routers.first().map(|gw| Route {
        dst: Cidr { addr: Ipv4Addr::UNSPECIFIED, prefix: 0 },
        gateway: Some(*gw),
        index: up.index,
        src: Some(lease.address),
        scope_link: false,
    })
}

/// The lease's routes, less any inside a container subnet or link-local space, or through a
/// gateway there: a DHCP server on the uplink must not redirect container traffic.
fn lease_routes(up: &Uplink, lease: &Lease) -> Vec<Route> {
    let mut routes: Vec<Route> = default_route(up, lease).into_iter().collect();
    routes.extend(lease.routes.iter().map(|r| Route {
        dst: r.destination,
        gateway: (r.gateway != Ipv4Addr::UNSPECIFIED).then_some(r.gateway),
        index: up.index,
        src: Some(lease.address),
        scope_link: r.gateway == Ipv4Addr::UNSPECIFIED,
    }));
    // A broader route (the default, a LAN's 10.0.0.0/8) is harmless: each container address has
    // its own /32, and the longest prefix wins.
    routes.retain(|r| {
        !up.protected
            .iter()
            .any(|p| (r.dst.prefix >= p.prefix && p.contains(r.dst.addr)) || r.gateway.is_some_and(|g| p.contains(g)))
    });
    routes
}

fn install(rtnl: &mut Rtnl, up: &Uplink, lease: &Lease) {
    let c = lease.cidr();
    if let Err(e) = rtnl.add_address(up.index, c.addr, c.prefix) {
        console::say(format_args!("uplink {}: {e}", up.name));
    }
    for r in lease_routes(up, lease) {
        if let Err(e) = rtnl.add_route(&r) {
            console::say(format_args!("uplink {}: {e}", up.name));
        }
    }
}

fn remove(rtnl: &mut Rtnl, up: &Uplink, lease: &Lease) {
    for r in lease_routes(up, lease) {
        let _ = rtnl.delete_route(&r);
    }
    let c = lease.cidr();
    if let Err(e) = rtnl.delete_address(up.index, c.addr, c.prefix) {
        console::say(format_args!("uplink {}: {e}", up.name));
    }
}
