//! Networking keys: `[host.network]` (the uplink), `[[network]]`, each container's `networks` and
//! `ports`, and `[[link]]`. Names are checked against each other once everything is read
//! ([`Validator::network_refs`]); addresses are derived later, by `crate::netplan`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::ops::Range;

use keel_plan::net::{Cidr, Proto, Uplink, UplinkMode};
use toml::Spanned;

use super::schema::{RawLink, RawNetwork, RawUplink};
use super::{valid_name, ContainerConfig, Validator};

/// One `[[network]]`.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// Index in the file.
    pub index: usize,
    /// Unique name.
    pub name: String,
    /// `subnet`, if given (else one is chosen from 10.89.0.0/16).
    pub subnet: Option<Cidr>,
    /// `egress`: members may reach the outside, masqueraded on the uplink.
    pub egress: bool,
    /// Where its `subnet` (else its name) is written.
    pub span: Range<usize>,
}

/// Where a `[[link]]` leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkTarget {
    /// One container.
    Container(String),
    /// Every member of a network (`network:NAME`).
    Network(String),
}

/// One `[[link]]`: new connections from `from` to `to` on `ports`, one direction.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// Index in the file.
    pub index: usize,
    /// The client container.
    pub from: String,
    /// The server side.
    pub to: LinkTarget,
    /// Protocols and destination ports.
    pub ports: Vec<(Proto, u16)>,
    /// Span of `from`.
    pub from_span: Range<usize>,
    /// Span of `to`.
    pub to_span: Range<usize>,
}

/// One entry of a container's `ports`: uplink `host` → container `container`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortConfig {
    /// Port on the uplink.
    pub host: u16,
    /// Port inside the container.
    pub container: u16,
    /// tcp (default) or udp.
    pub proto: Proto,
}

/// A name as written, with its span.
pub type Named = (String, Range<usize>);
/// A published port as written, with its span.
pub type Published = (PortConfig, Range<usize>);

/// A port number 1..=65535.
fn port(s: &str) -> Result<u16, String> {
    if s.is_empty() || !s.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("`{s}` is not a port number"));
    }
    match s.parse::<u32>() {
        Ok(n @ 1..=65535) => Ok(n as u16),
        _ => Err(format!("port {s} is out of range (1-65535)")),
    }
}

/// Does `c` touch 0.0.0.0/8, loopback, link-local (keel's gateway lives there), or multicast and
/// above?
fn reserved(c: Cidr) -> bool {
    [(0, 8), (127, 8), (169, 16), (224, 3)].iter().any(|&(first, prefix)| {
        let addr = if first == 169 { Ipv4Addr::new(169, 254, 0, 0) } else { Ipv4Addr::new(first, 0, 0, 0) };
        c.overlaps(Cidr { addr, prefix })
    })
}

/// `tcp` or `udp`.
fn proto(s: &str) -> Result<Proto, String> {
    match s {
        "tcp" => Ok(Proto::Tcp),
        "udp" => Ok(Proto::Udp),
        other => Err(format!("unknown protocol `{other}` (expected tcp or udp)")),
    }
}

/// `PORT[/PROTO]`.
pub fn parse_port(s: &str) -> Result<(Proto, u16), String> {
    let (p, pr) = match s.split_once('/') {
        Some((p, pr)) => (p, proto(pr)?),
        None => (s, Proto::Tcp),
    };
    Ok((pr, port(p)?))
}

/// `HOST:CONTAINER[/PROTO]`.
pub fn parse_publish(s: &str) -> Result<PortConfig, String> {
    let (ports, pr) = match s.split_once('/') {
        Some((p, pr)) => (p, proto(pr)?),
        None => (s, Proto::Tcp),
    };
    let Some((h, c)) = ports.split_once(':') else {
        return Err(format!("`{s}` is not HOST:CONTAINER[/tcp|/udp], e.g. \"8080:80\""));
    };
    Ok(PortConfig { host: port(h)?, container: port(c)?, proto: pr })
}

/// `A.B.C.D`, strictly.
pub fn parse_ip(s: &str) -> Result<Ipv4Addr, String> {
    s.parse::<Ipv4Addr>().map_err(|_| format!("`{s}` is not an IPv4 address"))
}

/// `A.B.C.D/N`. `network` demands the host bits be zero.
pub fn parse_cidr(s: &str, network: bool) -> Result<Cidr, String> {
    let Some((a, p)) = s.split_once('/') else {
        return Err(format!("`{s}` is not an IPv4 prefix like 10.89.1.0/24"));
    };
    let addr = parse_ip(a)?;
    let prefix = match p.parse::<u8>() {
        Ok(n) if n <= 32 && p.chars().all(|c| c.is_ascii_digit()) => n,
        _ => return Err(format!("`/{p}` is not a prefix length (0-32)")),
    };
    let cidr = Cidr { addr, prefix };
    if network && cidr.network() != addr {
        return Err(format!("`{s}` has host bits set: the network is {}/{prefix}", cidr.network()));
    }
    Ok(cidr)
}

impl Validator<'_> {
    /// `[host.network]`.
    pub(super) fn uplink(&mut self, raw: Option<Spanned<RawUplink>>) -> Uplink {
        let Some(raw) = raw else { return Uplink::default() };
        let span = raw.span();
        let u = raw.into_inner();
        let mode = u.mode.as_ref().map(|m| m.get_ref().as_str()).unwrap_or("dhcp");
        let interface = u.interface.map(|i| {
            let name = i.get_ref();
            let mac = name.len() == 17 && name.split(':').all(|b| b.len() == 2 && u8::from_str_radix(b, 16).is_ok());
            let ifname = !name.is_empty() && name.len() <= 15 && !name.contains(['/', ':', ' ', '\0']);
            if !mac && !ifname {
                self.err(
                    &i.span(),
                    "host.network.interface",
                    format!("`{name}` is neither an interface name nor a MAC"),
                );
            }
            i.into_inner()
        });
        let static_only =
            [("address", u.address.as_ref().map(Spanned::span)), ("gateway", u.gateway.as_ref().map(Spanned::span))];
        let mode = match mode {
            "dhcp" | "none" => {
                for (key, s) in static_only {
                    if let Some(s) = s {
                        self.err(
                            &s,
                            format!("host.network.{key}"),
                            format!("`{key}` is only used with mode = \"static\""),
                        );
                    }
                }
                if mode == "dhcp" {
                    if let Some(d) = &u.dns {
                        self.err(&d.span(), "host.network.dns", "with mode = \"dhcp\" the DNS servers come from the lease: `dns` is only used with mode = \"static\"");
                    }
                    UplinkMode::Dhcp
                } else {
                    if let Some(d) = &u.dns {
                        self.err(&d.span(), "host.network.dns", "`dns` needs an uplink (mode is \"none\")");
                    }
                    UplinkMode::None
                }
            }
            "static" => {
                let address = match &u.address {
                    None => {
                        self.err(&span, "host.network.address", "mode = \"static\" needs `address = \"A.B.C.D/N\"`");
                        None
                    }
                    Some(a) => match parse_cidr(a.get_ref(), false) {
                        Ok(c) if reserved(Cidr::host(c.addr)) => {
                            self.err(
                                &a.span(),
                                "host.network.address",
                                format!(
                                    "{} is a reserved address (0/8, loopback, link-local, multicast or above)",
                                    c.addr
                                ),
                            );
                            None
                        }
                        Ok(c) if c.prefix == 0 || c.prefix > 31 => {
                            self.err(
                                &a.span(),
                                "host.network.address",
                                "the uplink address needs a prefix of /1 to /31",
                            );
                            None
                        }
                        Ok(c) => Some(c),
                        Err(e) => {
                            self.err(&a.span(), "host.network.address", e);
                            None
                        }
                    },
                };
                let gateway = u.gateway.as_ref().and_then(|g| match parse_ip(g.get_ref()) {
                    Ok(ip) => {
                        if let Some(a) = address {
                            if !a.contains(ip) {
                                self.err(
                                    &g.span(),
                                    "host.network.gateway",
                                    format!(
                                        "gateway {ip} is not inside the uplink's subnet {}/{}",
                                        a.network(),
                                        a.prefix
                                    ),
                                );
                            } else if ip == a.addr {
                                self.err(
                                    &g.span(),
                                    "host.network.gateway",
                                    format!("gateway {ip} is the uplink's own address"),
                                );
                            }
                        }
                        Some(ip)
                    }
                    Err(e) => {
                        self.err(&g.span(), "host.network.gateway", e);
                        None
                    }
                });
                UplinkMode::Static {
                    address: address.unwrap_or(Cidr::host(Ipv4Addr::UNSPECIFIED)),
                    gateway,
                    dns: Vec::new(),
                }
            }
            other => {
                let s = u.mode.as_ref().map(Spanned::span).unwrap_or(span.clone());
                self.err(&s, "host.network.mode", format!("unknown value `{other}` (expected dhcp, static or none)"));
                UplinkMode::Dhcp
            }
        };
        let mut dns_list = Vec::new();
        if let Some(d) = u.dns {
            for (i, ip) in d.into_inner().into_iter().enumerate() {
                match parse_ip(ip.get_ref()) {
                    Ok(a) => dns_list.push(a),
                    Err(e) => self.err(&ip.span(), format!("host.network.dns[{i}]"), e),
                }
            }
        }
        let mode = match mode {
            UplinkMode::Static { address, gateway, .. } => UplinkMode::Static { address, gateway, dns: dns_list },
            m => m,
        };
        Uplink { mode, interface }
    }

    /// `[[network]]` tables.
    pub(super) fn networks(&mut self, raw: Vec<Spanned<RawNetwork>>) -> Vec<NetworkConfig> {
        let mut out: Vec<NetworkConfig> = Vec::new();
        for (index, n) in raw.into_iter().enumerate() {
            let n = n.into_inner();
            let key = |f: &str| format!("network[{index}].{f}");
            let name = n.name.get_ref().clone();
            if !valid_name(&name) || name.contains('.') {
                self.err(
                    &n.name.span(),
                    key("name"),
                    format!("`{name}` is not a valid network name (lower-case letters, digits, `-`, `_`; at most 63)"),
                );
            }
            if let Some(first) = out.iter().find(|o| o.name == name) {
                self.err(
                    &n.name.span(),
                    key("name"),
                    format!("duplicate network name `{name}` (first used by network[{}])", first.index),
                );
            }
            let subnet = n.subnet.as_ref().and_then(|s| match parse_cidr(s.get_ref(), true) {
                Ok(c) if c.prefix < 8 || c.prefix > 29 => {
                    self.err(
                        &s.span(),
                        key("subnet"),
                        format!("subnet /{} is not supported (use /8 to /29)", c.prefix),
                    );
                    None
                }
                Ok(c) if reserved(c) => {
                    self.err(
                        &s.span(),
                        key("subnet"),
                        format!(
                            "subnet {c} overlaps reserved addresses (0/8, loopback, link-local, multicast or above)"
                        ),
                    );
                    None
                }
                Ok(c) => {
                    if let Some(other) = out.iter().find(|o| o.subnet.is_some_and(|x| x.overlaps(c))) {
                        self.err(
                            &s.span(),
                            key("subnet"),
                            format!(
                                "subnet {c} overlaps network `{}` ({})",
                                other.name,
                                other.subnet.map(|x| x.to_string()).unwrap_or_default()
                            ),
                        );
                    }
                    Some(c)
                }
                Err(e) => {
                    self.err(&s.span(), key("subnet"), e);
                    None
                }
            });
            let span = n.subnet.as_ref().map(Spanned::span).unwrap_or(n.name.span());
            out.push(NetworkConfig {
                index,
                name,
                subnet,
                egress: n.egress.map(|e| *e.get_ref()).unwrap_or(false),
                span,
            });
        }
        out
    }

    /// A container's `networks` and `ports`.
    pub(super) fn container_net(
        &mut self,
        index: usize,
        networks: Option<Spanned<Vec<Spanned<String>>>>,
        ports: Option<Spanned<Vec<Spanned<String>>>>,
    ) -> (Vec<Named>, Vec<Published>) {
        let mut nets: Vec<(String, Range<usize>)> = Vec::new();
        for n in networks.map(Spanned::into_inner).unwrap_or_default() {
            if nets.iter().any(|(x, _)| x == n.get_ref()) {
                self.err(
                    &n.span(),
                    format!("container[{index}].networks"),
                    format!("network `{}` is listed twice", n.get_ref()),
                );
                continue;
            }
            let s = n.span();
            nets.push((n.into_inner(), s));
        }
        let mut out = Vec::new();
        for (i, p) in ports.map(Spanned::into_inner).unwrap_or_default().into_iter().enumerate() {
            match parse_publish(p.get_ref()) {
                Ok(pc) => out.push((pc, p.span())),
                Err(e) => self.err(&p.span(), format!("container[{index}].ports[{i}]"), e),
            }
        }
        (nets, out)
    }

    /// `[[link]]` tables.
    pub(super) fn links(&mut self, raw: Vec<Spanned<RawLink>>) -> Vec<LinkConfig> {
        let mut out = Vec::new();
        for (index, l) in raw.into_iter().enumerate() {
            let l = l.into_inner();
            let to = match l.to.get_ref().strip_prefix("network:") {
                Some(n) => LinkTarget::Network(n.to_string()),
                None => LinkTarget::Container(l.to.get_ref().clone()),
            };
            let mut ports = Vec::new();
            let pspan = l.ports.span();
            if l.ports.get_ref().is_empty() {
                self.err(
                    &pspan,
                    format!("link[{index}].ports"),
                    "a link needs at least one port, e.g. ports = [\"5432/tcp\"]",
                );
            }
            for (i, p) in l.ports.into_inner().into_iter().enumerate() {
                match parse_port(p.get_ref()) {
                    Ok(x) => ports.push(x),
                    Err(e) => self.err(&p.span(), format!("link[{index}].ports[{i}]"), e),
                }
            }
            out.push(LinkConfig {
                index,
                from: l.from.get_ref().clone(),
                to,
                ports,
                from_span: l.from.span(),
                to_span: l.to.span(),
            });
        }
        out
    }

    /// Cross-checks once everything is read: names used exist, published ports are unique and
    /// have an uplink, the uplink's subnet is apart from the networks'.
    pub(super) fn network_refs(
        &mut self,
        uplink: &Uplink,
        networks: &[NetworkConfig],
        containers: &[ContainerConfig],
        links: &[LinkConfig],
    ) {
        let known = |n: &str| networks.iter().any(|x| x.name == n);
        let mut published: BTreeMap<(Proto, u16), &str> = BTreeMap::new();
        for c in containers {
            for (n, span) in &c.networks {
                if !known(n) {
                    self.err(span, c.key("networks"), unknown("network", n, networks.iter().map(|x| x.name.as_str())));
                }
            }
            for (p, span) in &c.ports {
                if let Some(first) = published.get(&(p.proto, p.host)) {
                    self.err(
                        span,
                        c.key("ports"),
                        format!(
                            "uplink port {}/{} is already published by container `{first}`",
                            p.host,
                            p.proto.name()
                        ),
                    );
                } else {
                    published.insert((p.proto, p.host), &c.name);
                }
                if c.networks.is_empty() {
                    self.err(
                        span,
                        c.key("ports"),
                        "a published port needs the container on a network: add `networks = [\"…\"]`",
                    );
                }
                if uplink.mode == UplinkMode::Dhcp && p.proto == Proto::Udp && p.host == 68 {
                    self.err(
                        span,
                        c.key("ports"),
                        "uplink port 68/udp is the DHCP client's: publishing it would take the lease's replies",
                    );
                }
                if uplink.mode == UplinkMode::None && !c.networks.is_empty() {
                    self.err(
                        span,
                        c.key("ports"),
                        "a published port needs an uplink, but [host.network] mode is \"none\"",
                    );
                }
            }
        }
        if let UplinkMode::Static { address, .. } = &uplink.mode {
            let up = Cidr { addr: address.network(), prefix: address.prefix };
            for n in networks {
                if let Some(s) = n.subnet.filter(|s| s.overlaps(up)) {
                    self.err(
                        &n.span,
                        format!("network[{}].subnet", n.index),
                        format!("subnet {s} overlaps the uplink's subnet {up}"),
                    );
                }
            }
        }
        for n in networks {
            let members = containers.iter().filter(|c| c.networks.iter().any(|(x, _)| *x == n.name)).count() as u64;
            // .0 is the network, .1 is kept free, the last is broadcast.
            let room = n.subnet.map(|s| (1u64 << (32 - u32::from(s.prefix))).saturating_sub(3)).unwrap_or(253);
            if members > room {
                self.err(
                    &n.span,
                    format!("network[{}].subnet", n.index),
                    format!("network `{}` has room for {room} containers, but {members} are on it", n.name),
                );
            }
        }
        let names = || containers.iter().map(|c| c.name.as_str());
        for l in links {
            let from = containers.iter().find(|c| c.name == l.from);
            match from {
                None => {
                    self.err(&l.from_span, format!("link[{}].from", l.index), unknown("container", &l.from, names()))
                }
                Some(c) if c.networks.is_empty() => self.err(
                    &l.from_span,
                    format!("link[{}].from", l.index),
                    format!("container `{}` is on no network, so it cannot use a link", c.name),
                ),
                Some(_) => {}
            }
            match &l.to {
                LinkTarget::Container(t) => match containers.iter().find(|c| &c.name == t) {
                    None => self.err(&l.to_span, format!("link[{}].to", l.index), unknown("container", t, names())),
                    Some(c) if c.networks.is_empty() => self.err(
                        &l.to_span,
                        format!("link[{}].to", l.index),
                        format!("container `{t}` is on no network, so no link can reach it"),
                    ),
                    Some(_) if *t == l.from => self.err(
                        &l.to_span,
                        format!("link[{}].to", l.index),
                        "a link from a container to itself is not needed",
                    ),
                    Some(_) => {}
                },
                LinkTarget::Network(n) => {
                    if !known(n) {
                        self.err(
                            &l.to_span,
                            format!("link[{}].to", l.index),
                            unknown("network", n, networks.iter().map(|x| x.name.as_str())),
                        );
                    }
                }
            }
        }
    }
}

/// "unknown network `x` (known: a, b)".
fn unknown<'a>(what: &str, name: &str, known: impl Iterator<Item = &'a str>) -> String {
    let known: Vec<&str> = known.collect();
    if known.is_empty() {
        format!("unknown {what} `{name}` (none is declared)")
    } else {
        format!("unknown {what} `{name}` (known: {})", known.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        assert_eq!(parse_publish("8080:80").unwrap(), PortConfig { host: 8080, container: 80, proto: Proto::Tcp });
        assert_eq!(parse_publish("5353:53/udp").unwrap(), PortConfig { host: 5353, container: 53, proto: Proto::Udp });
        assert!(parse_publish("80").unwrap_err().contains("HOST:CONTAINER"));
        assert!(parse_publish("70000:80").unwrap_err().contains("out of range"));
        assert!(parse_publish("0:80").unwrap_err().contains("out of range"));
        assert!(parse_publish("80:80/sctp").unwrap_err().contains("sctp"));
        assert_eq!(parse_port("5432/tcp").unwrap(), (Proto::Tcp, 5432));
        assert_eq!(parse_port("53/udp").unwrap(), (Proto::Udp, 53));
        assert!(parse_port("+5").is_err());
    }

    #[test]
    fn prefixes() {
        assert_eq!(parse_cidr("10.89.1.0/24", true).unwrap().to_string(), "10.89.1.0/24");
        assert!(parse_cidr("10.89.1.5/24", true).unwrap_err().contains("host bits"));
        assert!(parse_cidr("10.89.1.5/24", false).is_ok());
        assert!(parse_cidr("10.89.1.0/33", true).is_err());
        assert!(parse_cidr("10.89.1.0", true).is_err());
        let a = parse_cidr("10.89.0.0/16", true).unwrap();
        assert!(a.overlaps(parse_cidr("10.89.3.0/24", true).unwrap()));
        assert!(!parse_cidr("10.88.0.0/16", true).unwrap().overlaps(parse_cidr("10.89.3.0/24", true).unwrap()));
    }
}
