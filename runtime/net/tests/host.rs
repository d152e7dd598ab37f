//! Host tests of keel-net against the real kernel, each in throwaway network namespaces
//! (`ip netns add keel-PID-TAG`, deleted at the end), checked with the real `ip` and `nft`
//! clients (Debian packages iproute2 and nftables).
//!
//! They need root. Without root, or without `ip`/`nft`, they fail and say so: they never pass
//! without running.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use keel_net::netlink::{messages, Writer, NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REQUEST};
use keel_net::{nft, with_netns, NetError, Route, Rtnl};
use keel_plan::net::{Cidr, Firewall, Flow, Proto, Publish, GATEWAY};

fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|l| l.split_whitespace().nth(1));
    assert_eq!(euid, Some("0"), "these tests create network namespaces, veths and nftables rulesets: run them as root");
    for (tool, version, package) in [("ip", "-V", "iproute2"), ("nft", "--version", "nftables")] {
        let found = Command::new(tool).arg(version).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
        assert!(found, "these tests check the kernel's state with `{tool}`: install the Debian package {package}");
    }
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// A named network namespace, deleted on drop.
struct Netns {
    name: String,
    file: File,
}

impl Netns {
    fn new(tag: &str) -> Netns {
        require_root();
        let name = format!("keel-{}-{tag}", std::process::id());
        // A leftover of a crashed earlier run with the same pid.
        let _ = Command::new("ip").args(["netns", "del", &name]).stderr(Stdio::null()).status();
        run(Command::new("ip").args(["netns", "add", &name]));
        let file = File::open(format!("/run/netns/{name}")).unwrap();
        Netns { name, file }
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// `ip -n NS ARGS`, its standard output.
    fn ip(&self, args: &[&str]) -> String {
        let out = run(Command::new("ip").arg("-n").arg(&self.name).args(args));
        String::from_utf8(out.stdout).unwrap()
    }

    /// `ip netns exec NS ARGS`, its standard output.
    fn exec(&self, args: &[&str]) -> String {
        let out = run(Command::new("ip").args(["netns", "exec", &self.name]).args(args));
        String::from_utf8(out.stdout).unwrap()
    }

    fn nft_list(&self) -> String {
        self.exec(&["nft", "list", "table", "inet", "keel"])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

fn host(a: [u8; 4]) -> Cidr {
    Cidr::host(Ipv4Addr::from(a))
}

fn cidr(a: [u8; 4], prefix: u8) -> Cidr {
    Cidr { addr: Ipv4Addr::from(a), prefix }
}

const HOST_MAC: [u8; 6] = [0x02, 0x6b, 0, 0, 0, 1];

#[test]
fn veth_peer_is_born_in_the_container_namespace_with_addresses_routes_and_neighbour() {
    let host_ns = Netns::new("lh");
    let ctr_ns = Netns::new("lc");
    let mut h = Rtnl::open_in(host_ns.fd()).unwrap();
    h.create_veth("k-web", HOST_MAC, "eth0", ctr_ns.fd()).unwrap();
    assert_eq!(h.requests, 1, "one request per veth");

    let err = h.create_veth("k-web", HOST_MAC, "eth0", ctr_ns.fd()).unwrap_err();
    assert!(matches!(err, NetError::Kernel { errno: libc::EEXIST, .. }), "{err:?}");
    assert!(err.to_string().starts_with("create veth k-web: File exists (os error 17)"), "{err}");

    assert!(host_ns.ip(&["link", "show", "k-web"]).contains("link/ether 02:6b:00:00:00:01"));
    assert!(ctr_ns.ip(&["link", "show", "eth0"]).contains("eth0@"));
    assert!(!host_ns.ip(&["link"]).contains("eth0"), "the peer was created in the host namespace");
    assert!(!ctr_ns.ip(&["link"]).contains("k-web"));

    let links = h.links().unwrap();
    let k = links.iter().find(|l| l.name == "k-web").unwrap();
    assert_eq!((k.kind.as_deref(), k.mac, k.loopback, k.up), (Some("veth"), Some(HOST_MAC), false, false));
    assert!(links.iter().any(|l| l.name == "lo" && l.loopback && l.kind.is_none()));
    let k_index = h.link_index("k-web").unwrap();
    assert_eq!(k_index, k.index);
    let err = h.link_index("nosuch0").unwrap_err();
    assert!(matches!(err, NetError::Kernel { errno: libc::ENODEV, .. }), "{err:?}");
    assert!(err.to_string().starts_with("look up link nosuch0: No such device"), "{err}");

    let addr = Ipv4Addr::new(10, 89, 1, 2);
    let mut c = Rtnl::open_in(ctr_ns.fd()).unwrap();
    let eth0 = c.link_index("eth0").unwrap();
    c.set_up(eth0).unwrap();
    c.add_address(eth0, addr, 32).unwrap();
    c.add_address(eth0, addr, 32).unwrap();
    let link = Route { dst: Cidr::host(GATEWAY), gateway: None, index: eth0, src: None, scope_link: true };
    c.add_route(&link).unwrap();
    let default =
        Route { dst: cidr([0; 4], 0), gateway: Some(GATEWAY), index: eth0, src: Some(addr), scope_link: false };
    c.add_route(&default).unwrap();
    c.add_route(&default).unwrap();
    c.add_neighbour(eth0, GATEWAY, HOST_MAC).unwrap();
    c.add_address(eth0, Ipv4Addr::new(10, 90, 0, 5), 24).unwrap();

    h.set_up(k_index).unwrap();
    h.add_route(&Route { dst: Cidr::host(addr), gateway: None, index: k_index, src: None, scope_link: true }).unwrap();

    let addrs = ctr_ns.ip(&["-4", "addr", "show", "eth0"]);
    assert!(addrs.contains("inet 10.89.1.2/32 scope global eth0"), "{addrs}");
    assert!(addrs.contains("inet 10.90.0.5/24 brd 10.90.0.255 scope global eth0"), "{addrs}");
    let routes = ctr_ns.ip(&["route"]);
    assert!(routes.contains("default via 169.254.1.1 dev eth0 src 10.89.1.2"), "{routes}");
    assert!(routes.contains("169.254.1.1 dev eth0 scope link"), "{routes}");
    let neigh = ctr_ns.ip(&["neigh"]);
    assert!(neigh.contains("169.254.1.1 dev eth0 lladdr 02:6b:00:00:00:01 PERMANENT"), "{neigh}");
    assert!(host_ns.ip(&["route"]).contains("10.89.1.2 dev k-web scope link"));
    assert!(c
        .links()
        .unwrap()
        .iter()
        .any(|l| l.name == "eth0" && l.up && l.carrier && l.kind.as_deref() == Some("veth")));

    c.delete_address(eth0, Ipv4Addr::new(10, 90, 0, 5), 24).unwrap();
    assert!(!ctr_ns.ip(&["addr"]).contains("10.90.0.5"));
    c.delete_route(&Route { dst: cidr([0; 4], 0), gateway: None, index: 0, src: None, scope_link: false }).unwrap();
    let routes = ctr_ns.ip(&["route"]);
    assert!(!routes.contains("default"), "{routes}");
    let err = c.delete_route(&default).unwrap_err();
    assert!(matches!(err, NetError::Kernel { errno: libc::ESRCH, .. }), "{err:?}");
    assert_eq!(c.requests, 13);
}

fn firewall() -> Firewall {
    let flow = |from, to, port| Flow { from, to, port, why: "test".into() };
    Firewall {
        flows: vec![
            flow(host([10, 89, 1, 2]), host([10, 89, 2, 3]), Some((Proto::Tcp, 5432))),
            flow(cidr([10, 89, 1, 0], 24), cidr([10, 89, 2, 0], 24), None),
            flow(host([10, 89, 1, 2]), host([10, 89, 2, 3]), Some((Proto::Udp, 53))),
            flow(cidr([10, 88, 0, 0], 15), cidr([0; 4], 0), None),
        ],
        egress: vec![host([10, 89, 1, 2])],
        publish: vec![Publish {
            proto: Proto::Tcp,
            host_port: 8080,
            to: Ipv4Addr::new(10, 89, 2, 3),
            port: 80,
            container: "db".into(),
        }],
    }
}

/// The ruleset of `nft.rs`'s documentation for [`firewall`] and uplink `up0`, in nft syntax.
const RULESET: &str = r#"
table inet keel {
  chain forward { type filter hook forward priority 0; policy drop;
    ct state established,related accept
    ct state invalid drop
    iifname "up0" ct status dnat accept
    iifname "k-*" oifname "k-*" ip saddr 10.89.1.2 ip daddr 10.89.2.3 meta l4proto tcp th dport 5432 accept
    iifname "k-*" oifname "k-*" ip saddr 10.89.1.0/24 ip daddr 10.89.2.0/24 accept
    iifname "k-*" oifname "k-*" ip saddr 10.89.1.2 ip daddr 10.89.2.3 meta l4proto udp th dport 53 accept
    iifname "k-*" oifname "k-*" ip saddr 10.88.0.0/15 ip daddr 0.0.0.0/0 accept
    iifname "k-*" ip saddr 10.89.1.2 oifname "up0" accept
    reject with icmpx port-unreachable
  }
  chain input { type filter hook input priority 0; policy accept;
    iifname "k-*" reject with icmpx port-unreachable
  }
  chain prerouting { type nat hook prerouting priority -100; policy accept;
    iifname "up0" meta l4proto tcp th dport 8080 dnat ip to 10.89.2.3:80
  }
  chain postrouting { type nat hook postrouting priority 100; policy accept;
    ip saddr 10.89.1.2 oifname "up0" masquerade
  }
}
"#;

fn apply_in(ns: &Netns, batch: &[u8]) -> keel_net::Result<()> {
    with_netns(ns.fd(), || nft::apply(batch)).unwrap()
}

/// A one-rule message (empty expression list) for chain `chain` of `inet keel`.
fn bad_rule(buf: &mut Vec<u8>, chain: &str, seq: u32) {
    let mut w = Writer::new(buf, (10 << 8) | 6, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND, seq);
    w.header(&[1, 0, 0, 0]);
    w.attr_str(1, "keel");
    w.attr_str(2, chain);
}

#[test]
fn firewall_batch_loads_lists_like_the_documented_ruleset_and_reloads() {
    let ns = Netns::new("nft");
    let fw = firewall();
    let batch = nft::batch(&fw, Some("up0"), 1);
    assert_eq!(nft::stats(&batch).messages, 21);
    apply_in(&ns, &batch).unwrap();
    let listed = ns.nft_list();
    for rule in [
        "type filter hook forward priority filter; policy drop;",
        "ct state established,related accept",
        "ct state invalid drop",
        "iifname \"up0\" ct status dnat accept",
        "iifname \"k-*\" oifname \"k-*\" ip saddr 10.89.1.2 ip daddr 10.89.2.3 tcp dport 5432 accept",
        "iifname \"k-*\" oifname \"k-*\" ip saddr 10.89.1.0/24 ip daddr 10.89.2.0/24 accept",
        "iifname \"k-*\" oifname \"k-*\" ip saddr 10.89.1.2 ip daddr 10.89.2.3 udp dport 53 accept",
        "iifname \"k-*\" oifname \"k-*\" ip saddr 10.88.0.0/15 ip daddr 0.0.0.0/0 accept",
        "iifname \"k-*\" ip saddr 10.89.1.2 oifname \"up0\" accept",
        "iifname \"k-*\" reject",
        "type nat hook prerouting priority dstnat; policy accept;",
        "iifname \"up0\" tcp dport 8080 dnat ip to 10.89.2.3:80",
        "type nat hook postrouting priority srcnat; policy accept;",
        "ip saddr 10.89.1.2 oifname \"up0\" masquerade",
    ] {
        assert!(listed.contains(rule), "missing `{rule}` in\n{listed}");
    }

    // nft itself, given the documented ruleset, loads the same thing.
    let reference = Netns::new("nftref");
    let mut child = Command::new("ip")
        .args(["netns", "exec", &reference.name, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(RULESET.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(listed, reference.nft_list());

    // Idempotent: the same batch again, then one without uplink replaces it whole.
    apply_in(&ns, &batch).unwrap();
    assert_eq!(ns.nft_list(), listed);
    apply_in(&ns, &nft::batch(&fw, None, 1)).unwrap();
    let without = ns.nft_list();
    assert!(!without.contains("up0") && !without.contains("dnat") && !without.contains("masquerade"), "{without}");
    assert!(without.contains("ip saddr 10.89.1.2 ip daddr 10.89.2.3 tcp dport 5432 accept"));
    apply_in(&ns, &batch).unwrap();
    assert_eq!(ns.nft_list(), listed);

    // A failing message fails the whole batch, names itself, and leaves the old table alone.
    let mut broken = Vec::new();
    for msg in messages(&batch) {
        let msg = msg.unwrap();
        if msg.header.ty == 17 {
            bad_rule(&mut broken, "nochain", 1000);
        }
        let start = msg.payload.as_ptr() as usize - batch.as_ptr() as usize - 16;
        broken.extend_from_slice(&batch[start..start + msg.header.len as usize]);
    }
    let err = apply_in(&ns, &broken).unwrap_err();
    assert!(matches!(err, NetError::Kernel { errno: libc::ENOENT, .. }), "{err:?}");
    assert!(err.to_string().starts_with("add rule 1 of chain inet keel nochain: No such file or directory"), "{err}");
    assert_eq!(ns.nft_list(), listed);
}

/// A TCP server in a namespace that answers every connection with the client's address.
struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(ns: &Netns, addr: &str) -> Server {
        let addr: SocketAddr = addr.parse().unwrap();
        let listener = with_netns(ns.fd(), || TcpListener::bind(addr)).unwrap().unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, peer)) => {
                        let _ = s.write_all(peer.ip().to_string().as_bytes());
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(5)),
                    Err(e) => panic!("accept on {addr}: {e}"),
                }
            }
        });
        Server { stop, thread: Some(thread) }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Connect from namespace `ns`; the address the server saw, and how long it took.
fn connect(ns: &Netns, addr: &str) -> (io::Result<String>, Duration) {
    let addr: SocketAddr = addr.parse().unwrap();
    let start = Instant::now();
    let result = with_netns(ns.fd(), || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        let mut seen = String::new();
        s.read_to_string(&mut seen)?;
        Ok(seen)
    })
    .unwrap();
    (result, start.elapsed())
}

#[track_caller]
fn allowed(ns: &Netns, addr: &str, seen: &str) {
    let (result, _) = connect(ns, addr);
    match result {
        Ok(peer) => assert_eq!(peer, seen, "{} -> {addr}: the server saw the wrong source", ns.name),
        Err(e) => panic!("{} -> {addr} should connect: {e}", ns.name),
    }
}

#[track_caller]
fn refused(ns: &Netns, addr: &str) {
    let (result, took) = connect(ns, addr);
    match result {
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            assert!(took < Duration::from_secs(1), "{} -> {addr} was refused only after {took:?}", ns.name)
        }
        other => panic!("{} -> {addr} should be refused, got {other:?} after {took:?}", ns.name),
    }
}

/// A container: veth `host_if` from `h`'s namespace to `eth0` in `ctr`, set up the way
/// keel-init does it (see NETWORK-NOTES: /32, link-local gateway, permanent neighbours).
fn attach(h: &mut Rtnl, ctr: &Netns, host_if: &str, mac: [u8; 6], addr: Ipv4Addr) {
    h.create_veth(host_if, mac, "eth0", ctr.fd()).unwrap();
    let mut c = Rtnl::open_in(ctr.fd()).unwrap();
    let lo = c.link_index("lo").unwrap();
    c.set_up(lo).unwrap();
    let eth0 = c.link_index("eth0").unwrap();
    c.set_up(eth0).unwrap();
    c.add_address(eth0, addr, 32).unwrap();
    c.add_route(&Route { dst: Cidr::host(GATEWAY), gateway: None, index: eth0, src: None, scope_link: true }).unwrap();
    let default =
        Route { dst: cidr([0; 4], 0), gateway: Some(GATEWAY), index: eth0, src: Some(addr), scope_link: false };
    c.add_route(&default).unwrap();
    c.add_neighbour(eth0, GATEWAY, mac).unwrap();
    let ctr_mac = c.links().unwrap().into_iter().find(|l| l.name == "eth0").and_then(|l| l.mac).unwrap();
    let index = h.link_index(host_if).unwrap();
    h.set_up(index).unwrap();
    h.add_route(&Route { dst: Cidr::host(addr), gateway: None, index, src: None, scope_link: true }).unwrap();
    h.add_neighbour(index, addr, ctr_mac).unwrap();
}

#[test]
fn traffic_follows_the_firewall() {
    let host_ns = Netns::new("th");
    let a = Netns::new("ta");
    let b = Netns::new("tb");
    let out = Netns::new("tout");
    let mut h = Rtnl::open_in(host_ns.fd()).unwrap();
    attach(&mut h, &a, "k-a", [0x02, 0x6b, 0, 0, 0, 0xa], Ipv4Addr::new(10, 89, 1, 2));
    attach(&mut h, &b, "k-b", [0x02, 0x6b, 0, 0, 0, 0xb], Ipv4Addr::new(10, 89, 2, 3));

    // The uplink: up0 (192.168.100.1/24) to the outside namespace's eth0 (.2), which routes the
    // container addresses to the host, as a LAN neighbour trying direct routing would.
    h.create_veth("up0", [0x02, 0x6b, 0, 0, 1, 0], "eth0", out.fd()).unwrap();
    let up0 = h.link_index("up0").unwrap();
    h.set_up(up0).unwrap();
    h.add_address(up0, Ipv4Addr::new(192, 168, 100, 1), 24).unwrap();
    let mut o = Rtnl::open_in(out.fd()).unwrap();
    let eth0 = o.link_index("eth0").unwrap();
    o.set_up(eth0).unwrap();
    o.add_address(eth0, Ipv4Addr::new(192, 168, 100, 2), 24).unwrap();
    let to_containers = Route {
        dst: cidr([10, 89, 0, 0], 16),
        gateway: Some(Ipv4Addr::new(192, 168, 100, 1)),
        index: eth0,
        src: None,
        scope_link: false,
    };
    o.add_route(&to_containers).unwrap();
    with_netns(host_ns.fd(), || std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")).unwrap().unwrap();

    let fw = Firewall {
        flows: vec![
            Flow {
                from: host([10, 89, 1, 2]),
                to: host([10, 89, 2, 3]),
                port: Some((Proto::Tcp, 5432)),
                why: "link a -> b".into(),
            },
            Flow { from: cidr([10, 89, 2, 0], 24), to: cidr([10, 89, 2, 0], 24), port: None, why: "network b".into() },
        ],
        egress: vec![host([10, 89, 1, 2])],
        publish: vec![Publish {
            proto: Proto::Tcp,
            host_port: 8080,
            to: Ipv4Addr::new(10, 89, 2, 3),
            port: 80,
            container: "b".into(),
        }],
    };
    let _servers = [
        Server::start(&b, "10.89.2.3:5432"),
        Server::start(&b, "10.89.2.3:5433"),
        Server::start(&b, "10.89.2.3:80"),
        Server::start(&a, "10.89.1.2:7000"),
        Server::start(&host_ns, "192.168.100.1:7100"),
        Server::start(&out, "192.168.100.2:9000"),
    ];

    // A LAN host forging a source inside b's network (10.89.2.99) sends b a datagram.
    o.add_address(eth0, Ipv4Addr::new(10, 89, 2, 99), 32).unwrap();
    let inbox = with_netns(b.fd(), || std::net::UdpSocket::bind("10.89.2.3:5555")).unwrap().unwrap();
    inbox.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let forge = || {
        with_netns(out.fd(), || {
            std::net::UdpSocket::bind("10.89.2.99:0").and_then(|s| s.send_to(b"forged", "10.89.2.3:5555"))
        })
        .unwrap()
        .unwrap();
        inbox.recv_from(&mut [0u8; 16]).map(|(n, from)| (n, from.to_string()))
    };

    // Before the firewall: everything routes (so the refusals below are the firewall's).
    let (n, from) = forge().expect("without the firewall, the forged datagram is forwarded");
    assert!(n == 6 && from.starts_with("10.89.2.99:"), "{n} bytes from {from}");
    allowed(&b, "10.89.1.2:7000", "10.89.2.3");
    allowed(&a, "192.168.100.1:7100", "10.89.1.2");

    with_netns(host_ns.fd(), || nft::apply(&nft::batch(&fw, Some("up0"), 1))).unwrap().unwrap();

    allowed(&a, "10.89.2.3:5432", "10.89.1.2");
    refused(&a, "10.89.2.3:5433");
    refused(&b, "10.89.1.2:7000");
    // Containers never reach the host; the outside does.
    refused(&a, "192.168.100.1:7100");
    allowed(&out, "192.168.100.1:7100", "192.168.100.2");
    // Egress is masqueraded to the uplink's address, for the containers that have it only.
    allowed(&a, "192.168.100.2:9000", "192.168.100.1");
    refused(&b, "192.168.100.2:9000");
    // The published port reaches b:80 with the client's own address; direct routing does not.
    allowed(&out, "192.168.100.1:8080", "192.168.100.2");
    refused(&out, "10.89.2.3:80");
    // Flows start at a container's veth: the forged source from the uplink is not forwarded.
    let forged = forge();
    assert!(forged.is_err(), "a LAN host forging a container source got through: {forged:?}");
}

#[test]
fn dhcp_sockets_share_port_68_one_per_device() {
    let ns = Netns::new("dhcp");
    let mut r = Rtnl::open_in(ns.fd()).unwrap();
    r.create_veth("k-d0", HOST_MAC, "k-d1", ns.fd()).unwrap();
    for name in ["k-d0", "k-d1"] {
        let index = r.link_index(name).unwrap();
        r.set_up(index).unwrap();
    }
    let (d0, d1) =
        with_netns(ns.fd(), || (keel_net::dhcp_socket("k-d0").unwrap(), keel_net::dhcp_socket("k-d1").unwrap()))
            .unwrap();
    assert_eq!(d0.local_addr().unwrap(), "0.0.0.0:68".parse().unwrap());
    let mut buf = [0u8; 64];
    let err = d0.recv_from(&mut buf).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "the socket blocks");
    // A broadcast out of k-d1 arrives on k-d0's socket (bound to k-d0 alone).
    d1.send_to(b"discover", "255.255.255.255:68").unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    let got = loop {
        match d0.recv_from(&mut buf) {
            Ok((n, _)) => break buf[..n].to_vec(),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("no broadcast on k-d0: {e}"),
        }
    };
    assert_eq!(got, b"discover");
}
