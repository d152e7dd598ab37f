//! From the config's networks, links and ports to the plan's addresses and firewall.
//!
//! Everything is derived from the config alone, in file order, so the same config always gives
//! the same addresses: network *i* without a `subnet` gets the first free `10.89.N.0/24`; its
//! members get `.2`, `.3`, … in container order. A container has one veth and one /32 per network
//! it is on. The firewall accepts, as new connections:
//! - any flow inside a network (subnet to subnet; the kernel's strict reverse-path filter on each
//!   host veth stops a container from using another's address);
//! - each `[[link]]`, from the client's default source to the target's first address (or the
//!   target network's subnet), on its ports;
//! - egress networks' subnets out of the uplink (masqueraded);
//! - published ports (DNAT from the uplink).
//!
//! Everything else is rejected.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use keel_plan::net::{Cidr, ContainerNet, Firewall, Flow, Net, NetAddress, Publish, UplinkMode, HOST_IF_PREFIX};

use crate::config::network::LinkTarget;
use crate::config::Config;

/// Where networks without a `subnet` get theirs: `10.89.N.0/24`.
const AUTO_BASE: [u8; 2] = [10, 89];

/// The derived network side of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetPlan {
    /// `plan.net`.
    pub net: Net,
    /// Each container's veth and addresses (`None`: on no network), in config order.
    pub containers: Vec<Option<ContainerNet>>,
    /// Each network's subnet, in config order.
    pub subnets: Vec<Cidr>,
    /// Each container's `/etc/hosts` (`None`: on no network; the image's own file is kept).
    pub hosts: Vec<Option<String>>,
}

/// The host end of container `index`'s veth: `k-NAME`, or `k-PREFIX.INDEX` for names too long for
/// an interface (15 bytes). Container names have no `.`, so the two forms never meet.
pub fn host_if(name: &str, index: usize) -> String {
    let full = format!("{HOST_IF_PREFIX}{name}");
    if full.len() <= 15 {
        full
    } else {
        format!("{HOST_IF_PREFIX}{}.{index}", name.get(..7).unwrap_or(name))
    }
}

/// A locally administered MAC for container `index`'s host veth end: `02:6b:65:00:HI:LO`.
pub fn host_mac(index: usize) -> [u8; 6] {
    let i = u16::try_from(index).unwrap_or(u16::MAX).to_be_bytes();
    [0x02, 0x6b, 0x65, 0x00, i[0], i[1]]
}

/// Subnets for every network: the configured ones, and the first free 10.89.N.0/24 for the rest.
fn subnets(config: &Config) -> Result<Vec<Cidr>, String> {
    let mut taken: Vec<Cidr> = config.networks.iter().filter_map(|n| n.subnet).collect();
    if let UplinkMode::Static { address, .. } = &config.host.network.mode {
        taken.push(Cidr { addr: address.network(), prefix: address.prefix });
    }
    let mut next = 1u16;
    let mut out = Vec::new();
    for n in &config.networks {
        let s = match n.subnet {
            Some(s) => s,
            None => loop {
                if next > 255 {
                    return Err(format!(
                        "network `{}`: no free 10.89.N.0/24 is left for it (the uplink or other networks take them): give it a `subnet`",
                        n.name
                    ));
                }
                let c = Cidr { addr: Ipv4Addr::new(AUTO_BASE[0], AUTO_BASE[1], next as u8, 0), prefix: 24 };
                next += 1;
                if !taken.iter().any(|t| t.overlaps(c)) {
                    taken.push(c);
                    break c;
                }
            },
        };
        out.push(s);
    }
    Ok(out)
}

/// Derive the plan's network side. Fails when a subnet has no room for its members.
pub fn plan(config: &Config) -> Result<NetPlan, String> {
    let subnets = subnets(config)?;
    let by_name: BTreeMap<&str, usize> =
        config.networks.iter().enumerate().map(|(i, n)| (n.name.as_str(), i)).collect();
    // Members of each network, in container order.
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); config.networks.len()];
    let mut containers: Vec<Option<ContainerNet>> = Vec::new();
    for (ci, c) in config.containers.iter().enumerate() {
        if c.networks.is_empty() {
            containers.push(None);
            continue;
        }
        let mut addresses = Vec::new();
        for (n, _) in &c.networks {
            let Some(&ni) = by_name.get(n.as_str()) else { continue };
            let (Some(list), Some(subnet)) = (members.get_mut(ni), subnets.get(ni)) else { continue };
            list.push(ci);
            let host = 1 + list.len() as u64;
            let size = 1u64 << (32 - u32::from(subnet.prefix));
            if host >= size - 1 {
                return Err(format!(
                    "network `{n}`: subnet {subnet} has room for {} containers, but {} are on it",
                    size.saturating_sub(3),
                    list.len()
                ));
            }
            let address = Ipv4Addr::from(u32::from(subnet.network()) + host as u32);
            addresses.push(NetAddress { network: n.clone(), subnet: *subnet, address });
        }
        let egress_addr = addresses.iter().find(|a| config.networks.iter().any(|n| n.name == a.network && n.egress));
        let default_src = egress_addr.or(addresses.first()).map(|a| a.address).unwrap_or(Ipv4Addr::UNSPECIFIED);
        containers.push(Some(ContainerNet {
            host_if: host_if(&c.name, ci),
            host_mac: host_mac(ci),
            addresses,
            default_src,
        }));
    }

    let find = |name: &str| config.containers.iter().position(|c| c.name == name);
    let net_of = |ci: usize| containers.get(ci).and_then(Option::as_ref);
    let mut fw = Firewall::default();
    for (ni, n) in config.networks.iter().enumerate() {
        let Some(&s) = subnets.get(ni) else { continue };
        if members.get(ni).is_some_and(|m| m.len() > 1) {
            fw.flows.push(Flow { from: s, to: s, port: None, why: format!("network {}", n.name) });
        }
        if n.egress {
            fw.egress.push(s);
        }
    }
    for l in &config.links {
        let Some(from) = find(&l.from).and_then(net_of) else { continue };
        let (to, label) = match &l.to {
            LinkTarget::Container(t) => {
                let Some(a) = find(t).and_then(net_of).and_then(|n| n.addresses.first()) else { continue };
                (Cidr::host(a.address), t.clone())
            }
            LinkTarget::Network(n) => {
                let Some(s) = by_name.get(n.as_str()).and_then(|&i| subnets.get(i)) else { continue };
                (*s, format!("network:{n}"))
            }
        };
        for &port in &l.ports {
            fw.flows.push(Flow {
                from: Cidr::host(from.default_src),
                to,
                port: Some(port),
                why: format!("link {} -> {label}", l.from),
            });
        }
    }
    for (ci, c) in config.containers.iter().enumerate() {
        let Some(to) = net_of(ci).and_then(|n| n.addresses.first()) else { continue };
        for (p, _) in &c.ports {
            fw.publish.push(Publish {
                proto: p.proto,
                host_port: p.host,
                to: to.address,
                port: p.container,
                container: c.name.clone(),
            });
        }
    }

    let hosts = config
        .containers
        .iter()
        .enumerate()
        .map(|(ci, c)| net_of(ci).map(|me| hosts_file(config, &containers, ci, &c.name, me)))
        .collect();
    Ok(NetPlan { net: Net { uplink: config.host.network.clone(), firewall: fw }, containers, subnets, hosts })
}

/// `/etc/hosts` for container `me`: itself, the members of its networks (at their address on the
/// shared network), and its link targets. Nothing it may not reach.
fn hosts_file(
    config: &Config,
    nets: &[Option<ContainerNet>],
    me_index: usize,
    me_name: &str,
    me: &ContainerNet,
) -> String {
    let mut out = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    let mut seen = vec![me_name.to_string()];
    out.push_str(&format!("{}\t{me_name}\n", me.default_src));
    let mut add = |name: &str, addr: Ipv4Addr, out: &mut String| {
        if !seen.iter().any(|s| s == name) {
            seen.push(name.to_string());
            out.push_str(&format!("{addr}\t{name}\n"));
        }
    };
    for mine in &me.addresses {
        for (ci, c) in config.containers.iter().enumerate() {
            if ci == me_index {
                continue;
            }
            if let Some(a) = nets
                .get(ci)
                .and_then(Option::as_ref)
                .and_then(|n| n.addresses.iter().find(|a| a.network == mine.network))
            {
                add(&c.name, a.address, &mut out);
            }
        }
    }
    for l in config.links.iter().filter(|l| l.from == me_name) {
        match &l.to {
            LinkTarget::Container(t) => {
                let pos = config.containers.iter().position(|c| &c.name == t);
                if let Some(a) =
                    pos.and_then(|i| nets.get(i)).and_then(Option::as_ref).and_then(|n| n.addresses.first())
                {
                    add(t, a.address, &mut out);
                }
            }
            LinkTarget::Network(n) => {
                for (ci, c) in config.containers.iter().enumerate() {
                    if let Some(a) =
                        nets.get(ci).and_then(Option::as_ref).and_then(|x| x.addresses.iter().find(|a| &a.network == n))
                    {
                        add(&c.name, a.address, &mut out);
                    }
                }
            }
        }
    }
    out
}

/// `/etc/resolv.conf` for a container with egress, when the uplink's DNS servers are known at
/// build time (static mode). Never lists unreachable servers: none known, no file.
pub fn resolv_conf(net: &Net, egress: bool) -> Option<String> {
    let UplinkMode::Static { dns, .. } = &net.uplink.mode else { return None };
    if !egress || dns.is_empty() {
        return None;
    }
    let mut s = String::new();
    for d in dns {
        s.push_str(&format!("nameserver {d}\n"));
    }
    s.push_str("options timeout:1 attempts:2\n");
    Some(s)
}

/// glibc without `/etc/nsswitch.conf` asks DNS before `/etc/hosts`; images that lack one get this.
pub const NSSWITCH: &str = "hosts: files dns\n";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    fn load(extra: &str) -> Config {
        let text = format!(
            "version = 1\nname = \"t\"\n[kernel]\npackage.x86_64 = {{ path = \"k.deb\", sha256 = \"{0}\" }}\nstub.x86_64 = {{ path = \"s.deb\", sha256 = \"{0}\" }}\n{extra}",
            "0".repeat(64)
        );
        Config::parse(Path::new("t.toml"), text).unwrap_or_else(|e| panic!("{e}"))
    }

    const THREE: &str = r#"
[[network]]
name = "front"
egress = true
[[network]]
name = "back"
[[network]]
name = "ops"
subnet = "10.89.1.0/24"
[[container]]
name = "web"
image = "oci:x"
networks = ["front"]
ports = ["8080:80"]
[[container]]
name = "api"
image = "oci:x"
networks = ["front", "back"]
[[container]]
name = "db"
image = "oci:x"
networks = ["back"]
[[container]]
name = "mon"
image = "oci:x"
networks = ["ops"]
[[container]]
name = "batch"
image = "oci:x"
[[link]]
from = "mon"
to = "db"
ports = ["5432/tcp"]
"#;

    #[test]
    fn addresses_are_deterministic_and_skip_taken_subnets() {
        let c = load(THREE);
        let p = plan(&c).unwrap();
        // ops took 10.89.1.0/24, so front and back get .2 and .3.
        let s: Vec<String> = p.subnets.iter().map(|s| s.to_string()).collect();
        assert_eq!(s, ["10.89.2.0/24", "10.89.3.0/24", "10.89.1.0/24"]);
        let api = p.containers[1].as_ref().unwrap();
        let a: Vec<String> = api.addresses.iter().map(|a| a.address.to_string()).collect();
        assert_eq!(a, ["10.89.2.3", "10.89.3.2"]);
        assert_eq!(api.default_src.to_string(), "10.89.2.3", "front has egress");
        assert_eq!(p.containers[2].as_ref().unwrap().default_src.to_string(), "10.89.3.3");
        assert!(p.containers[4].is_none());
        assert_eq!(plan(&c).unwrap(), p);
    }

    #[test]
    fn firewall() {
        let p = plan(&load(THREE)).unwrap();
        let fw = &p.net.firewall;
        let flows: Vec<String> =
            fw.flows.iter().map(|f| format!("{} {} {:?} {}", f.from, f.to, f.port, f.why)).collect();
        assert_eq!(
            flows,
            [
                "10.89.2.0/24 10.89.2.0/24 None network front",
                "10.89.3.0/24 10.89.3.0/24 None network back",
                "10.89.1.2/32 10.89.3.3/32 Some((Tcp, 5432)) link mon -> db",
            ]
        );
        assert_eq!(fw.egress, vec![p.subnets[0]]);
        assert_eq!(fw.publish.len(), 1);
        assert_eq!(fw.publish[0].to.to_string(), "10.89.2.2");
    }

    #[test]
    fn hosts_name_only_what_is_reachable() {
        let p = plan(&load(THREE)).unwrap();
        let web = p.hosts[0].as_ref().unwrap();
        assert!(web.contains("10.89.2.2\tweb\n") && web.contains("10.89.2.3\tapi\n"), "{web}");
        assert!(!web.contains("db") && !web.contains("mon"), "{web}");
        let mon = p.hosts[3].as_ref().unwrap();
        assert!(mon.contains("10.89.3.3\tdb\n") && !mon.contains("api"), "{mon}");
        assert!(p.hosts[4].is_none());
    }

    #[test]
    fn interface_names_fit() {
        assert_eq!(host_if("web", 0), "k-web");
        assert_eq!(host_if("a-very-long-container-name", 12), "k-a-very-.12");
        assert!(host_if("a-very-long-container-name", 32767).len() <= 15);
    }

    #[test]
    fn full_subnets_are_refused() {
        let mut t = String::from("[[network]]\nname = \"n\"\nsubnet = \"10.1.1.0/29\"\n");
        for i in 0..6 {
            t.push_str(&format!("[[container]]\nname = \"c{i}\"\nimage = \"oci:x\"\nnetworks = [\"n\"]\n"));
        }
        let text = format!(
            "version = 1\nname = \"t\"\n[kernel]\npackage.x86_64 = {{ path = \"k\", sha256 = \"{}\" }}\n{t}",
            "0".repeat(64)
        );
        let e = Config::parse(Path::new("t.toml"), text).unwrap_err().to_string();
        assert!(
            e.contains("t.toml:7:10: key `network[0].subnet`: network `n` has room for 5 containers, but 6"),
            "{e}"
        );
    }
}
