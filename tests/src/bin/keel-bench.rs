//! `make bench`: for configs/hello.toml on x86_64 under TCG, in one run:
//! - the boot timeline beside a baseline boot of the same kernel with a trivial static init that
//!   powers off at once, and the ratio of time-to-first-container-output to time-to-init;
//! - the size of each part (kernel, modules, init, plan, images, initramfs, UKI, disk allocated);
//! - the `keel build` wall time.
//!
//! Boots are repeated (`KEEL_BENCH_RUNS`, default 3) and medians reported; baseline and keel
//! boots alternate so machine noise hits both alike.
//!
//! Then the container start latency of keel-runtime, crun and runc on the build host
//! ([`runtime`]; needs root). `keel-bench boot` runs only the first part, `keel-bench runtime`
//! only the second. `keel-bench trust` ([`trust`]) compares builds and boots with dm-verity off
//! and on, and with signing.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use keel_builder::initramfs::{self, Entry, Kind};
use keel_plan::{Arch, TIMELINE_PREFIX};
use keel_qemu::{Boot, VmConfig};
use keel_tests::{keel, root, text};

#[path = "keel-bench/net.rs"]
mod net;
#[path = "keel-bench/runtime.rs"]
mod runtime;
#[path = "keel-bench/trust.rs"]
mod trust;

const TIMEOUT: Duration = Duration::from_secs(300);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        [] => bench().and_then(|()| runtime::bench()).and_then(|()| net::bench()),
        ["boot"] => bench(),
        ["runtime"] => runtime::bench(),
        ["net"] => net::bench(),
        ["trust"] => trust::bench(runs()),
        ["runtime-worker", bundle] => runtime::worker(bundle),
        _ => Err("usage: keel-bench [boot | runtime | net | trust]".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keel-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One boot's marks: (event, guest seconds since boot, host seconds since QEMU start).
type Marks = Vec<(String, f64, f64)>;

fn bench() -> Result<(), String> {
    let arch = Arch::X86_64;
    let runs = runs();
    let out = root().join("target/keel-bench");
    let out_s = out.to_string_lossy().into_owned();

    // Build time: two builds, report each.
    let mut build_times = Vec::new();
    let mut log = String::new();
    let mut built_stdout = Vec::new();
    for _ in 0..2 {
        let t = Instant::now();
        let o = keel(&["build", "configs/hello.toml", "--arch", arch.name(), "-o", &out_s, "--json"]);
        build_times.push(t.elapsed().as_secs_f64());
        log = text(&o);
        built_stdout = o.stdout.clone();
        if !o.status.success() {
            return Err(format!("keel build failed:\n{log}"));
        }
    }
    let stem = out.join(format!("hello-{arch}"));
    let file = |ext: &str| PathBuf::from(format!("{}.{ext}", stem.display()));
    let cmdline = std::fs::read_to_string(file("cmdline")).map_err(|e| e.to_string())?.trim().to_string();

    // The baseline initramfs: /dev/console and a static init that powers off at once.
    let trivial = root().join("target").join(arch.musl_triple()).join("release/trivial-init");
    let init = std::fs::read(&trivial).map_err(|e| format!("{}: {e} (run `make build`)", trivial.display()))?;
    let baseline = out.join("trivial.initrd");
    let entries = [
        Entry::dir("dev"),
        Entry { path: "dev/console".into(), mode: 0o600, kind: Kind::CharDev(5, 1) },
        Entry::file("init", 0o755, init),
    ];
    std::fs::write(&baseline, initramfs::build(&entries).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;

    let qarch = keel_qemu::Arch::X86_64;
    let direct = |initrd: &Path, disk: Option<PathBuf>| {
        VmConfig::new(
            qarch,
            Boot::Kernel {
                kernel: file("vmlinuz"),
                initrd: Some(initrd.to_path_buf()),
                cmdline: cmdline.clone(),
                disk,
            },
        )
    };
    let mut trivial_runs = Vec::new();
    let mut keel_runs = Vec::new();
    let mut uefi_runs = Vec::new();
    for i in 0..runs {
        eprintln!("run {}/{runs}: trivial init, keel (direct kernel boot), keel (UEFI disk boot)", i + 1);
        trivial_runs.push(boot(&direct(&baseline, None))?);
        keel_runs.push(boot(&direct(&file("initrd"), Some(file("img"))))?);
        // With a NIC on QEMU's restricted user network, so the uplink's DHCP runs as it would.
        let mut uefi = VmConfig::new(qarch, Boot::Disk(file("img")));
        uefi.net = Some(keel_qemu::UserNet::default());
        uefi_runs.push(boot(&uefi)?);
    }

    println!("keel bench: configs/hello.toml, {arch}, QEMU TCG, 1 vCPU, median of {runs} boots");
    println!();
    println!("boot timeline (direct kernel boot of the same kernel and command line: `{cmdline}`)");
    println!("  {:<36} {:>10} {:>10}", "event", "guest s", "host s");
    let t_guest = median(&trivial_runs, "trivial-init", |m| m.1)?;
    let t_host = median(&trivial_runs, "trivial-init", |m| m.2)?;
    println!("  {:<36} {:>10.3} {:>10.3}", "baseline: trivial init up", t_guest, t_host);
    let events = [
        "init-start",
        "modules-loaded",
        "disks-mounted",
        "container-start",
        "container-first-output",
        "container-exit",
        "shutdown-begin",
        "shutdown-end",
    ];
    for e in events {
        if let (Ok(g), Ok(h)) = (median(&keel_runs, e, |m| m.1), median(&keel_runs, e, |m| m.2)) {
            println!("  {:<36} {:>10.3} {:>10.3}", format!("keel: {e}"), g, h);
        }
    }
    let k_guest = median(&keel_runs, "container-first-output", |m| m.1)?;
    let k_host = median(&keel_runs, "container-first-output", |m| m.2)?;
    println!();
    println!(
        "ratio, time to first container output / time to trivial init: {:.2}x guest clock, {:.2}x host wall",
        k_guest / t_guest,
        k_host / t_host
    );
    let u_host = median(&uefi_runs, "container-first-output", |m| m.2)?;
    let u_guest = median(&uefi_runs, "container-first-output", |m| m.1)?;
    let u_end = median(&uefi_runs, "poweroff", |m| m.2)?;
    println!(
        "UEFI disk boot (OVMF + systemd-stub): first container output at {u_host:.3}s host wall \
         ({u_guest:.3}s on the guest clock), powered off at {u_end:.3}s"
    );
    let dhcp: Vec<f64> = uefi_runs
        .iter()
        .filter_map(|m| {
            let at = |e: &str| m.iter().find(|(x, _, _)| x == e).map(|x| x.1);
            Some(at("uplink-lease")? - at("uplink-dhcp-start")?)
        })
        .collect();
    match dhcp.as_slice() {
        [] => println!("DHCP: no lease before power-off in any UEFI boot"),
        d => println!(
            "DHCP from QEMU's user network: lease {:.3}s of guest time after the first DISCOVER (median of {} boots)",
            median_of(d),
            d.len()
        ),
    }

    println!();
    println!("sizes (bytes)");
    let summary: serde_json::Value =
        serde_json::from_slice(&built_stdout).map_err(|e| format!("keel build --json: {e}\n{log}"))?;
    for part in summary["parts"].as_array().ok_or("keel build --json has no parts")? {
        println!("  {:<12} {:>12}", part["name"].as_str().unwrap_or("?"), part["size"].as_u64().unwrap_or(0));
    }
    let img = std::fs::metadata(file("img")).map_err(|e| e.to_string())?;
    println!("  {:<12} {:>12}  (of {} apparent)", "disk alloc", img.blocks() * 512, img.len());
    println!();
    println!(
        "keel build wall time, two runs: {}",
        build_times.iter().map(|t| format!("{t:.2}s")).collect::<Vec<_>>().join(", ")
    );
    Ok(())
}

/// How many times each boot is repeated: `KEEL_BENCH_RUNS`, default 3.
fn runs() -> usize {
    std::env::var("KEEL_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(3).max(1)
}

fn median_of(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Boot once and collect the marks: keel's timeline, the trivial init's line, power-off.
fn boot(cfg: &VmConfig) -> Result<Marks, String> {
    let outcome = keel_qemu::run_to_exit(cfg, TIMEOUT).map_err(|e| e.to_string())?;
    if !outcome.clean_poweroff {
        return Err(format!("guest did not power off cleanly:\n{}", outcome.console));
    }
    let mut marks = Marks::new();
    for l in &outcome.lines {
        let host = l.at.as_secs_f64();
        if let Some(rest) = l.text.split(TIMELINE_PREFIX).nth(1) {
            let mut w = rest.split_whitespace();
            if let (Some(t), Some(ev)) = (w.next().and_then(|t| t.parse::<f64>().ok()), w.next()) {
                if !marks.iter().any(|(e, _, _)| e == ev) {
                    marks.push((ev.to_string(), t, host));
                }
            }
        } else if let Some(t) = l.text.split("trivial-init: up at ").nth(1) {
            marks.push(("trivial-init".into(), t.trim().parse().unwrap_or(f64::NAN), host));
        } else if l.text.contains("reboot: Power down") {
            let guest = l.text.split(']').next().and_then(|s| s.trim_start_matches('[').trim().parse().ok());
            marks.push(("poweroff".into(), guest.unwrap_or(f64::NAN), host));
        }
    }
    Ok(marks)
}

fn median(runs: &[Marks], event: &str, pick: impl Fn(&(String, f64, f64)) -> f64) -> Result<f64, String> {
    let mut v: Vec<f64> = runs
        .iter()
        .filter_map(|m| m.iter().find(|(e, _, _)| e == event))
        .map(&pick)
        .filter(|x| x.is_finite())
        .collect();
    if v.is_empty() {
        return Err(format!("no `{event}` in any boot"));
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Ok(v[v.len() / 2])
}
