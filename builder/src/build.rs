//! `keel build`: config → plan → kernel, initramfs, UKI and disk image.

use std::path::{Path, PathBuf};

use keel_plan::{Arch, Plan, PLAN_PATH, PLAN_VERSION};

use crate::config::{Config, ConfigErrors, Diagnostic};
use crate::initramfs::{self, Entry};
use crate::kernel::{self, Kernel, Wanted};
use crate::output::Output;
use crate::progress::Step;
use crate::resolve;
use crate::sink::{FileSink, Sink};
use crate::{disk, esp, ext4, uki};

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Bad input, located in the config.
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    /// Anything else (output I/O, a format writer refusing).
    #[error("{0}")]
    Other(#[from] anyhow::Error),
}

impl From<Diagnostic> for BuildError {
    fn from(d: Diagnostic) -> Self {
        BuildError::Config(ConfigErrors(vec![d]))
    }
}

/// What a build produced, in the output directory.
#[derive(Debug, Clone)]
pub struct Artifacts {
    /// Every file written, in a stable order.
    pub files: Vec<PathBuf>,
    /// Sizes of the parts, for `keel build`'s summary and `make bench`.
    pub parts: Vec<(String, u64)>,
}

/// Everything that goes into the image besides the config.
pub struct Inputs {
    /// keel-init for the target arch.
    pub init: PathBuf,
}

/// The kernel command line keel needs, then the config's.
pub fn cmdline(arch: Arch, extra: &str) -> String {
    let mut c = format!("console={} panic=-1", arch.serial_console());
    if !extra.trim().is_empty() {
        c.push(' ');
        c.push_str(extra.trim());
    }
    c
}

fn os_release(config: &Config, arch: Arch) -> String {
    format!(
        "NAME=\"keel\"\nID=keel\nPRETTY_NAME=\"keel {name} ({arch})\"\nVERSION_ID={v}\nIMAGE_ID={name}\n",
        name = config.name,
        v = env!("CARGO_PKG_VERSION"),
    )
}

/// Build every artifact for `arch` into `out_dir`. Nothing is left in `out_dir` on failure.
pub fn build(config: &Config, arch: Arch, out_dir: &Path, inputs: &Inputs) -> Result<Artifacts, BuildError> {
    let pinned = config.read_inputs(arch)?;
    let containers = resolve::containers(config, arch)?;
    let loc = config.locator();
    let package = &config.kernel.packages[&arch];
    let stub_ref = &config.kernel.stubs[&arch];
    let mut parts = Vec::new();

    // Kernel and module closure.
    let step = Step::start("kernel", None);
    let deb = pinned.package;
    let mut count = 0u64;
    let kernel = Kernel::from_deb(&deb, arch, |p| {
        count += 1;
        if count.is_multiple_of(64) {
            step.message(p.to_string());
        }
    })
    .map_err(|e| loc.at(&package.path_span, format!("{}.path", package.key), e.to_string()))?;
    drop(deb);
    let mut wanted: Vec<Wanted> = kernel::BASE_MODULES
        .iter()
        .map(|m| Wanted {
            name: m.to_string(),
            by: "keel".into(),
            required: !kernel::OPTIONAL_BASE_MODULES.contains(m),
        })
        .chain(kernel::power_button_modules(arch).iter().map(|m| Wanted {
            name: m.to_string(),
            by: "keel (power button)".into(),
            required: false,
        }))
        .collect();
    if config.host.network.mode != keel_plan::net::UplinkMode::None {
        wanted.extend(kernel::UPLINK_MODULES.iter().map(|m| Wanted {
            name: m.to_string(),
            by: "keel (uplink)".into(),
            required: false,
        }));
    }
    if config.containers.iter().any(|c| !c.networks.is_empty()) {
        wanted.extend(kernel::NETWORK_MODULES.iter().map(|m| Wanted {
            name: m.to_string(),
            by: "keel (networks)".into(),
            required: true,
        }));
    }
    for (m, span) in &config.kernel.modules {
        if !kernel.modules.contains_key(m) && !kernel.builtin.contains(m) {
            return Err(loc
                .at(span, "kernel.modules", format!("module `{m}` is not in kernel {}", kernel.release))
                .into());
        }
        wanted.push(Wanted { name: m.clone(), by: "kernel.modules".into(), required: true });
    }
    let order = kernel::closure(&kernel, &wanted)
        .map_err(|e| loc.at(&package.path_span, format!("{}.path", package.key), e.to_string()))?;
    let modules_bytes: u64 = order.iter().map(|m| kernel.modules[m].bytes.len() as u64).sum();
    step.done(format!("{} ({} modules, {} KiB)", kernel.release, order.len(), modules_bytes >> 10));
    parts.push(("kernel".into(), kernel.image.len() as u64));
    parts.push(("modules".into(), modules_bytes));

    // Images, flattened.
    let step = Step::start("images", Some(containers.len() as u64));
    let resolve::Materialized {
        trees,
        images,
        containers: plan_containers,
        stats,
        owners_clamped,
        seccomp,
        volumes,
        net,
    } = resolve::materialize(config, arch, &containers, |i, name| {
        step.set_pos(i as u64);
        step.message(name.to_string());
    })?;
    let tree_refs: Vec<ext4::Root<'_>> =
        trees.iter().map(|r| ext4::Root { name: &r.dir, tree: &r.tree, id_shift: r.id_base }).collect();
    let image_bytes: u64 = tree_refs.iter().map(|r| r.tree.stats().file_bytes).sum();
    step.done(format!(
        "{images} image(s), {} container tree(s), {} KiB, {} layer(s), {} whiteout(s), {} device node(s) dropped, \
         {owners_clamped} owner(s) outside the id range made nobody",
        trees.len(),
        image_bytes >> 10,
        stats.layers,
        stats.whiteouts,
        stats.devices_dropped
    ));
    parts.push(("images".into(), image_bytes));

    // Plan and initramfs.
    let step = Step::start("initramfs", None);
    let plan = Plan {
        version: PLAN_VERSION,
        name: config.name.clone(),
        arch,
        hostname: config.host.hostname.clone(),
        on_exit: config.host.on_exit,
        on_failure: config.host.on_failure,
        modules: order
            .iter()
            .map(|m| keel_plan::Module { name: m.clone(), path: format!("/lib/modules/{m}.ko") })
            .collect(),
        disk_timeout_ms: u64::try_from(config.host.disk_timeout.as_millis()).unwrap_or(u64::MAX),
        shutdown_grace_ms: u64::try_from(config.host.shutdown_grace.as_millis()).unwrap_or(u64::MAX),
        volumes,
        logs: config.host.logs,
        net,
        containers: plan_containers,
    };
    let plan_bytes = plan.to_bytes();
    let init = std::fs::read(&inputs.init).map_err(|e| anyhow::anyhow!("keel-init {}: {e}", inputs.init.display()))?;
    parts.push(("init".into(), init.len() as u64));
    parts.push(("plan".into(), plan_bytes.len() as u64));
    let mut entries = vec![
        Entry::dir("dev"),
        Entry { path: "dev/console".into(), mode: 0o600, kind: initramfs::Kind::CharDev(5, 1) },
        Entry::dir("etc"),
        Entry::dir("etc/keel"),
        Entry::file(PLAN_PATH.trim_start_matches('/'), 0o644, plan_bytes),
        Entry::file("init", 0o755, init),
        Entry::dir("lib"),
        Entry::dir("lib/modules"),
    ];
    for m in &order {
        entries.push(Entry::file(&format!("lib/modules/{m}.ko"), 0o644, kernel.modules[m].bytes.clone()));
    }
    if !seccomp.is_empty() {
        entries.push(Entry::dir(keel_plan::SECCOMP_DIR.trim_start_matches('/')));
    }
    for (path, bytes) in seccomp {
        parts.push((format!("seccomp-{}", path.rsplit('/').next().unwrap_or_default()), bytes.len() as u64));
        entries.push(Entry::file(path.trim_start_matches('/'), 0o644, bytes));
    }
    let initrd = initramfs::build(&entries).map_err(anyhow::Error::from)?;
    step.done(format!("{} KiB compressed", initrd.len() >> 10));
    parts.push(("initramfs".into(), initrd.len() as u64));

    // UKI.
    let step = Step::start("uki", None);
    let stub = read_stub(pinned.stub, &stub_ref.path, arch)
        .map_err(|e| loc.at(&stub_ref.path_span, format!("{}.path", stub_ref.key), e))?;
    let cmdline = cmdline(arch, &config.kernel.cmdline);
    let osrel = os_release(config, arch);
    let uki_bytes = uki::build_uki(
        &stub,
        &uki::UkiParts {
            osrel: osrel.as_bytes(),
            cmdline: cmdline.as_bytes(),
            uname: kernel.release.as_bytes(),
            linux: &kernel.image,
            initrd: &initrd,
        },
    )
    .map_err(|e| loc.at(&stub_ref.path_span, format!("{}.path", stub_ref.key), e.to_string()))?;
    step.done(format!("{} KiB", uki_bytes.len() >> 10));
    parts.push(("uki".into(), uki_bytes.len() as u64));

    // Disk.
    let mut out = Output::new(out_dir).map_err(anyhow::Error::from)?;
    let stem = format!("{}-{}", config.name, arch);
    let step = Step::start("disk", None);
    let esp_size = esp::fat32_size_for(uki_bytes.len() as u64);
    let (images_size, images_inodes) = ext4::size_for(&tree_refs);
    let layout = disk::plan(config.name.as_bytes(), esp_size, images_size, config.data_size);
    let img_path = out.path(&format!("{stem}.img"));
    let file = std::fs::File::create(&img_path).map_err(|e| anyhow::anyhow!("{}: {e}", img_path.display()))?;
    file.set_len(layout.disk_size).map_err(|e| anyhow::anyhow!("{}: {e}", img_path.display()))?;
    {
        let mut sink = FileSink::new(&file);
        disk::write_gpt(&mut sink, &layout).map_err(anyhow::Error::from)?;
        for part in &layout.parts {
            let base = part.first_lba * 512;
            let size = (part.last_lba + 1 - part.first_lba) * 512;
            match part.kind {
                disk::PartKind::Esp => {
                    let mut s = crate::sink::OffsetSink::new(&mut sink, base);
                    esp::write_fat32(
                        &mut s,
                        size,
                        "KEEL-ESP",
                        volume_id(&config.name),
                        &[(&format!("EFI/BOOT/{}", arch.efi_boot_file()), &uki_bytes)],
                    )
                    .map_err(anyhow::Error::from)?;
                }
                disk::PartKind::Images => {
                    let uuid = ext4::uuid_for(&config.name, keel_plan::IMAGES_LABEL);
                    ext4::write(
                        &mut sink as &mut dyn Sink,
                        base,
                        size,
                        keel_plan::IMAGES_LABEL,
                        uuid,
                        Some(images_inodes),
                        &tree_refs,
                    )
                    .map_err(anyhow::Error::from)?;
                }
                disk::PartKind::Data => {
                    let uuid = ext4::uuid_for(&config.name, keel_plan::DATA_LABEL);
                    ext4::write(&mut sink as &mut dyn Sink, base, size, keel_plan::DATA_LABEL, uuid, None, &[])
                        .map_err(anyhow::Error::from)?;
                }
            }
        }
    }
    file.sync_all().map_err(|e| anyhow::anyhow!("{}: {e}", img_path.display()))?;
    step.done(format!("{} MiB disk", layout.disk_size >> 20));
    parts.push(("disk".into(), layout.disk_size));

    out.write(&format!("{stem}.efi"), &uki_bytes).map_err(anyhow::Error::from)?;
    out.write(&format!("{stem}.vmlinuz"), &kernel.image).map_err(anyhow::Error::from)?;
    out.write(&format!("{stem}.initrd"), &initrd).map_err(anyhow::Error::from)?;
    out.write(&format!("{stem}.cmdline"), format!("{cmdline}\n").as_bytes()).map_err(anyhow::Error::from)?;
    let files = out.commit().map_err(anyhow::Error::from)?;
    Ok(Artifacts { files, parts })
}

fn volume_id(name: &str) -> u32 {
    use sha2::Digest;
    let h = sha2::Sha256::digest(format!("keel-esp:{name}").as_bytes());
    u32::from_le_bytes([h[0], h[1], h[2], h[3]])
}

/// The systemd-stub for `arch`: out of a `systemd-boot-efi` package, or the stub file as is.
fn read_stub(bytes: Vec<u8>, path: &Path, arch: Arch) -> Result<Vec<u8>, String> {
    if !bytes.starts_with(b"!<arch>\n") {
        return Ok(bytes);
    }
    let name = match arch {
        Arch::X86_64 => "linuxx64.efi.stub",
        Arch::Aarch64 => "linuxaa64.efi.stub",
    };
    let mut found = None;
    kernel::deb::for_each_file(
        &bytes,
        |p| p.ends_with(&format!("/{name}")),
        |_, b| {
            found = Some(b);
            Ok(())
        },
    )
    .map_err(|e| e.to_string())?;
    found.ok_or_else(|| format!("{} has no {name}", path.display()))
}
