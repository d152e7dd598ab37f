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

use std::path::Path;
use std::time::{Duration, Instant};

use keel_plan::Arch;
use keel_qemu::{GuestForward, Publish, UserNet, Vm};
use keel_tests::{build, busybox_image, curl, free_port, kernel_toml, root, tcg_disk, timeline, wait_until};

/// Each container's shell: the helper `try`, then `body`, then idle.
fn script(body: &str) -> String {
    format!(
        "try() {{ l=$1; shift; out=$(echo hi-$l | nc -w 5 \"$@\" 2>&1); echo \"RESULT $l rc=$? $out\"; }}; {body} \
         echo DONE; while true; do sleep 1; done"
    )
}

fn config(dir: &Path) -> std::path::PathBuf {
    let bb = busybox_image();
    let probe = format!("oci:{}/target/probe-oci:probe", root().display());
    let mut c = format!("version = 1\nname = \"net\"\n\n{}cmdline = \"quiet\"\n", kernel_toml());
    c.push_str("\n[host]\non-exit = \"wait\"\n\n[host.network]\nmode = \"dhcp\"\n");
    c.push_str(
        "\n[[network]]\nname = \"front\"\negress = true\n\n[[network]]\nname = \"back\"\n\n\
         [[network]]\nname = \"ops\"\n\n[[link]]\nfrom = \"mon\"\nto = \"db\"\nports = [\"5432/tcp\"]\n",
    );
    let containers: [(&str, &str, &str, String); 6] = [
        (
            "web",
            "[\"front\"]",
            "ports = [\"8080:80\"]\ntmpfs = [\"/tmp\"]",
            script(
                "mkdir -p /tmp/www; echo hello-from-web > /tmp/www/index.html; httpd -p 80 -h /tmp/www; sleep 6; \
                 try web-api api 8000; try web-db 10.89.2.3 5432; try web-egress 10.0.2.100 7; \
                 try web-host 10.0.2.15 8080; try web-gateway 169.254.1.1 80;",
            ),
        ),
        (
            "api",
            "[\"front\", \"back\"]",
            "",
            script("nc -ll -p 8000 -e echo api-8000 & sleep 6; try api-db db 5432; try api-mon 10.89.3.2 5432;"),
        ),
        (
            "db",
            "[\"back\"]",
            "",
            script(
                "nc -ll -p 5432 -e echo db-5432 & nc -ll -p 5433 -e echo db-5433 & sleep 6; \
                 try db-mon 10.89.3.2 5432; try db-egress 10.0.2.100 7; try db-web 10.89.1.2 80;",
            ),
        ),
        (
            "mon",
            "[\"ops\"]",
            "",
            script(
                "nc -ll -p 5432 -e echo mon-5432 & sleep 6; try mon-db db 5432; try mon-db-other db 5433; \
                 try mon-api 10.89.2.2 8000;",
            ),
        ),
        ("solo", "[]", "", script("sleep 6; try solo-egress 10.0.2.100 7; try solo-api 10.89.1.3 8000;")),
        ("probe", "[\"front\"]", "", String::new()),
    ];
    for (name, nets, extra, body) in containers {
        let (image, command) = if name == "probe" {
            (probe.as_str(), "[\"/probe\", \"check\"]".to_string())
        } else {
            (bb.as_str(), format!("[\"/bin/sh\", \"-c\", '''{body}''']"))
        };
        c.push_str(&format!(
            "\n[[container]]\nname = \"{name}\"\nimage = \"{image}\"\nnetworks = {nets}\ncommand = {command}\nrestart = \"no\"\n{extra}\n"
        ));
    }
    let path = dir.join("net.toml");
    std::fs::write(&path, c).unwrap();
    path
}

fn flows(arch: Arch) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let b = build(&cfg.to_string_lossy(), arch, &format!("network-{arch}-{}", std::process::id()));
    let (published, unpublished) = (free_port(), free_port());
    let mut vm_cfg = tcg_disk(arch, &b.img);
    vm_cfg.net = Some(UserNet {
        publish: vec![
            Publish { udp: false, host: published, guest: 8080 },
            Publish { udp: false, host: unpublished, guest: 8081 },
        ],
        // An echo server outside the VM: QEMU runs `cat` on this machine per connection.
        guest_forwards: vec![GuestForward { addr: "10.0.2.100".parse().unwrap(), port: 7, command: "/bin/cat".into() }],
    });
    let mut vm = Vm::start(&vm_cfg).expect("start QEMU");
    wait_until(&mut vm, "every container's results", Duration::from_secs(600), arch, |lines| {
        lines.iter().filter(|l| l.text.contains("| DONE")).count() == 5
            && lines.iter().any(|l| l.text.contains("probe: summary"))
    });
    // The page through the published port (httpd is up: web printed its results after it).
    let deadline = Instant::now() + Duration::from_secs(60);
    let page = loop {
        let o = curl(published, "/");
        if o.status.success() || Instant::now() > deadline {
            break o;
        }
        std::thread::sleep(Duration::from_secs(2));
    };
    let other = curl(unpublished, "/");
    vm.powerdown().expect("QMP system_powerdown");
    let status = vm.wait_exit(Duration::from_secs(120)).expect("the guest powers off");
    let console = vm.console();
    assert!(status.success(), "{arch}: QEMU exited with {status}:\n{console}");
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

    let lines = vm.lines();
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
    let solo = timeline(&lines, "container-start", "solo");
    let leased = timeline(&lines, "uplink-lease", "");
    let started = timeline(&lines, "uplink-dhcp-start", "");
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

#[test]
fn flows_x86_64() {
    flows(Arch::X86_64);
}

#[test]
fn flows_aarch64() {
    flows(Arch::Aarch64);
}

/// `[host.network]` static and none, one short boot each: a static uplink serves a published
/// port; with no uplink, containers on a network still reach each other by name.
fn uplink_modes(arch: Arch) {
    let dir = tempfile::tempdir().unwrap();
    let bb = busybox_image();
    let base =
        format!("version = 1\nname = \"up\"\n\n{}cmdline = \"quiet\"\n\n[host]\non-exit = \"wait\"\n", kernel_toml());
    // Static: slirp forwards to 10.0.2.15, so that is the address the test gives the uplink.
    let stat = format!(
        "{base}\n[host.network]\nmode = \"static\"\naddress = \"10.0.2.15/24\"\ngateway = \"10.0.2.2\"\ndns = [\"10.0.2.3\"]\n\n\
         [[network]]\nname = \"n\"\negress = true\n\n[[container]]\nname = \"web\"\nimage = \"{bb}\"\nnetworks = [\"n\"]\n\
         ports = [\"8080:80\"]\ntmpfs = [\"/tmp\"]\ncommand = [\"/bin/sh\", \"-c\", '''mkdir /tmp/w; echo static-page > /tmp/w/index.html; \
         cat /etc/resolv.conf; httpd -f -p 80 -h /tmp/w''']\n"
    );
    let none = format!(
        "{base}\n[host.network]\nmode = \"none\"\n\n[[network]]\nname = \"n\"\n\n[[container]]\nname = \"a\"\nimage = \"{bb}\"\n\
         networks = [\"n\"]\ncommand = [\"/bin/sh\", \"-c\", '''nc -ll -p 7000 -e echo a-7000''']\n\n[[container]]\nname = \"b\"\n\
         image = \"{bb}\"\nnetworks = [\"n\"]\ncommand = [\"/bin/sh\", \"-c\", '''sleep 3; echo RESULT b-a $(nc -w 5 a 7000 </dev/null 2>&1); \
         while true; do sleep 1; done''']\n"
    );
    for (mode, text) in [("static", stat), ("none", none)] {
        // The image is named after the config's `name` (`up`), which build() expects as the file stem.
        std::fs::create_dir_all(dir.path().join(mode)).unwrap();
        let path = dir.path().join(mode).join("up.toml");
        std::fs::write(&path, text).unwrap();
        let b = build(&path.to_string_lossy(), arch, &format!("uplink-{mode}-{arch}-{}", std::process::id()));
        let port = free_port();
        let mut vm_cfg = tcg_disk(arch, &b.img);
        vm_cfg.net =
            Some(UserNet { publish: vec![Publish { udp: false, host: port, guest: 8080 }], guest_forwards: vec![] });
        let mut vm = Vm::start(&vm_cfg).expect("start QEMU");
        let page = if mode == "static" {
            wait_until(&mut vm, "the static uplink", Duration::from_secs(300), arch, |lines| {
                lines.iter().any(|l| l.text.contains("nameserver 10.0.2.3"))
            });
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let o = curl(port, "/");
                if o.status.success() || Instant::now() > deadline {
                    break Some(o);
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        } else {
            wait_until(&mut vm, "b's result", Duration::from_secs(300), arch, |lines| {
                lines.iter().any(|l| l.text.contains("RESULT b-a"))
            });
            None
        };
        vm.powerdown().expect("QMP system_powerdown");
        let status = vm.wait_exit(Duration::from_secs(120)).expect("the guest powers off");
        let console = vm.console();
        assert!(status.success(), "{arch} {mode}: QEMU exited with {status}:\n{console}");
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

#[test]
fn uplink_modes_x86_64() {
    uplink_modes(Arch::X86_64);
}

#[test]
fn uplink_modes_aarch64() {
    uplink_modes(Arch::Aarch64);
}
