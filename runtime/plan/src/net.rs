//! Networking in the plan: the machine's uplink, each container's addresses, and the firewall.
//!
//! The builder derives every address from the config, so the plan holds the whole policy: which
//! flows the forward chain accepts, which sources are masqueraded out of the uplink, and which
//! uplink ports are published to which container. keel-init turns it into one nftables batch
//! (the uplink's interface name is the only thing it fills in at boot) and sets up each
//! container's veth before its first process runs.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// Name prefix of the host end of every container veth (`k-NAME` or `k-N`).
pub const HOST_IF_PREFIX: &str = "k-";
/// The container end of its veth.
pub const CONTAINER_IF: &str = "eth0";
/// The next hop every container routes through: link-local, never assigned to any interface,
/// reached through a permanent neighbour entry for the host end's MAC.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// Name of the nftables table keel-init owns (family inet).
pub const TABLE: &str = "keel";

/// `plan.net`: the uplink and the firewall.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Net {
    /// The machine's own link to the outside.
    pub uplink: Uplink,
    /// Every flow the forward chain lets through.
    pub firewall: Firewall,
}

/// The machine's uplink (`[host.network]`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Uplink {
    /// How it gets an address.
    pub mode: UplinkMode,
    /// Interface name or MAC address (`aa:bb:…`); `None`: the first ethernet NIC.
    pub interface: Option<String>,
}

/// How the uplink gets its address.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum UplinkMode {
    /// DHCPv4 run by keel-init.
    #[default]
    Dhcp,
    /// A fixed address.
    Static {
        /// Address and prefix length.
        address: Cidr,
        /// Default gateway, if any.
        gateway: Option<Ipv4Addr>,
        /// DNS servers for containers with egress.
        dns: Vec<Ipv4Addr>,
    },
    /// No uplink: containers reach only each other.
    None,
}

/// An IPv4 prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cidr {
    /// First address (or any address inside, for an interface address).
    pub addr: Ipv4Addr,
    /// Prefix length, 0..=32.
    pub prefix: u8,
}

impl Cidr {
    /// One address.
    pub fn host(addr: Ipv4Addr) -> Cidr {
        Cidr { addr, prefix: 32 }
    }

    /// The netmask.
    pub fn mask(self) -> Ipv4Addr {
        let bits = if self.prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(self.prefix.min(32))) };
        Ipv4Addr::from(bits)
    }

    /// The network address (host bits cleared).
    pub fn network(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & u32::from(self.mask()))
    }

    /// Does the prefix hold `ip`?
    pub fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & u32::from(self.mask()) == u32::from(self.network())
    }

    /// Do the two prefixes share any address?
    pub fn overlaps(self, other: Cidr) -> bool {
        self.contains(other.network()) || other.contains(self.network())
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Transport protocol of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Proto {
    /// TCP (IPPROTO_TCP, 6).
    Tcp,
    /// UDP (IPPROTO_UDP, 17).
    Udp,
}

impl Proto {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
        }
    }

    /// `tcp` or `udp`.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// A container's place on the networks: one veth, one /32 per network it is on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerNet {
    /// Host end of its veth (at most 15 bytes, starts with [`HOST_IF_PREFIX`]).
    pub host_if: String,
    /// MAC of the host end (locally administered, unique per container).
    pub host_mac: [u8; 6],
    /// One address per network it is on, in config order.
    pub addresses: Vec<NetAddress>,
    /// Source of its default route: its address on its first egress network, else its first.
    pub default_src: Ipv4Addr,
}

/// A container's address on one network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetAddress {
    /// The network's name.
    pub network: String,
    /// The network's subnet; the container routes it through [`GATEWAY`] from `address`.
    pub subnet: Cidr,
    /// The container's address in it.
    pub address: Ipv4Addr,
}

/// The whole policy. Everything not listed is rejected.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Firewall {
    /// Forwarded flows accepted (new connections; replies are always accepted).
    pub flows: Vec<Flow>,
    /// Sources allowed out of the uplink, masqueraded to its address.
    pub egress: Vec<Cidr>,
    /// Uplink ports forwarded to containers.
    pub publish: Vec<Publish>,
}

/// One accepted forwarded flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flow {
    /// Source prefix.
    pub from: Cidr,
    /// Destination prefix.
    pub to: Cidr,
    /// Protocol and destination port; `None`: any protocol, any port.
    pub port: Option<(Proto, u16)>,
    /// What it stands for (`network front`, `link api -> db`), for logs and the graph.
    pub why: String,
}

/// A published port: uplink `proto/host_port` is forwarded to `to:port`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Publish {
    pub proto: Proto,
    pub host_port: u16,
    pub to: Ipv4Addr,
    pub port: u16,
    /// The container it reaches.
    pub container: String,
}
