//! The kernel: a Debian linux-image package, read by the builder itself (ar + tar; no dpkg),
//! and the closure of modules the plan needs.

mod closure;
pub mod deb;
pub mod modinfo;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use keel_plan::Arch;

pub use closure::{closure, Wanted};

/// Modules every keel image needs, in the order they are asked for: the virtio transports,
/// the disk, the filesystems of the partitions (ext4 wants a crc32c implementation for
/// metadata checksums; its `softdep` names an alias, so the generic one is named here), overlay
/// for writable roots and virtio-rng for early entropy. Built-in ones are skipped.
pub const BASE_MODULES: &[&str] =
    &["virtio_pci", "virtio_mmio", "virtio_blk", "crc32c_generic", "ext4", "overlay", "virtio_rng"];

/// The [`BASE_MODULES`] a kernel may lack and still boot keel: virtio-mmio (PCI machines do
/// without it) and virtio-rng (without it the random pool is seeded by the CPU's RNG
/// instruction and the firmware's EFI_RNG_PROTOCOL seed alone, when they exist).
pub const OPTIONAL_BASE_MODULES: &[&str] = &["virtio_mmio", "virtio_rng"];

/// dm-verity, loaded when keel-images is verified (`[disk] verity`, on by default): keel-init
/// maps the partition through it before mounting. Its dependencies (dm-mod, dm-bufio,
/// reed_solomon) come through the closure; sha256 is built into Debian's kernels.
pub const VERITY_MODULES: &[&str] = &["dm_verity"];

/// The uplink NIC driver (virtio-net; `failover` and `net_failover` come with it), loaded when
/// `[host.network] mode` is not `none`.
pub const UPLINK_MODULES: &[&str] = &["virtio_net"];

/// What container networking needs, loaded when any container is on a network: veth pairs, and
/// the nf_tables expressions of keel's table (conntrack, NAT, masquerade, reject). keel has no
/// modprobe, so the kernel cannot load them on demand: without them a rule or a veth fails with
/// ENOENT or EOPNOTSUPP.
pub const NETWORK_MODULES: &[&str] = &[
    "veth",
    "nf_tables",
    "nf_conntrack",
    "nf_nat",
    "nft_chain_nat",
    "nft_nat",
    "nft_masq",
    "nft_ct",
    "nf_reject_ipv4",
    "nf_reject_ipv6",
    "nft_reject",
    "nft_reject_inet",
];

/// Modules that turn the machine's power button into input events keel-init reads (`evdev`
/// makes `/dev/input/event*`): the ACPI button driver on x86_64 (QEMU's `system_powerdown` is an
/// ACPI power button press; Debian builds it as a module there). On aarch64 Debian builds the
/// ACPI button driver in, and it serves the `virt` machine's power key when the firmware passes
/// ACPI tables (UEFI does); gpio-keys serves the same key when the machine is described by a
/// device tree (a PL061 GPIO line). Optional: a kernel without them still boots, only the power
/// button does nothing.
pub fn power_button_modules(arch: Arch) -> &'static [&'static str] {
    match arch {
        Arch::X86_64 => &["evdev", "button"],
        Arch::Aarch64 => &["evdev", "gpio_keys"],
    }
}

/// Modules for keel-init's Secure Boot line (`keel: secure boot on, lockdown integrity`):
/// efivarfs, through which it reads the `SecureBoot` EFI variable (Debian builds it as a module).
/// Optional: without it the line says `secure boot unknown (no efivarfs)`.
pub const SECURE_BOOT_MODULES: &[&str] = &["efivarfs"];

/// Problems with a kernel package.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// Not a Debian package we can read.
    #[error("not a readable Debian package: {0}")]
    NotADeb(String),
    /// The package has no kernel image.
    #[error("no boot/vmlinuz-* in the package")]
    NoImage,
    /// The package has no modules.builtin.
    #[error("no lib/modules/{0}/modules.builtin in the package")]
    NoBuiltin(String),
    /// A module's `.modinfo` cannot be read.
    #[error("module {path}: {reason}")]
    BadModule {
        /// Path in the package.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A needed module is neither a module file nor built in.
    #[error("module `{name}` is not in the kernel package (needed by {needed_by})")]
    MissingModule {
        /// The module.
        name: String,
        /// Who asked for it.
        needed_by: String,
    },
    /// A module dependency cycle.
    #[error("module dependency cycle through `{0}`")]
    Cycle(String),
    /// The compressed kernel image cannot be unpacked.
    #[error("cannot decompress the kernel image: {0}")]
    Decompress(String),
}

/// One loadable module from the package.
#[derive(Debug, Clone)]
pub struct ModuleFile {
    /// Path inside the package (`lib/modules/VER/kernel/…/x.ko`).
    pub path: String,
    /// The `.ko` bytes.
    pub bytes: Vec<u8>,
    /// Parsed `.modinfo`.
    pub info: modinfo::ModInfo,
}

/// A kernel read from its package.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// Release string (`uname -r`), e.g. `6.1.0-56-amd64`.
    pub release: String,
    /// The kernel image as the boot stub loads it: bzImage on x86_64, the uncompressed `Image`
    /// on aarch64 (Debian ships it gzip-compressed).
    pub image: Vec<u8>,
    /// Loadable modules by (normalised) name.
    pub modules: BTreeMap<String, ModuleFile>,
    /// Names of built-in modules.
    pub builtin: BTreeSet<String>,
}

impl Kernel {
    /// Read a Debian linux-image package.
    pub fn from_deb(deb: &[u8], arch: Arch, mut progress: impl FnMut(&str)) -> Result<Kernel, KernelError> {
        let mut vmlinuz: Option<(String, Vec<u8>)> = None;
        let mut builtin_files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut modules = BTreeMap::new();
        deb::for_each_file(
            deb,
            |p| {
                p.starts_with("boot/vmlinuz-")
                    || (p.starts_with("lib/modules/") && (p.ends_with(".ko") || p.ends_with("/modules.builtin")))
            },
            |p, bytes| {
                progress(p);
                if let Some(release) = p.strip_prefix("boot/vmlinuz-") {
                    vmlinuz = Some((release.to_string(), bytes));
                } else if p.ends_with("/modules.builtin") {
                    builtin_files.insert(p.to_string(), bytes);
                } else {
                    let info = modinfo::read(&bytes)
                        .map_err(|reason| KernelError::BadModule { path: p.to_string(), reason })?;
                    let file_name = p.rsplit('/').next().unwrap_or(p).trim_end_matches(".ko");
                    let name = info
                        .name
                        .clone()
                        .map(|n| modinfo::normalise(&n))
                        .unwrap_or_else(|| modinfo::normalise(file_name));
                    modules.insert(name, ModuleFile { path: p.to_string(), bytes, info });
                }
                Ok(())
            },
        )?;
        let (release, image) = vmlinuz.ok_or(KernelError::NoImage)?;
        let builtin_text = builtin_files
            .get(&format!("lib/modules/{release}/modules.builtin"))
            .ok_or_else(|| KernelError::NoBuiltin(release.clone()))?;
        let builtin = String::from_utf8_lossy(builtin_text)
            .lines()
            .filter_map(|l| l.rsplit('/').next())
            .map(|f| modinfo::normalise(f.trim_end_matches(".ko")))
            .collect();
        let image = match arch {
            Arch::Aarch64 if image.starts_with(&[0x1f, 0x8b]) => {
                let mut out = Vec::with_capacity(image.len() * 4);
                flate2::read::GzDecoder::new(&image[..])
                    .read_to_end(&mut out)
                    .map_err(|e| KernelError::Decompress(e.to_string()))?;
                out
            }
            _ => image,
        };
        Ok(Kernel { release, image, modules, builtin })
    }
}
