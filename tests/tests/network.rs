//! Networking, in one boot per arch: three networks, a link, a container on no network, an
//! egress network, a published port, DHCP from QEMU's restricted user network, and keel-probe's
//! network checks inside a networked container.
//!
//! Networks (deterministic subnets, in file order): `front` 10.89.1.0/24 (egress) holds web .2,
//! api .3 and probe .4; `back` 10.89.2.0/24 holds api .2 and db .3; `ops` 10.89.3.0/24 holds mon
//! .2. `[[link]] mon -> db 5432/tcp`. `solo` is on no network.
//!
//! Each container tries its flows with busybox `nc -w 5` and prints `RESULT LABEL rc=N OUTPUT`.
//! A denied flow must say "Connection refused" (the firewall rejects), never time out. From the
//! build machine, curl fetches web's page through `--publish`-style forwarding, and an
//! unpublished uplink port is refused. Egress goes to an echo server on this machine (`cat`, run
//! by QEMU's guestfwd for 10.0.2.100:7), which the VM reaches only through its uplink.

use std::process::Output;
use std::time::{Duration, Instant};

use keel_plan::Arch;
use keel_qemu::{GuestForward, Publish, UserNet, Vm};
use keel_tests::scenario::{power_off, Scenario};
use keel_tests::{both_arches, curl, free_port, wait_until};

/// Start `s` with a user network that publishes `publish` (host, guest) TCP ports.
fn start(s: &Scenario, publish: &[(u16, u16)], guest_forwards: Vec<GuestForward>) -> Vm {
    let mut cfg = s.vm_config(s.img(), false);
    let publish = publish.iter().map(|&(host, guest)| Publish { udp: false, host, guest }).collect();
    cfg.net = Some(UserNet { publish, guest_forwards });
    Vm::start(&cfg).expect("start QEMU")
}

/// curl the page at `port` until it answers, for at most a minute; the last try.
fn fetch(port: u16, pause: Duration) -> Output {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let o = curl(port, "/");
        if o.status.success() || Instant::now() > deadline {
            return o;
        }
        std::thread::sleep(pause);
    }
}

fn flows(arch: Arch) {
    let s = Scenario::new("net", arch, &[]);
    let (published, unpublished) = (free_port(), free_port());
    // An echo server outside the VM: QEMU runs `cat` on this machine per connection.
    let echo = GuestForward { addr: "10.0.2.100".parse().unwrap(), port: 7, command: "/bin/cat".into() };
    let mut vm = start(&s, &[(published, 8080), (unpublished, 8081)], vec![echo]);
    wait_until(&mut vm, "every container's results", Duration::from_secs(600), arch, |lines| {
        lines.iter().filter(|l| l.text.contains("| DONE")).count() == 5
            && lines.iter().any(|l| l.text.contains("probe: summary"))
    });
    // The page through the published port (httpd is up: web printed its results after it).
    let page = fetch(published, Duration::from_secs(2));
    let other = curl(unpublished, "/");
    let run = power_off(vm, arch);
    let console = &run.console;
    assert!(
        String::from_utf8_lossy(&page.stdout).contains("hello-from-web"),
        "{arch}: curl through the published port: {:?} {}\n{console}",
        page.status,
        String::from_utf8_lossy(&page.stderr)
    );
    assert!(
        !other.status.success() && !String::from_utf8_lossy(&other.stdout).contains("hello"),
        "{arch}: an unpublished uplink port answered: {}",
        String::from_utf8_lossy(&other.stdout)
    );

    let lines = &run.lines;
    let result = |label: &str| -> String {
        lines
            .iter()
            .find_map(|l| l.text.split_once(&format!("RESULT {label} ")).map(|(_, r)| r.to_string()))
            .unwrap_or_else(|| panic!("{arch}: no result for {label}:\n{console}"))
    };
    let allowed = |label: &str, reply: &str| {
        let r = result(label);
        assert!(r.starts_with("rc=0") && r.contains(reply), "{arch}: {label} should pass, got `{r}`:\n{console}");
    };
    let refused = |label: &str| {
        let r = result(label);
        assert!(
            r.contains("Connection refused") && !r.starts_with("rc=0"),
            "{arch}: {label} should be refused at once, got `{r}`:\n{console}"
        );
    };
    // Same network, by name.
    allowed("web-api", "api-8000");
    allowed("api-db", "db-5432");
    // The link, in its direction and on its port only.
    allowed("mon-db", "db-5432");
    refused("mon-db-other");
    refused("db-mon");
    // Across networks, both sides.
    refused("web-db");
    refused("db-web");
    refused("mon-api");
    refused("api-mon");
    // The host's own addresses: its uplink address is rejected; the link-local gateway is no
    // address at all, so the host answers that it has no route to it.
    refused("web-host");
    let r = result("web-gateway");
    assert!(r.contains("unreachable") || r.contains("refused"), "{arch}: web-gateway: `{r}`:\n{console}");
    // Egress: only from the egress network.
    allowed("web-egress", "hi-web-egress");
    refused("db-egress");
    // No network: loopback only, nothing to route through.
    for label in ["solo-egress", "solo-api"] {
        let r = result(label);
        assert!(!r.starts_with("rc=0") && r.contains("unreachable"), "{arch}: {label}: `{r}`");
    }

    // DHCP, and containers started without waiting for it.
    let lease = lines
        .iter()
        .find(|l| l.text.contains("keel: uplink eth0: DHCP lease 10.0.2.15/24 from 10.0.2.2"))
        .unwrap_or_else(|| panic!("{arch}: no DHCP lease on the console:\n{console}"));
    println!("{arch}: {}", lease.text);
    let solo = run.timeline("container-start", "solo");
    let leased = run.timeline("uplink-lease", "");
    let started = run.timeline("uplink-dhcp-start", "");
    println!("{arch}: solo started at {solo:?}, DHCP started at {started:?}, lease at {leased:?}");
    if let (Some(s), Some(l)) = (started.first(), leased.first()) {
        println!("{arch}: DHCP lease took {:.3} s of guest time", l - s);
    }
    assert!(
        !solo.is_empty() && !leased.is_empty() && solo[0] < leased[0],
        "{arch}: solo must start before the lease arrives, without waiting for it:\n{console}"
    );

    // keel-probe inside a networked container: every check ok, the network ones included.
    let probe: Vec<&str> = lines.iter().filter_map(|l| l.text.split_once("probe| ").map(|(_, r)| r)).collect();
    for l in &probe {
        assert!(!l.starts_with("probe: FAIL"), "{arch}: {l}\n{console}");
    }
    for check in ["net-interfaces", "net-raw-socket", "net-ping", "net-bind-80"] {
        assert!(
            probe.iter().any(|l| l.starts_with(&format!("probe: ok {check}"))),
            "{arch}: the probe did not pass {check}:\n{console}"
        );
    }
    for l in lines.iter().filter(|l| l.text.contains("firewall:") || l.text.contains("RESULT")) {
        println!("{arch}: {}", l.text);
    }
}

/// `[host.network]` static and none, one short boot each: a static uplink serves a published
/// port; with no uplink, containers on a network still reach each other by name.
fn uplink_modes(arch: Arch) {
    for mode in ["static", "none"] {
        let s = Scenario::new(&format!("uplink-{mode}"), arch, &[]);
        let port = free_port();
        let mut vm = start(&s, &[(port, 8080)], vec![]);
        let page = if mode == "static" {
            wait_until(&mut vm, "the static uplink", Duration::from_secs(300), arch, |lines| {
                lines.iter().any(|l| l.text.contains("nameserver 10.0.2.3"))
            });
            Some(fetch(port, Duration::from_secs(1)))
        } else {
            wait_until(&mut vm, "b's result", Duration::from_secs(300), arch, |lines| {
                lines.iter().any(|l| l.text.contains("RESULT b-a"))
            });
            None
        };
        let console = power_off(vm, arch).console;
        if let Some(page) = page {
            assert!(console.contains("keel: uplink eth0: static 10.0.2.15/24, gateway 10.0.2.2"), "{arch}:\n{console}");
            assert!(!console.contains("DHCP"), "{arch}: static mode ran DHCP:\n{console}");
            assert!(
                String::from_utf8_lossy(&page.stdout).contains("static-page"),
                "{arch}: static curl: {page:?}\n{console}"
            );
        } else {
            assert!(console.contains("RESULT b-a a-7000"), "{arch}: mode none, same network:\n{console}");
            assert!(!console.contains("keel: uplink"), "{arch}: mode none set up an uplink:\n{console}");
        }
    }
}

both_arches!(flows, uplink_modes);
