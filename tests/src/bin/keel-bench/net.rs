//! `keel-bench net`: what networking costs, on the build host, inside a throwaway network
//! namespace (the benchmark re-runs itself under `unshare -n`, so the host's own network is never
//! touched).
//!
//! - Container start with networking against without: keel-runtime on the same read-only busybox
//!   bundle, `--network` giving it a veth exactly as keel-init does (keel-net's
//!   `container::setup`), interleaved rounds, medians and p90s, the
//!   difference and the ratio (goal: at most +3 ms median).
//! - rtnetlink requests per start, and nftables batches per start (none: keel-init loads the
//!   whole table once at boot, since every address is known from the config).
//! - 50 containers on one host: the table for a config with 50 containers on 5 networks, 10
//!   links and 10 published ports (messages, bytes, median load time of 10 loads), and the
//!   kernel memory that 50 veths with their addresses and routes take (MemAvailable before and
//!   after, with 50 namespaces already made).

use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use keel_builder::config::Config;
use keel_tests::root;

use crate::runtime::{make_bundle, percentile, read_only_bundle, require_root, time};

/// Set in the re-run under `unshare -n`.
const IN_NETNS: &str = "KEEL_BENCH_IN_NETNS";
/// Containers in the "many" part.
const MANY: usize = 50;

/// `keel-bench net`.
pub fn bench() -> Result<(), String> {
    require_root()?;
    if std::env::var_os(IN_NETNS).is_none() {
        let me = std::env::current_exe().map_err(|e| e.to_string())?;
        let e = Command::new("unshare").args(["-n", "--"]).arg(me).arg("net").env(IN_NETNS, "1").exec();
        return Err(format!("re-run under unshare -n: {e}"));
    }
    let rounds: usize = std::env::var("KEEL_BENCH_NET_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(60).max(5);
    let keel_runtime = root().join("target/release/keel-runtime");
    if !keel_runtime.is_file() {
        return Err(format!("{} is missing: run `cargo build --release -p keel-runtime-cli`", keel_runtime.display()));
    }
    let work = tempfile::Builder::new().prefix("keel-bench-net").tempdir().map_err(|e| e.to_string())?;
    let bundle = read_only_bundle(work.path(), &make_bundle(work.path())?)?;
    let rt = keel_runtime.to_string_lossy().into_owned();
    let b = bundle.to_string_lossy().into_owned();
    let plain = |_: usize| vec![rt.clone(), "run".into(), "--bundle".into(), b.clone(), "kb-plain".into()];
    // A fresh id (so a fresh host veth name) per round: the namespace of the last run is torn
    // down asynchronously.
    let networked = |r: usize| {
        vec![
            rt.clone(),
            "run".into(),
            "--bundle".into(),
            b.clone(),
            "--network".into(),
            "10.89.0.2".into(),
            format!("kb{r}"),
        ]
    };
    let mut times: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    eprintln!("net bench: 3 warm-up rounds, then {rounds} rounds of keel-runtime with and without a network");
    for round in 0..3 + rounds {
        for k in 0..2 {
            let which = (round + k) % 2;
            let argv = if which == 0 { plain(round) } else { networked(round) };
            let t = time(&argv)?;
            if round >= 3 {
                times[which].push(t);
            }
        }
    }
    let requests = request_count(&rt, &b)?;
    let stats = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        (percentile(v, 0.5), percentile(v, 0.9))
    };
    let (p_med, p_90) = stats(&mut times[0]);
    let (n_med, n_90) = stats(&mut times[1]);
    println!();
    println!("container start with and without a network ({rounds} interleaved rounds, read-only busybox bundle)");
    println!("  {:<34} {:>10} {:>10}", "command", "median ms", "p90 ms");
    println!("  {:<34} {:>10.2} {:>10.2}", "keel-runtime", p_med, p_90);
    println!("  {:<34} {:>10.2} {:>10.2}", "keel-runtime --network", n_med, n_90);
    println!(
        "  networking adds {:+.2} ms median ({:.2}x), {:+.2} ms p90   (goal: <= +3 ms median)",
        n_med - p_med,
        n_med / p_med,
        n_90 - p_90
    );
    println!("  rtnetlink requests per networked start: {requests}");
    println!("  nftables batches per start: 0 (keel-init loads the whole table in 1 batch at boot)");
    many()?;
    Ok(())
}

/// The rtnetlink requests of one networked start, as keel-runtime reports them.
fn request_count(rt: &str, bundle: &str) -> Result<u64, String> {
    let out = Command::new(rt)
        .args(["run", "--bundle", bundle, "--network", "10.89.0.2", "kb-count"])
        .env("KEEL_RUNTIME_TIMING", "1")
        .stdout(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    let err = String::from_utf8_lossy(&out.stderr);
    err.lines()
        .find_map(|l| l.split_once("network: ")?.1.strip_suffix(" rtnetlink requests")?.parse().ok())
        .ok_or_else(|| format!("keel-runtime printed no request count:\n{err}"))
}

/// The config of the "many" part: MANY containers on 5 networks, 10 links, 10 published ports.
fn many_config() -> String {
    let mut c = format!(
        "version = 1\nname = \"many\"\n[disk]\ndata-size = \"1GiB\"\n[kernel]\npackage.x86_64 = {{ path = \"k.deb\", sha256 = \"{0}\" }}\n",
        "0".repeat(64)
    );
    for n in 0..5 {
        c.push_str(&format!("[[network]]\nname = \"n{n}\"\negress = {}\n", n == 0));
    }
    for i in 0..MANY {
        c.push_str(&format!("[[container]]\nname = \"c{i}\"\nimage = \"oci:x\"\nnetworks = [\"n{}\"]\n", i % 5));
        if i < 10 {
            c.push_str(&format!("ports = [\"{}:80\"]\n", 8000 + i));
        }
    }
    for l in 0..10 {
        c.push_str(&format!("[[link]]\nfrom = \"c{l}\"\nto = \"c{}\"\nports = [\"5432/tcp\"]\n", l + 11));
    }
    c
}

fn mem_available_kib() -> Result<u64, String> {
    let m = std::fs::read_to_string("/proc/meminfo").map_err(|e| e.to_string())?;
    m.lines()
        .find_map(|l| l.strip_prefix("MemAvailable:")?.trim().strip_suffix(" kB")?.trim().parse().ok())
        .ok_or_else(|| "no MemAvailable in /proc/meminfo".into())
}

/// 50 containers: the table, and their veths.
fn many() -> Result<(), String> {
    let config = Config::parse(Path::new("many.toml"), many_config()).map_err(|e| e.to_string())?;
    let plan = keel_builder::netplan::plan(&config)?;
    let fw = &plan.net.firewall;
    let batch = keel_net::nft::batch(fw, Some("eth0"), 1);
    let stats = keel_net::nft::stats(&batch);
    let mut loads = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        keel_net::nft::apply(&batch).map_err(|e| e.to_string())?;
        loads.push(t.elapsed().as_secs_f64() * 1e3);
    }
    loads.sort_by(|a, b| a.total_cmp(b));
    println!();
    println!("{MANY} containers on 5 networks, 10 links, 10 published ports, 1 egress network");
    println!(
        "  nftables: 1 batch of {} messages, {} bytes ({} flows, {} egress, {} published); load median {:.2} ms",
        stats.messages,
        stats.bytes,
        fw.flows.len(),
        fw.egress.len(),
        fw.publish.len(),
        percentile(&loads, 0.5)
    );
    // One namespace per container, held by a sleeping child.
    let mut children: Vec<Child> = Vec::new();
    let result = (|| -> Result<(), String> {
        for _ in 0..MANY {
            children.push(
                Command::new("unshare").args(["-n", "sleep", "600"]).spawn().map_err(|e| format!("unshare: {e}"))?,
            );
        }
        // Let each child reach its own namespace.
        std::thread::sleep(std::time::Duration::from_millis(500));
        let before = mem_available_kib()?;
        let t = Instant::now();
        let mut requests = 0;
        for (child, net) in children.iter().zip(plan.containers.iter().flatten()) {
            let ns = std::fs::File::open(format!("/proc/{}/ns/net", child.id())).map_err(|e| e.to_string())?;
            requests += keel_net::container::setup(Some(net), ns.as_fd(), 100_000).map_err(|e| e.to_string())?;
        }
        let took = t.elapsed().as_secs_f64() * 1e3;
        std::thread::sleep(std::time::Duration::from_millis(200));
        let after = mem_available_kib()?;
        println!(
            "  {MANY} veths set up in {took:.1} ms ({:.2} ms and {} rtnetlink requests each); MemAvailable fell {} KiB ({:.0} KiB each)",
            took / MANY as f64,
            requests / MANY as u64,
            before.saturating_sub(after),
            before.saturating_sub(after) as f64 / MANY as f64
        );
        Ok(())
    })();
    for c in &mut children {
        let _ = c.kill();
        let _ = c.wait();
    }
    result
}
