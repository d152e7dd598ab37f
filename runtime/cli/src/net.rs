//! `--network`: one veth for the container, set up by keel-net exactly as keel-init does it.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;

use keel_plan::net::{Cidr, ContainerNet, NetAddress, HOST_IF_PREFIX};

/// A container on one network `ADDRESS/24`, its host end named `k-ID` (cut to 15 bytes).
pub fn container_net(id: &str, address: Ipv4Addr) -> ContainerNet {
    let mut host_if = format!("{HOST_IF_PREFIX}{id}");
    host_if.truncate(15);
    let subnet = Cidr { addr: Cidr { addr: address, prefix: 24 }.network(), prefix: 24 };
    ContainerNet {
        host_if,
        host_mac: [0x02, 0x6b, 0x65, 0x00, 0x00, 0x01],
        addresses: vec![NetAddress { network: "cli".into(), subnet, address }],
        default_src: address,
    }
}

/// The veth and the per-namespace settings of the container whose first process is `pid`;
/// returns the rtnetlink requests made.
pub fn prepare(net: &ContainerNet, pid: libc::pid_t, id_base: u32) -> Result<u64, keel_net::NetError> {
    let ns = File::open(format!("/proc/{pid}/ns/net"))
        .map_err(|source| keel_net::NetError::Io { what: format!("open /proc/{pid}/ns/net"), source })?;
    keel_net::container::setup(Some(net), ns.as_fd(), id_base)
}
