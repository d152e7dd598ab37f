//! A container's side of the network: its veth and per-namespace settings, done by the parent
//! between clone and release (keel-init through keel-runtime's prepare hook).

use std::net::Ipv4Addr;
use std::os::fd::BorrowedFd;

use keel_plan::net::{Cidr, ContainerNet, CONTAINER_IF, GATEWAY};

use crate::{with_netns, NetError, Result, Route, Rtnl};

/// Everything a container's network namespace gets from the parent, with one round trip into
/// the namespace: for every container, rootless Podman's per-namespace settings (unprivileged
/// ports from 0, ping sockets for the container's groups: `id_base` is the host gid of its group
/// 0); for a container on a network, its veth: the host end `c.host_if` here, the container end
/// `eth0` born in the namespace `ns`, a /32 per network on it, a route per address on the host
/// end, routes through [`GATEWAY`] with a permanent neighbour entry inside, strict reverse-path
/// filtering on the host end and no IPv6 on either. Returns the rtnetlink requests it made.
pub fn setup(c: Option<&ContainerNet>, ns: BorrowedFd<'_>, id_base: u32) -> Result<u64> {
    let mut requests = match c {
        Some(c) => host_side(c, ns)?,
        None => 0,
    };
    // ping_group_range is read through the writer's user namespace (ours, the initial one), so
    // it names host gids.
    let last = id_base.saturating_add(keel_plan::ID_RANGE - 1);
    let inner = with_netns(ns, || -> Result<Option<Rtnl>> {
        sysctl("/proc/sys/net/ipv4/ip_unprivileged_port_start", "0")?;
        sysctl("/proc/sys/net/ipv4/ping_group_range", &format!("{id_base} {last}"))?;
        match c {
            Some(_) => {
                // Before eth0 is up, so it never gets a link-local address.
                let _ = sysctl(&format!("/proc/sys/net/ipv6/conf/{CONTAINER_IF}/disable_ipv6"), "1");
                // A netlink socket stays in the namespace it was made in.
                Rtnl::open().map(Some)
            }
            None => Ok(None),
        }
    })??;
    if let (Some(c), Some(mut inner)) = (c, inner) {
        inner_side(c, &mut inner)?;
        requests += inner.requests;
    }
    Ok(requests)
}

/// The host end: the veth (its peer born in `ns`), up, filtered, routed.
fn host_side(c: &ContainerNet, ns: BorrowedFd<'_>) -> Result<u64> {
    let mut host = Rtnl::open()?;
    match host.create_veth(&c.host_if, c.host_mac, CONTAINER_IF, ns) {
        // The namespace of the container's last run is torn down asynchronously, its veth with it:
        // when it is still there, delete it now.
        Err(NetError::Kernel { errno: libc::EEXIST, .. }) => {
            // It may finish going away between the calls: ENODEV means gone, which will do.
            let gone = |e: &NetError| matches!(e, NetError::Kernel { errno: libc::ENODEV, .. });
            match host.link_index(&c.host_if).and_then(|old| host.delete_link(old)) {
                Err(e) if !gone(&e) => return Err(e),
                _ => {}
            }
            host.create_veth(&c.host_if, c.host_mac, CONTAINER_IF, ns)?;
        }
        other => other?,
    }
    let hidx = host.link_index(&c.host_if)?;
    sysctl(&format!("/proc/sys/net/ipv4/conf/{}/rp_filter", c.host_if), "1")?;
    let _ = sysctl(&format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", c.host_if), "1");
    host.set_up(hidx)?;
    for a in &c.addresses {
        host.add_route(&Route { dst: Cidr::host(a.address), gateway: None, index: hidx, src: None, scope_link: true })?;
    }
    Ok(host.requests)
}

/// Inside the namespace, on a socket made there: eth0's addresses, up, routes, neighbour.
fn inner_side(c: &ContainerNet, inner: &mut Rtnl) -> Result<()> {
    let eth = inner.link_index(CONTAINER_IF)?;
    for a in &c.addresses {
        inner.add_address(eth, a.address, 32)?;
    }
    inner.set_up(eth)?;
    inner.add_route(&Route { dst: Cidr::host(GATEWAY), gateway: None, index: eth, src: None, scope_link: true })?;
    inner.add_neighbour(eth, GATEWAY, c.host_mac)?;
    for a in &c.addresses {
        let dst = Cidr { addr: a.subnet.network(), prefix: a.subnet.prefix };
        inner.add_route(&Route { dst, gateway: Some(GATEWAY), index: eth, src: Some(a.address), scope_link: false })?;
    }
    let any = Cidr { addr: Ipv4Addr::UNSPECIFIED, prefix: 0 };
    inner.add_route(&Route {
        dst: any,
        gateway: Some(GATEWAY),
        index: eth,
        src: Some(c.default_src),
        scope_link: false,
    })?;
    Ok(())
}

fn sysctl(path: &str, value: &str) -> Result<()> {
    std::fs::write(path, value).map_err(|source| NetError::Io { what: format!("write {value} to {path}"), source })
}
