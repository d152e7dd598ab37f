//! `keel run`: boot a disk image under QEMU through UEFI, serial console on this terminal.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::Context;
use keel_builder::config::units;
use keel_qemu::{Accel, Arch, Boot, Firmware, VmConfig};

/// The flags of `keel run` besides the image.
#[derive(Debug)]
pub struct Flags<'a> {
    /// `--arch`.
    pub arch: Option<&'a str>,
    /// `--accel`.
    pub accel: Option<&'a str>,
    /// `--timeout`.
    pub timeout: &'a str,
    /// `--memory`.
    pub memory: Option<&'a str>,
    /// `--persist`.
    pub persist: bool,
    /// `--publish`, each.
    pub publish: &'a [String],
    /// `--secure-boot`, with its `--varstore`.
    pub secure_boot: Option<SecureBoot>,
}

/// `--secure-boot [--varstore FILE]`.
#[derive(Debug)]
pub struct SecureBoot {
    /// A variable store to boot a copy of, instead of Debian's snakeoil one.
    pub varstore: Option<PathBuf>,
}

/// Boot `image`; `Ok(true)` when the guest powered off cleanly.
pub fn run(image: &Path, flags: &Flags<'_>) -> anyhow::Result<bool> {
    if !image.is_file() {
        anyhow::bail!("{}: no such disk image", image.display());
    }
    let arch = match flags.arch {
        Some(a) => Arch::from_str(a).map_err(|e| anyhow::anyhow!("--arch: {e}"))?,
        None => arch_from_name(image).or_else(Arch::host).context("cannot tell the guest arch: pass --arch")?,
    };
    let accel = match flags.accel {
        Some(a) => Accel::from_str(a).map_err(|e| anyhow::anyhow!("--accel: {e}"))?,
        None => Accel::from_env_or_default().map_err(|e| anyhow::anyhow!("KEEL_ACCEL: {e}"))?,
    };
    let timeout = units::parse_duration(flags.timeout).map_err(|e| anyhow::anyhow!("--timeout: {e}"))?;
    let publish = flags
        .publish
        .iter()
        .map(|p| p.parse::<keel_qemu::Publish>().map_err(|e| anyhow::anyhow!("--publish: {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut cfg = VmConfig::new(arch, Boot::Disk(image.to_path_buf()));
    cfg.accel = accel;
    cfg.serial_echo = true;
    cfg.disk_snapshot = !flags.persist;
    let mut secure = String::new();
    if let Some(sb) = &flags.secure_boot {
        cfg.secure_boot = true;
        let mut fw = Firmware::find_secure_boot(arch)?;
        if let Some(varstore) = &sb.varstore {
            // keel-qemu boots a private copy of the template, so the file is never written.
            fw.vars_template = varstore.clone();
        }
        secure = format!(", Secure Boot with the varstore {}", fw.vars_template.display());
        cfg.firmware = Some(fw);
    }
    if !publish.is_empty() {
        for p in &publish {
            eprintln!("keel run: 127.0.0.1:{} → guest port {}{}", p.host, p.guest, if p.udp { "/udp" } else { "" });
        }
        cfg.net = Some(keel_qemu::UserNet { publish, guest_forwards: Vec::new() });
    }
    if let Some(m) = flags.memory {
        let bytes = units::parse_size(m).map_err(|e| anyhow::anyhow!("--memory: {e}"))?;
        cfg.memory_mib = u32::try_from(bytes >> 20).context("--memory is too large")?;
    }
    eprintln!("keel run: booting {} ({arch}, {accel}, timeout {}s{secure})", image.display(), timeout.as_secs());
    let outcome = keel_qemu::run_to_exit(&cfg, timeout)?;
    if outcome.clean_poweroff {
        eprintln!("keel run: the guest powered off cleanly after {:.1}s", outcome.wall.as_secs_f64());
    } else {
        eprintln!("keel run: the guest did not power off cleanly ({:.1}s)", outcome.wall.as_secs_f64());
    }
    Ok(outcome.clean_poweroff)
}

/// `NAME-aarch64.img` → aarch64.
fn arch_from_name(image: &Path) -> Option<Arch> {
    let stem = image.file_stem()?.to_string_lossy().into_owned();
    let (_, suffix) = stem.rsplit_once('-')?;
    Arch::from_str(suffix).ok()
}
