//! The mTLS HTTPS API in one boot per arch: a config with `[api]` and busybox containers (a
//! heartbeat, a crash loop, one on a network that tries to reach the API), the API port forwarded
//! like `keel run --publish`, then with real clients (curl with a client certificate, promtool,
//! `keel` itself) and certificates made by openssl here:
//! - every GET endpoint answers JSON (text for logs and metrics); `promtool check metrics` accepts
//!   /metrics;
//! - no client certificate, one from another CA, and plaintext HTTP are refused, and the refusal
//!   counts in /metrics grow;
//! - hostile clients (silent TCP connections past the connection limit, slow headers, garbage,
//!   a 1 MiB header; x86_64 only) delay neither the heartbeat nor the crash loop's restarts;
//! - `keel restart` restarts a container (ps, events, console), `keel ps`/`keel logs [-f]` print,
//!   and `keel poweroff` powers the machine off cleanly;
//! - containers cannot connect to the API (the firewall rejects their veths);
//! - the audit log on keel-data (read with debugfs after power-off) has one JSON object per
//!   call naming the client (address, subject, sha256); an unknown container never reaches it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use keel_plan::Arch;
use keel_qemu::{Publish, UserNet, Vm, POWER_DOWN_LINE};
use keel_tests::{
    both_arches, build, busybox_image, debugfs, extract, free_port, keel_bin, kernel_toml, partitions, tcg_disk,
    timeline, wait_until,
};

fn openssl(dir: &Path, args: &[&str]) {
    let o = Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl");
    assert!(o.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

/// A CA in `dir/NAME-ca.{pem,key}`.
fn ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name} CA"),
            "-keyout",
            &format!("{name}-ca.key"),
            "-out",
            &format!("{name}-ca.pem"),
        ],
    );
}

/// A certificate `out.{pem,key}` signed by CA `ca`, with `ext` (an openssl -extfile line).
fn issue(dir: &Path, ca: &str, out: &str, subject: &str, ext: &str) {
    std::fs::write(dir.join(format!("{out}.ext")), ext).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            subject,
            "-keyout",
            &format!("{out}.key"),
            "-out",
            &format!("{out}.csr"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{out}.csr"),
            "-CA",
            &format!("{ca}-ca.pem"),
            "-CAkey",
            &format!("{ca}-ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &format!("{out}.ext"),
            "-out",
            &format!("{out}.pem"),
        ],
    );
}

/// The server's TLS dir (`tls/`), this client's identity (`me/`) and an intruder's (`them/`).
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    ca(dir, "keel");
    ca(dir, "other");
    issue(
        dir,
        "keel",
        "server",
        "/CN=keel-api",
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    );
    issue(dir, "keel", "client", "/CN=ops/O=keel tests", "extendedKeyUsage=clientAuth\n");
    issue(dir, "other", "intruder", "/CN=intruder", "extendedKeyUsage=clientAuth\n");
    let (tls, me, them) = (dir.join("tls"), dir.join("me"), dir.join("them"));
    for d in [&tls, &me, &them] {
        std::fs::create_dir_all(d).unwrap();
    }
    let cp = |from: &str, to: &Path| std::fs::copy(dir.join(from), to).unwrap();
    cp("keel-ca.pem", &tls.join("ca.pem"));
    cp("server.pem", &tls.join("server.pem"));
    cp("server.key", &tls.join("server.key"));
    cp("keel-ca.pem", &me.join("ca.pem"));
    cp("client.pem", &me.join("client.pem"));
    cp("client.key", &me.join("client.key"));
    cp("keel-ca.pem", &them.join("ca.pem"));
    cp("intruder.pem", &them.join("client.pem"));
    cp("intruder.key", &them.join("client.key"));
    (tls, me, them)
}

fn config(dir: &Path) -> PathBuf {
    let bb = busybox_image();
    let mut c = format!("version = 1\nname = \"api\"\n\n{}cmdline = \"quiet\"\n", kernel_toml());
    c.push_str(
        "\n[host]\non-exit = \"wait\"\nshutdown-grace = \"3s\"\n\n[api]\nlisten = \"0.0.0.0:9443\"\ntls = \"tls\"\n",
    );
    c.push_str("\n[[network]]\nname = \"front\"\negress = true\n");
    let containers = [
        ("beat", "", "trap 'exit 0' TERM; while true; do echo beat; sleep 0.5; done"),
        ("crash", "restart-delay = \"1s\"\nrestart-max-delay = \"2s\"\n", "echo crash; exit 1"),
        (
            "prober",
            "networks = [\"front\"]\n",
            "for a in 10.0.2.15 169.254.1.1; do out=$(echo x | nc -w 5 $a 9443 2>&1); echo \"RESULT api-$a rc=$? $out\"; done; \
             echo DONE; trap 'exit 0' TERM; while true; do sleep 1; done",
        ),
    ];
    for (name, extra, body) in containers {
        c.push_str(&format!(
            "\n[[container]]\nname = \"{name}\"\nimage = \"{bb}\"\ncommand = [\"/bin/sh\", \"-c\", '''{body}''']\n{extra}"
        ));
    }
    let path = dir.join("api.toml");
    std::fs::write(&path, c).unwrap();
    path
}

/// curl with `identity` (a dir with ca.pem, client.pem, client.key; `None`: no client cert).
fn curl(port: u16, identity: Option<&Path>, method: &str, path: &str, extra: &[&str]) -> Output {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-m", "20", "--tlsv1.3", "-X", method]);
    if let Some(id) = identity {
        cmd.arg("--cacert")
            .arg(id.join("ca.pem"))
            .arg("--cert")
            .arg(id.join("client.pem"))
            .arg("--key")
            .arg(id.join("client.key"));
    }
    cmd.args(extra);
    cmd.arg(format!("https://127.0.0.1:{port}{path}"));
    cmd.output().expect("run curl")
}

fn json(o: &Output, what: &str) -> serde_json::Value {
    assert!(o.status.success(), "{what}: curl failed: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {}", String::from_utf8_lossy(&o.stdout)))
}

fn keel(port: u16, id: &Path, args: &[&str]) -> Output {
    Command::new(keel_bin())
        .args(args)
        .env("KEEL_ENDPOINT", format!("127.0.0.1:{port}"))
        .env("KEEL_IDENTITY", id)
        .output()
        .expect("run keel")
}

fn out(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// `keel_api_handshake_failures_total` summed over reasons.
fn refusals(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("keel_api_handshake_failures_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn metric(port: u16, me: &Path) -> String {
    let o = curl(port, Some(me), "GET", "/metrics", &[]);
    assert!(o.status.success(), "metrics: {}", out(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The whole API check on `arch`; the hostile clients run against the x86_64 boot only (one
/// boot is enough to show they cannot stall PID 1, and TCG aarch64 is the slower guest).
fn api(arch: Arch) {
    let dir = tempfile::tempdir().unwrap();
    let (_, me, them) = certificates(dir.path());
    let cfg = config(dir.path());
    let b = build(&cfg.to_string_lossy(), arch, &format!("api-{arch}-{}", std::process::id()));
    let port = free_port();
    let mut vm_cfg = tcg_disk(arch, &b.img);
    vm_cfg.disk_snapshot = false; // the audit log is read from keel-data afterwards
    vm_cfg.net =
        Some(UserNet { publish: vec![Publish { udp: false, host: port, guest: 9443 }], guest_forwards: vec![] });
    let mut vm = Vm::start(&vm_cfg).expect("start QEMU");
    let booted = Instant::now();
    wait_until(&mut vm, "the API and the prober's results", Duration::from_secs(400), arch, |lines| {
        lines.iter().any(|l| l.text.contains("api: listening on 0.0.0.0:9443"))
            && lines.iter().any(|l| l.text.contains("prober| DONE"))
    });
    // The lease (and so the forwarded port) may come a little later.
    let deadline = Instant::now() + Duration::from_secs(120);
    let host = loop {
        let o = curl(port, Some(&me), "GET", "/v1/host", &[]);
        if o.status.success() || Instant::now() > deadline {
            break json(&o, "GET /v1/host");
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    println!("ready {:.1}s after boot", booted.elapsed().as_secs_f64());
    assert_eq!(host["hostname"], "api", "{host}");
    assert_eq!(host["image"]["name"], "api");
    let deb_arch = match arch {
        Arch::X86_64 => "amd64",
        Arch::Aarch64 => "arm64",
    };
    assert!(host["kernel"].as_str().is_some_and(|k| k.contains(deb_arch)), "{host}");
    assert!(host["timeline"].as_array().is_some_and(|t| t.iter().any(|e| e["event"] == "disks-mounted")), "{host}");

    // GET /v1/containers: timed under TCG.
    let t = Instant::now();
    let list = json(&curl(port, Some(&me), "GET", "/v1/containers", &[]), "GET /v1/containers");
    let latency = t.elapsed();
    println!("GET /v1/containers (curl, TLS handshake included): {} ms", latency.as_millis());
    let names: Vec<&str> = list.as_array().unwrap().iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(names, ["beat", "crash", "prober"], "{list}");
    let beat = json(&curl(port, Some(&me), "GET", "/v1/containers/beat", &[]), "GET /v1/containers/beat");
    assert_eq!(beat["state"], "running", "{beat}");
    assert!(beat["memory_bytes"].as_u64().is_some_and(|m| m > 0), "{beat}");
    let prober = json(&curl(port, Some(&me), "GET", "/v1/containers/prober", &[]), "prober");
    assert_eq!(prober["networks"][0]["network"], "front", "{prober}");
    let missing = curl(port, Some(&me), "GET", "/v1/containers/nope", &["-w", "%{http_code}"]);
    assert!(String::from_utf8_lossy(&missing.stdout).ends_with("404"), "{}", out(&missing));
    let events = json(&curl(port, Some(&me), "GET", "/v1/events", &[]), "GET /v1/events");
    assert!(events.as_array().unwrap().iter().any(|e| e["kind"] == "start" && e["container"] == "beat"), "{events}");
    let logs = curl(port, Some(&me), "GET", "/v1/containers/beat/logs?tail=3", &[]);
    let logs = String::from_utf8_lossy(&logs.stdout).into_owned();
    assert_eq!(logs.lines().count(), 3, "{logs}");
    assert!(logs.lines().all(|l| l.ends_with(" out beat")), "{logs}");

    // Metrics: promtool accepts them.
    let m = metric(port, &me);
    let mfile = dir.path().join("metrics.txt");
    std::fs::write(&mfile, &m).unwrap();
    let check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&mfile).unwrap())
        .output()
        .expect("run promtool (Debian's prometheus package)");
    assert!(check.status.success(), "promtool check metrics: {}\n{m}", out(&check));
    assert!(m.contains("keel_container_restarts_total{container=\"crash\"}"), "{m}");

    // Refusals at the handshake, counted.
    let before = refusals(&m);
    let none = curl(port, None, "GET", "/v1/host", &["--cacert", &me.join("ca.pem").to_string_lossy()]);
    assert!(!none.status.success() && none.stdout.is_empty(), "no client cert was served: {}", out(&none));
    let other = curl(port, Some(&them), "GET", "/v1/host", &[]);
    assert!(!other.status.success() && other.stdout.is_empty(), "another CA's cert was served: {}", out(&other));
    let plain =
        Command::new("curl").args(["-sS", "-m", "10", &format!("http://127.0.0.1:{port}/v1/host")]).output().unwrap();
    assert!(
        !plain.status.success() && !String::from_utf8_lossy(&plain.stdout).contains("hostname"),
        "plaintext: {}",
        out(&plain)
    );
    let after = refusals(&metric(port, &me));
    assert!(after >= before + 3, "refusals counted {before} → {after}");

    if arch == Arch::X86_64 {
        hostile_clients(&mut vm, port, &me);
    }

    // Restart through keel, seen in ps, events and on the console.
    let r = keel(port, &me, &["restart", "beat"]);
    assert!(r.status.success(), "keel restart: {}", out(&r));
    let deadline = Instant::now() + Duration::from_secs(60);
    let beat = loop {
        let v = json(&curl(port, Some(&me), "GET", "/v1/containers/beat", &[]), "beat");
        if (v["restarts"] == 1 && v["state"] == "running") || Instant::now() > deadline {
            break v;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(beat["restarts"], 1, "{beat}");
    let ps = keel(port, &me, &["ps"]);
    let ps_text = out(&ps);
    println!("keel ps:\n{ps_text}");
    assert!(ps.status.success() && ps_text.starts_with("NAME"), "{ps_text}");
    assert!(ps_text.lines().any(|l| l.starts_with("beat ") && l.contains("running")), "{ps_text}");
    let ev = out(&keel(port, &me, &["events"]));
    assert!(ev.contains("POST /v1/containers/beat/restart by CN=ops"), "{ev}");
    assert!(ev.lines().any(|l| l.contains("restart") && l.contains("container beat restarted")), "{ev}");
    let nope = keel(port, &me, &["restart", "nope"]);
    assert!(!nope.status.success() && out(&nope).contains("no such container: nope"), "{}", out(&nope));
    let refused = keel(port, &them, &["ps"]);
    assert!(
        !refused.status.success() && out(&refused).contains("refused this client's certificate"),
        "{}",
        out(&refused)
    );
    let unreachable = Command::new(keel_bin())
        .args(["ps", "--endpoint", &format!("127.0.0.1:{}", free_port()), "--identity"])
        .arg(&me)
        .output()
        .unwrap();
    assert!(out(&unreachable).contains("cannot reach"), "{}", out(&unreachable));
    let tail = keel(port, &me, &["logs", "beat", "--tail", "2"]);
    assert_eq!(String::from_utf8_lossy(&tail.stdout).lines().count(), 2, "{}", out(&tail));
    // keel logs -f shows new lines as they come.
    let follow_file = dir.path().join("follow.txt");
    let mut follow = Command::new(keel_bin())
        .args(["logs", "beat", "-f", "--tail", "1"])
        .env("KEEL_ENDPOINT", format!("127.0.0.1:{port}"))
        .env("KEEL_IDENTITY", &me)
        .stdout(std::fs::File::create(&follow_file).unwrap())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let _ = follow.kill();
    let _ = follow.wait();
    let followed = std::fs::read_to_string(&follow_file).unwrap();
    assert!(followed.lines().filter(|l| l.ends_with(" out beat")).count() >= 4, "keel logs -f: {followed}");

    // Containers cannot reach the API.
    let lines = vm.lines();
    for addr in ["10.0.2.15", "169.254.1.1"] {
        let r = lines
            .iter()
            .find(|l| l.text.contains(&format!("RESULT api-{addr} ")))
            .map(|l| l.text.clone())
            .unwrap_or_default();
        // Refused by the firewall (the uplink address), or no route at all (the gateway address).
        assert!(
            r.contains("rc=1") && (r.contains("refused") || r.contains("unreachable")),
            "a container reached the API at {addr}: {r}"
        );
    }

    // keel poweroff: a clean power-off.
    let p = keel(port, &me, &["poweroff"]);
    assert!(p.status.success(), "keel poweroff: {}", out(&p));
    let status = vm.wait_exit(Duration::from_secs(120)).expect("the guest powers off");
    let console = vm.console();
    assert!(status.success(), "QEMU exited with {status}:\n{console}");
    assert!(vm.lines().iter().any(|l| l.text.contains(POWER_DOWN_LINE)), "no clean power-off:\n{console}");
    assert!(console.contains("api: POST /v1/containers/beat/restart by CN=ops"), "{console}");

    // The audit log on keel-data.
    let parts = partitions(&b.img);
    let data = parts.iter().find(|p| p.name == keel_plan::DATA_LABEL).expect("a keel-data partition");
    let fs = b.dir.join("keel-data.ext4");
    extract(&b.img, data, &fs);
    let (audit, err) = debugfs(&fs, "cat /audit/api.log");
    let _ = std::fs::remove_dir_all(&b.dir);
    println!("audit log:\n{audit}");
    for call in ["POST /v1/containers/beat/restart", "POST /v1/host/poweroff"] {
        let line = audit
            .lines()
            .find(|l| l.contains(&format!("\"call\":\"{call}\"")))
            .unwrap_or_else(|| panic!("{call} not audited: {audit} {err}"));
        // One JSON object per record, with the client's address (QEMU's user-net gateway).
        let json = &line[line.find('{').unwrap_or_else(|| panic!("no JSON in {line}"))..];
        let record: serde_json::Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(record["subject"], "CN=ops,O=keel tests", "{line}");
        assert_eq!(record["sha256"].as_str().map(str::len), Some(64), "{line}");
        assert_eq!(record["peer"], "10.0.2.2", "{line}");
    }
    // An unknown container is answered by the server thread: it never reaches the supervisor.
    assert!(!audit.contains("nope"), "an unknown name was audited: {audit}");
}

/// Hostile clients while the heartbeat and the crash loop go on: 1000 silent TCP connections
/// (far past the connection limits), garbage instead of TLS, a TLS client sending its head one
/// byte at a time, and a 1 MiB header. The API keeps answering; the heartbeat's worst gap and
/// the crash loop's worst restart interval are printed and bounded.
fn hostile_clients(vm: &mut Vm, port: u16, me: &Path) {
    let attack_start = vm.lines().last().map(|l| l.at).unwrap_or_default();
    let guest_start = timeline(&vm.lines(), "container-start", "crash").last().copied().unwrap_or(0.0);
    // 1000 connection attempts from 50 threads. QEMU's user network accepts each on the host
    // (its listen backlog is 1, so attempts queue there) and opens one to the guest; all of
    // them come from one address there (10.0.2.2). Each attempt waits at most 5 s.
    let flood = Instant::now();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut silent: Vec<TcpStream> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..50)
            .map(|_| {
                s.spawn(move || {
                    (0..20)
                        .filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        threads.into_iter().flat_map(|t| t.join().unwrap()).collect()
    });
    println!("1000 connection attempts: {} connected in {:.1}s", silent.len(), flood.elapsed().as_secs_f64());
    // More than the server's 16 at once, so its limits were what turned the rest away.
    assert!(silent.len() > 16, "only {} connections got through", silent.len());
    let mut garbage = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let _ = garbage.write_all(&[0x42; 4096]);
    // A slow TLS client: a real handshake, then a header one byte a second.
    let mut slow = s_client(port, me, Stdio::null());
    let mut stdin = slow.stdin.take().unwrap();
    for b in b"GET /v1/host HTTP/1.1\r\nHost: x\r\n".iter() {
        let _ = stdin.write_all(&[*b]);
        let _ = stdin.flush();
        std::thread::sleep(Duration::from_millis(400));
    }
    // Keep the silent ones open a while longer; the API must still answer meanwhile.
    let during = curl(port, Some(me), "GET", "/v1/containers/beat", &[]);
    std::thread::sleep(Duration::from_secs(3));
    for s in silent.iter_mut() {
        let _ = s.write_all(b"\x16");
    }
    drop(silent);
    drop(stdin);
    let _ = slow.kill();
    let _ = slow.wait();
    let mut rest = Vec::new();
    let _ = garbage.read_to_end(&mut rest);
    // The silent connections were cut at the handshake deadline (past the per-address limit,
    // closed at once), the slow one at the request deadline; now a 1 MiB header (sent by
    // openssl s_client: curl will not send one) is refused with 431, or cut while openssl is
    // still sending; never answered.
    let oversized = big_header(port, me);
    let lines = vm.lines();
    let attack_end = lines.last().map(|l| l.at).unwrap_or_default();
    let beats: Vec<Duration> = lines
        .iter()
        .filter(|l| l.text.contains("beat| beat") && l.at >= attack_start && l.at <= attack_end)
        .map(|l| l.at)
        .collect();
    let worst_beat = beats.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default();
    let starts: Vec<f64> =
        timeline(&lines, "container-start", "crash").into_iter().filter(|&t| t >= guest_start).collect();
    let worst_restart = starts.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    println!(
        "attack {:.1}s: {} beats, worst gap {} ms (beat every 500 ms); crash restarts {}, worst interval {:.2}s (delay 2 s)",
        (attack_end - attack_start).as_secs_f64(),
        beats.len(),
        worst_beat.as_millis(),
        starts.len(),
        worst_restart
    );
    println!("1 MiB header: {oversized:?}");
    assert!(oversized.is_empty() || oversized.starts_with("HTTP/1.1 431"), "1 MiB header answered: {oversized}");
    let after = curl(port, Some(me), "GET", "/v1/host", &[]);
    assert!(after.status.success(), "the API stopped answering after the 1 MiB header: {}", out(&after));
    assert!(during.status.success(), "the API stopped answering during the attack: {}", out(&during));
    assert!(beats.len() >= 10, "too few beats during the attack: {}", beats.len());
    assert!(worst_beat < Duration::from_millis(2500), "heartbeat late by {} ms", worst_beat.as_millis());
    assert!(starts.len() >= 3 && worst_restart < 4.0, "crash loop's restarts: {starts:?}");
    let m = metric(port, me);
    assert!(m.contains("keel_api_connections_refused_total"), "{m}");
}

/// `openssl s_client` connected to the API with this client's identity, its stdin piped.
fn s_client(port: u16, me: &Path, stdout: Stdio) -> std::process::Child {
    Command::new("openssl")
        .args(["s_client", "-quiet", "-tls1_3", "-connect", &format!("127.0.0.1:{port}")])
        .arg("-cert")
        .arg(me.join("client.pem"))
        .arg("-key")
        .arg(me.join("client.key"))
        .arg("-CAfile")
        .arg(me.join("ca.pem"))
        .stdin(Stdio::piped())
        .stdout(stdout)
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_client")
}

/// A request whose one header is 1 MiB, over TLS with this client's identity; the first line
/// of the answer, if any.
fn big_header(port: u16, me: &Path) -> String {
    let mut c = s_client(port, me, Stdio::piped());
    let mut stdin = c.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let head = format!("GET /v1/host HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(1 << 20));
        let _ = stdin.write_all(head.as_bytes());
        // Held open a moment so s_client reads the answer before its stdin ends.
        std::thread::sleep(Duration::from_secs(5));
    });
    let mut answer = String::new();
    let _ = c.stdout.take().unwrap().read_to_string(&mut answer);
    let _ = writer.join();
    let _ = c.kill();
    let _ = c.wait();
    answer.lines().next().unwrap_or("").to_string()
}

both_arches!(api);
