//! `keel-bench trust`: what the trust chain costs, in one run, for configs/hello.toml on x86_64
//! under TCG:
//! - `keel build` wall time and output sizes with verity off (`[disk] verity = false`), with
//!   verity on (the default), and with verity on and the UKI signed (the test key in
//!   `tests/fixtures/signing`); builds alternate, medians of `KEEL_BENCH_RUNS` (default 3);
//! - UEFI disk boots with verity off and on, alternating: keel-init's `disks-mounted` and
//!   `container-first-output` marks, medians, and the ratio on against off.

use std::path::{Path, PathBuf};
use std::time::Instant;

use keel_plan::Arch;
use keel_qemu::{Boot, VmConfig};
use keel_tests::{keel, root, text};

use crate::{boot, median, median_of};

/// One way of building hello.
struct Variant {
    name: &'static str,
    /// TOML appended to hello's config.
    extra: String,
    build_secs: Vec<f64>,
    img: PathBuf,
    efi: PathBuf,
}

/// `keel-bench trust`.
pub fn bench(runs: usize) -> Result<(), String> {
    let arch = Arch::X86_64;
    let work = root().join("target/keel-bench/trust");
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let hello = std::fs::read_to_string(root().join("configs/hello.toml")).map_err(|e| e.to_string())?;
    // The config is written elsewhere, so its relative paths are made absolute.
    let hello = hello.replace("../.cache/", &format!("{}/.cache/", root().display()));
    let fixtures = root().join("tests/fixtures/signing");
    let signing = format!(
        "\n[signing]\nkey = \"{}\"\ncert = \"{}\"\n",
        fixtures.join("test-db.key").display(),
        fixtures.join("test-db.pem").display()
    );
    let mut variants: Vec<Variant> = [
        ("verity off", "\n[disk]\nverity = false\n".to_string()),
        ("verity on", String::new()),
        ("verity on, signed", signing),
    ]
    .into_iter()
    .map(|(name, extra)| Variant { name, extra, build_secs: Vec::new(), img: PathBuf::new(), efi: PathBuf::new() })
    .collect();

    for round in 0..runs {
        eprintln!("build round {}/{runs}", round + 1);
        for (i, v) in variants.iter_mut().enumerate() {
            let dir = work.join(format!("v{i}"));
            let config = work.join(format!("trust{i}.toml"));
            // `[disk]` and `[signing]` are whole tables, so they go after hello's last container.
            std::fs::write(&config, format!("{hello}{}", v.extra)).map_err(|e| e.to_string())?;
            let t = Instant::now();
            let o = keel(&["build", &config.to_string_lossy(), "--arch", arch.name(), "-o", &dir.to_string_lossy()]);
            v.build_secs.push(t.elapsed().as_secs_f64());
            if !o.status.success() {
                return Err(format!("keel build ({}) failed:\n{}", v.name, text(&o)));
            }
            // Outputs are named after the config's `name`, hello's.
            v.img = dir.join(format!("hello-{arch}.img"));
            v.efi = dir.join(format!("hello-{arch}.efi"));
        }
    }

    let mut off = Vec::new();
    let mut on = Vec::new();
    for round in 0..runs {
        eprintln!("boot round {}/{runs}: verity off, verity on", round + 1);
        off.push(boot(&VmConfig::new(keel_qemu::Arch::X86_64, Boot::Disk(variants[0].img.clone())))?);
        on.push(boot(&VmConfig::new(keel_qemu::Arch::X86_64, Boot::Disk(variants[1].img.clone())))?);
    }

    println!("keel bench trust: configs/hello.toml, {arch}, QEMU TCG, 1 vCPU, medians of {runs}");
    println!();
    println!("  {:<20} {:>10} {:>14} {:>14}", "build", "wall s", "UKI bytes", "disk bytes");
    let base = median_of(&variants[0].build_secs);
    for v in &variants {
        let t = median_of(&v.build_secs);
        println!(
            "  {:<20} {:>10.2} {:>14} {:>14}   ({:+.2} s, {:.2}x)",
            v.name,
            t,
            size(&v.efi),
            size(&v.img),
            t - base,
            t / base
        );
    }
    println!();
    println!("  {:<36} {:>12} {:>12} {:>8}", "boot (UEFI disk), host wall s", "verity off", "verity on", "ratio");
    for event in ["disks-mounted", "container-first-output", "poweroff"] {
        let (a, b) = (median(&off, event, |m| m.2)?, median(&on, event, |m| m.2)?);
        println!("  {:<36} {:>12.3} {:>12.3} {:>7.3}x", event, a, b, b / a);
    }
    Ok(())
}

fn size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}
