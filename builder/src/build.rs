//! `keel build`: config → plan → kernel, initramfs, UKI and disk image.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use keel_plan::{Arch, Plan, PLAN_PATH, PLAN_VERSION};
use sha2::Digest;

use crate::config::{Config, ConfigErrors, Diagnostic};
use crate::initramfs::{self, Entry};
use crate::kernel::{self, Kernel, Wanted};
use crate::output::Output;
use crate::progress::{size, Progress};
use crate::resolve;
use crate::sink::{FileSink, Sink};
use crate::{disk, esp, ext4, uki, verity};

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
    /// Sizes of the parts in bytes, for `keel build`'s summary and `make bench`.
    pub parts: Vec<(String, u64)>,
    /// The disk's partitions, as written.
    pub layout: disk::Layout,
    /// The kernel release (`uname -r`).
    pub kernel_release: String,
    /// How many modules are loaded at boot.
    pub modules: usize,
    /// keel-images' dm-verity metadata, when verity is on.
    pub verity: Option<verity::Verity>,
    /// The UKI's signature, if `[signing]` asked for one.
    pub signed: Option<Signed>,
}

/// What a signed UKI was signed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// sha256 of the certificate (DER).
    pub cert_sha256: String,
    /// The certificate's subject common name.
    pub common_name: Option<String>,
    /// sha256 of the UKI before it was signed (what `sbattach --remove` gives back).
    pub unsigned_sha256: String,
}

/// Share of keel-data reserved for host root (keel-init), as mke2fs reserves by default.
pub const DATA_RESERVED_PERCENT: u8 = 5;

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

/// What `keel check` and `keel build` both establish before anything is written: the pinned
/// files verified, the kernel package read and checked against the arch, the modules found and
/// their closure resolved, the stub checked against the kernel, every image flattened and every
/// container's tree made. Whatever `keel build` would reject, `keel check` rejects, with the same
/// error lines.
pub struct Prepared {
    /// The kernel, read from its package.
    pub kernel: Kernel,
    /// The modules to load at boot, in load order.
    pub modules: Vec<String>,
    /// The systemd-stub PE image.
    pub stub: Vec<u8>,
    /// The images and containers.
    pub images: resolve::Materialized,
    /// The kernel package's control stanza, for the SBOM.
    pub kernel_deb: crate::image::dpkg::Package,
    /// The stub package's control stanza (none for a bare stub file), for the SBOM.
    pub stub_deb: Option<crate::image::dpkg::Package>,
}

impl Prepared {
    /// Bytes of the module files loaded at boot.
    pub fn modules_bytes(&self) -> u64 {
        self.modules.iter().map(|m| self.kernel.modules[m].bytes.len() as u64).sum()
    }
}

/// Run every check of a build without writing anything. Independent problems (pinned files,
/// image references, the kernel and its modules, the images) are all reported. Finished-step
/// lines are printed only once everything passed, so errors come alone.
pub fn prepare(config: &Config, arch: Arch, progress: &Progress) -> Result<Prepared, BuildError> {
    progress.hold();
    let prepared = prepare_all(config, arch, progress)?;
    progress.release();
    Ok(prepared)
}

fn prepare_all(config: &Config, arch: Arch, progress: &Progress) -> Result<Prepared, BuildError> {
    let loc = config.locator();
    let mut errors: Vec<Diagnostic> = Vec::new();
    let pinned = config.read_inputs(arch).map_err(|e| errors.extend(e.0)).ok();
    let containers = resolve::containers(config, arch).map_err(|e| errors.extend(e.0)).ok();

    let (mut kernel, mut stub, mut kernel_deb, mut stub_deb) = (None, None, None, None);
    if let Some(pinned) = pinned {
        let package = &config.kernel.packages[&arch];
        let stub_ref = &config.kernel.stubs[&arch];
        let at = |f: &crate::config::FileRef, msg: String| loc.at(&f.path_span, format!("{}.path", f.key), msg);
        let is_deb = pinned.stub.starts_with(b"!<arch>\n");
        match checked_control(&pinned.package, "linux-image", &package.path, arch) {
            Ok(p) => kernel_deb = Some(p),
            Err(e) => errors.push(at(package, e)),
        }
        let package_ok = kernel_deb.is_some();
        let stub_ok = !is_deb
            || match checked_control(&pinned.stub, "systemd-boot-efi", &stub_ref.path, arch) {
                Ok(p) => {
                    stub_deb = Some(p);
                    true
                }
                Err(e) => {
                    errors.push(at(stub_ref, e));
                    false
                }
            };
        if package_ok {
            match read_kernel(config, arch, pinned.package, progress) {
                Ok(k) => kernel = Some(k),
                Err(mut e) => errors.append(&mut e),
            }
        }
        if stub_ok {
            match read_stub(pinned.stub, &stub_ref.path, arch).and_then(|s| check_stub(s, kernel.as_ref(), arch)) {
                Ok(s) => stub = Some(s),
                Err(e) => errors.push(at(stub_ref, e)),
            }
        }
    }

    let mut images = None;
    if let Some(containers) = containers {
        let step = progress.step("images", Some(containers.len() as u64));
        match resolve::materialize(config, arch, &containers, |i, name| {
            step.set_pos(i as u64);
            step.message(name.to_string());
        }) {
            Ok(m) => {
                let bytes: u64 = m.trees.iter().map(|r| r.tree.stats().file_bytes).sum();
                step.done(format!(
                    "{} image(s), {} container tree(s), {}, {} layer(s), {} whiteout(s), {} device node(s) dropped, \
                     {} owner(s) outside the id range made nobody",
                    m.images,
                    m.trees.len(),
                    size(bytes),
                    m.stats.layers,
                    m.stats.whiteouts,
                    m.stats.devices_dropped,
                    m.owners_clamped,
                ));
                images = Some(m);
            }
            Err(e) => errors.extend(e.0),
        }
    }

    match (kernel, stub, images, kernel_deb) {
        (Some((kernel, modules)), Some(stub), Some(images), Some(kernel_deb)) if errors.is_empty() => {
            Ok(Prepared { kernel, modules, stub, images, kernel_deb, stub_deb })
        }
        _ => Err(ConfigErrors(errors).into()),
    }
}

/// Read the kernel package, check the config's modules exist, and resolve the closure of every
/// module the image needs: the kernel and the load order, or every problem found.
fn read_kernel(
    config: &Config,
    arch: Arch,
    deb: Vec<u8>,
    progress: &Progress,
) -> Result<(Kernel, Vec<String>), Vec<Diagnostic>> {
    let loc = config.locator();
    let package = &config.kernel.packages[&arch];
    let at_package = |msg: String| loc.at(&package.path_span, format!("{}.path", package.key), msg);
    let step = progress.step("kernel", None);
    let mut files = 0u64;
    let kernel = Kernel::from_deb(&deb, arch, |_| {
        files += 1;
        if files.is_multiple_of(64) {
            step.message(format!("{files} files read"));
        }
    })
    .map_err(|e| vec![at_package(e.to_string())])?;
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
        .chain(kernel::SECURE_BOOT_MODULES.iter().map(|m| Wanted {
            name: m.to_string(),
            by: "keel (secure boot status)".into(),
            required: false,
        }))
        .collect();
    if config.verity {
        wanted.extend(kernel::VERITY_MODULES.iter().map(|m| Wanted {
            name: m.to_string(),
            by: "keel (dm-verity)".into(),
            required: true,
        }));
    }
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
    let mut errors = Vec::new();
    for (m, span) in &config.kernel.modules {
        if !kernel.modules.contains_key(m) && !kernel.builtin.contains(m) {
            errors.push(loc.at(span, "kernel.modules", format!("module `{m}` is not in kernel {}", kernel.release)));
        }
        wanted.push(Wanted { name: m.clone(), by: "kernel.modules".into(), required: true });
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let order = kernel::closure(&kernel, &wanted).map_err(|e| vec![at_package(e.to_string())])?;
    let bytes: u64 = order.iter().map(|m| kernel.modules[m].bytes.len() as u64).sum();
    step.done(format!("{}, {} modules ({})", kernel.release, order.len(), size(bytes)));
    Ok((kernel, order))
}

/// The control file of a Debian package, as text.
pub fn deb_control(deb: &[u8]) -> Result<String, String> {
    use std::io::Read;
    let members = kernel::deb::ar_members(deb).map_err(|e| e.to_string())?;
    let (name, data) = members
        .into_iter()
        .find(|(n, _)| n.starts_with("control.tar"))
        .ok_or("not a readable Debian package: no control.tar member")?;
    let reader: Box<dyn Read + '_> = match name.as_str() {
        "control.tar" => Box::new(data),
        "control.tar.xz" => Box::new(xz2::read::XzDecoder::new(data)),
        "control.tar.gz" => Box::new(flate2::read::GzDecoder::new(data)),
        "control.tar.zst" => {
            Box::new(zstd::stream::read::Decoder::with_buffer(data).map_err(|e| format!("{name}: {e}"))?)
        }
        other => return Err(format!("not a readable Debian package: unsupported member `{other}`")),
    };
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(|e| format!("{name}: {e}"))? {
        let mut entry = entry.map_err(|e| format!("{name}: {e}"))?;
        let path = entry.path().map_err(|e| format!("{name}: {e}"))?.to_string_lossy().into_owned();
        if path.trim_start_matches("./") != "control" {
            continue;
        }
        let mut text = String::new();
        // Bounded like an image's status file.
        (&mut entry)
            .take(crate::image::dpkg::MAX_STATUS_BYTES as u64)
            .read_to_string(&mut text)
            .map_err(|e| format!("{name}: control: {e}"))?;
        return Ok(text);
    }
    Err(format!("not a readable Debian package: no control file in {name}"))
}

/// The `Architecture:` of a Debian package's control file.
pub fn deb_architecture(deb: &[u8]) -> Result<String, String> {
    architecture(&deb_control(deb)?)
}

/// The `Architecture:` field of control file `text`.
fn architecture(text: &str) -> Result<String, String> {
    text.lines()
        .find_map(|l| l.strip_prefix("Architecture:"))
        .map(|a| a.trim().to_string())
        .ok_or_else(|| "the package's control file has no Architecture field".to_string())
}

/// The control stanza of a `what` package (e.g. `linux-image`) for `arch`, read once: its
/// architecture checked, the rest kept for the SBOM.
fn checked_control(deb: &[u8], what: &str, path: &Path, arch: Arch) -> Result<crate::image::dpkg::Package, String> {
    let text = deb_control(deb)?;
    let got = architecture(&text)?;
    if got != arch.debian() {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let want = arch.debian();
        return Err(format!("{name} is a {what} package for {got} (`Architecture: {got}`), not for {arch} ({want})"));
    }
    crate::image::dpkg::control(text.as_bytes()).map_err(|e| format!("control file: {e}"))
}

/// The stub must be a PE image for `arch` that takes the kernel: build a UKI without an initramfs
/// and throw it away.
fn check_stub(stub: Vec<u8>, kernel: Option<&(Kernel, Vec<String>)>, arch: Arch) -> Result<Vec<u8>, String> {
    let machine = uki::machine(&stub).map_err(|e| e.to_string())?;
    if machine.to_string() != arch.name() {
        return Err(format!("the stub is for {machine}, not {arch}"));
    }
    if let Some((kernel, _)) = kernel {
        let parts = uki::UkiParts { osrel: b"", cmdline: b"", uname: b"", linux: &kernel.image, initrd: b"" };
        uki::build_uki(&stub, &parts).map_err(|e| e.to_string())?;
    }
    Ok(stub)
}

/// Build every artifact for `arch` into `out_dir`. Nothing is left in `out_dir` on failure.
pub fn build(
    config: &Config,
    arch: Arch,
    out_dir: &Path,
    inputs: &Inputs,
    progress: &Progress,
) -> Result<Artifacts, BuildError> {
    let prepared = prepare(config, arch, progress)?;
    write(config, arch, prepared, out_dir, inputs, progress)
}

/// Write every artifact of a [`prepare`]d build into `out_dir`. Nothing is left in `out_dir` on
/// failure.
pub fn write(
    config: &Config,
    arch: Arch,
    prepared: Prepared,
    out_dir: &Path,
    inputs: &Inputs,
    progress: &Progress,
) -> Result<Artifacts, BuildError> {
    // Before anything is made: a bad SOURCE_DATE_EPOCH fails at once.
    let epoch = crate::sbom::epoch().map_err(anyhow::Error::from)?;
    let modules_bytes = prepared.modules_bytes();
    let Prepared { kernel, modules: order, stub, images, kernel_deb, stub_deb } = prepared;
    let loc = config.locator();
    let stub_ref = &config.kernel.stubs[&arch];
    let mut parts = Vec::new();
    parts.push(("kernel".into(), kernel.image.len() as u64));
    parts.push(("modules".into(), modules_bytes));
    let resolve::Materialized {
        trees,
        images: _,
        containers: plan_containers,
        stats: _,
        owners_clamped: _,
        seccomp,
        volumes,
        net,
        sources,
    } = images;
    let tree_refs: Vec<ext4::Root<'_>> =
        trees.iter().map(|r| ext4::Root { name: &r.dir, tree: &r.tree, id_shift: r.id_base }).collect();
    let image_bytes: u64 = tree_refs.iter().map(|r| r.tree.stats().file_bytes).sum();
    parts.push(("images".into(), image_bytes));

    // Plan and initramfs.
    let step = progress.step("initramfs", None);
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
        api: config.api.as_ref().map(|a| keel_plan::Api { listen: a.listen }),
    };
    let plan_bytes = plan.to_bytes();
    let init = std::fs::read(&inputs.init).map_err(|e| anyhow::anyhow!("keel-init {}: {e}", inputs.init.display()))?;
    parts.push(("init".into(), init.len() as u64));
    let init_sha256 = hex::encode(sha2::Sha256::digest(&init));
    parts.push(("plan".into(), plan_bytes.len() as u64));
    let mut entries = vec![
        Entry::dir("dev"),
        Entry { path: "dev/console".into(), mode: 0o600, kind: initramfs::Kind::CharDev(5, 1) },
        Entry::dir("etc"),
        Entry::dir("etc/keel"),
        Entry::file(PLAN_PATH.trim_start_matches('/'), 0o644, plan_bytes),
        // Execute-only: see docs/security.md (/init from inside a container).
        Entry::file("init", 0o711, init),
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
    if let Some(api) = &config.api {
        // The server key is readable only by root in the initramfs; keel-init reads it into
        // memory before it leaves the initramfs (see docs/security.md).
        entries.push(Entry::dir(keel_plan::API_TLS_DIR.trim_start_matches('/')));
        for (name, bytes) in &api.files {
            let path = format!("{}/{name}", keel_plan::API_TLS_DIR.trim_start_matches('/'));
            entries.push(Entry::file(&path, if name.ends_with(".key") { 0o400 } else { 0o444 }, bytes.clone()));
        }
    }
    let initrd = initramfs::build(&entries).map_err(anyhow::Error::from)?;
    step.done(format!("{} compressed", size(initrd.len() as u64)));
    parts.push(("initramfs".into(), initrd.len() as u64));

    // The disk, but for the ESP: the UKI's command line carries keel-images' root hash, so the
    // UKI is made once the filesystem is written and hashed. Its size is known before: the
    // parameter's length does not depend on the hashes.
    let mut out = Output::new(out_dir).map_err(anyhow::Error::from)?;
    let stem = format!("{}-{}", config.name, arch);
    let step = progress.step("disk", None);
    let (images_size, images_inodes) = ext4::size_for(&tree_refs);
    let data_blocks = images_size / verity::BLOCK;
    let base_cmdline = cmdline(arch, &config.kernel.cmdline);
    let osrel = os_release(config, arch);
    let make_uki = |cmdline: &str| {
        uki::build_uki(
            &stub,
            &uki::UkiParts {
                osrel: osrel.as_bytes(),
                cmdline: cmdline.as_bytes(),
                uname: kernel.release.as_bytes(),
                linux: &kernel.image,
                initrd: &initrd,
            },
        )
        .map_err(|e| loc.at(&stub_ref.path_span, format!("{}.path", stub_ref.key), e.to_string()))
    };
    let with_verity = |param: &str| format!("{base_cmdline} {param}");
    // The signature's length depends only on the certificate, so the placeholder UKI, signed,
    // has the final length.
    let sign_uki = |unsigned: &[u8], signing: &crate::config::signing::SigningConfig| {
        crate::sign::sign(unsigned, &signing.key)
            .map_err(|e| anyhow::anyhow!("signing the UKI with {}: {e}", signing.cert_path.display()))
    };
    let placeholder = match config.verity {
        true => make_uki(&with_verity(&verity::Verity::placeholder(data_blocks)))?,
        false => make_uki(&base_cmdline)?,
    };
    let uki_len = match &config.signing {
        Some(signing) => sign_uki(&placeholder, signing)?.len(),
        None => placeholder.len(),
    };
    drop(placeholder);
    let esp_size = esp::fat32_size_for(uki_len as u64);
    let hash_size = if config.verity { verity::hash_size(data_blocks) } else { 0 };
    let layout = disk::plan(config.name.as_bytes(), esp_size, images_size + hash_size, config.data_size);
    let img_path = out.path(&format!("{stem}.img"));
    let io_err = |e: std::io::Error| anyhow::anyhow!("{}: {e}", img_path.display());
    // Read and write: the verity step reads keel-images back.
    let file =
        std::fs::File::options().read(true).write(true).create(true).truncate(true).open(&img_path).map_err(io_err)?;
    file.set_len(layout.disk_size).map_err(io_err)?;
    let mut sink = FileSink::new(&file);
    disk::write_gpt(&mut sink, &layout).map_err(anyhow::Error::from)?;
    for part in &layout.parts {
        match part.kind {
            disk::PartKind::Esp => {} // below, once the UKI is made
            disk::PartKind::Images => {
                let spec = ext4::Spec {
                    label: keel_plan::IMAGES_LABEL,
                    uuid: ext4::uuid_for(&config.name, keel_plan::IMAGES_LABEL),
                    inodes: Some(images_inodes),
                    reserved_percent: 0,
                };
                ext4::write(&mut sink as &mut dyn Sink, part.offset(), images_size, spec, &tree_refs)
                    .map_err(anyhow::Error::from)?;
            }
            disk::PartKind::Data => {
                // Blocks only root of the host may use: keel-init's log and record writes
                // go on when a container has filled the rest (containers' ids are never host
                // root).
                let spec = ext4::Spec {
                    label: keel_plan::DATA_LABEL,
                    uuid: ext4::uuid_for(&config.name, keel_plan::DATA_LABEL),
                    inodes: None,
                    reserved_percent: DATA_RESERVED_PERCENT,
                };
                ext4::write(&mut sink as &mut dyn Sink, part.offset(), part.size(), spec, &[])
                    .map_err(anyhow::Error::from)?;
            }
        }
    }
    step.done(format!("{}, {} partitions", size(layout.disk_size), layout.parts.len()));
    parts.push(("disk".into(), layout.disk_size));

    // dm-verity over keel-images, read back from the disk: the superblock and tree after the data.
    let images_part = layout.part(disk::PartKind::Images).ok_or_else(|| anyhow::anyhow!("no keel-images partition"))?;
    let verity = if config.verity {
        let step = progress.step("verity", None);
        let base = images_part.offset();
        let v =
            verity::compute(images_size, |at, buf| file.read_exact_at(buf, base + at)).map_err(anyhow::Error::from)?;
        sink.write_at(base + v.hash_offset(), &v.hash_area).map_err(io_err)?;
        step.done(format!(
            "root hash {}..., {} data blocks, tree {}",
            &v.root_hex()[..16],
            v.data_blocks,
            size(v.hash_area.len() as u64)
        ));
        parts.push(("verity".into(), v.hash_area.len() as u64));
        Some(v)
    } else {
        None
    };

    // UKI, signed if asked, and the ESP that holds it.
    let step = progress.step("uki", None);
    let cmdline = match &verity {
        Some(v) => with_verity(&v.param()),
        None => base_cmdline.clone(),
    };
    let uki_bytes = make_uki(&cmdline)?;
    step.done(size(uki_bytes.len() as u64));
    parts.push(("uki".into(), uki_bytes.len() as u64));

    // Signing: the unsigned UKI, with an Authenticode signature appended.
    let (uki_bytes, signed) = match &config.signing {
        None => (uki_bytes, None),
        Some(signing) => {
            let step = progress.step("sign", None);
            let unsigned_sha256 = hex::encode(sha2::Sha256::digest(&uki_bytes));
            let signed = sign_uki(&uki_bytes, signing)?;
            let added = (signed.len() - uki_bytes.len()) as u64;
            step.done(format!("Authenticode, {}, {} signature", signing.describe(), size(added)));
            parts.push(("signature".into(), added));
            let record = Signed {
                cert_sha256: signing.cert_sha256.clone(),
                common_name: signing.key.cert.common_name.clone(),
                unsigned_sha256,
            };
            (signed, Some(record))
        }
    };
    if uki_bytes.len() != uki_len {
        return Err(
            anyhow::anyhow!("the UKI is {} bytes, not the {uki_len} its ESP was sized for", uki_bytes.len()).into()
        );
    }
    let esp = layout.part(disk::PartKind::Esp).ok_or_else(|| anyhow::anyhow!("no ESP partition"))?;
    esp::write_fat32(
        &mut crate::sink::OffsetSink::new(&mut sink, esp.offset()),
        esp.size(),
        "KEEL-ESP",
        volume_id(&config.name),
        &[(&format!("EFI/BOOT/{}", arch.efi_boot_file()), &uki_bytes)],
    )
    .map_err(anyhow::Error::from)?;
    file.sync_all().map_err(io_err)?;

    out.write(&format!("{stem}.efi"), &uki_bytes).map_err(anyhow::Error::from)?;
    out.write(&format!("{stem}.vmlinuz"), &kernel.image).map_err(anyhow::Error::from)?;
    out.write(&format!("{stem}.initrd"), &initrd).map_err(anyhow::Error::from)?;
    out.write(&format!("{stem}.cmdline"), format!("{cmdline}\n").as_bytes()).map_err(anyhow::Error::from)?;
    let config_sha256 =
        crate::config::sha256_file(&config.path).map_err(|e| anyhow::anyhow!("{}: {e}", config.path.display()))?;
    let uki_sha256 = hex::encode(sha2::Sha256::digest(&uki_bytes));
    let record = crate::provenance::Record {
        name: &config.name,
        arch: arch.name(),
        config_sha256: &config_sha256,
        init_sha256: &init_sha256,
        kernel: &config.kernel.packages[&arch],
        stub: stub_ref,
        images: &sources,
        uki_sha256: &uki_sha256,
        verity: verity.as_ref(),
        signed: signed.as_ref(),
    };
    let record = record.to_bytes();
    out.write(&format!("{stem}.provenance.json"), &record).map_err(anyhow::Error::from)?;

    // SBOM.
    let step = progress.step("sbom", None);
    let sbom = crate::sbom::Inputs {
        name: &config.name,
        arch,
        epoch,
        provenance_sha256: &hex::encode(sha2::Sha256::digest(&record)),
        uki_sha256: &uki_sha256,
        kernel: crate::sbom::Deb { control: &kernel_deb, sha256: &config.kernel.packages[&arch].sha256 },
        stub: match &stub_deb {
            Some(control) => Ok(crate::sbom::Deb { control, sha256: &stub_ref.sha256 }),
            None => Err(&stub_ref.sha256),
        },
        init_sha256: &init_sha256,
        images: &sources,
    }
    .to_bytes();
    out.write(&format!("{stem}.spdx.json"), &sbom).map_err(anyhow::Error::from)?;
    let packages: usize = sources.iter().map(|s| s.packages.len()).sum();
    step.done(format!("{} SPDX 2.3, {packages} dpkg package(s) from images", size(sbom.len() as u64)));
    let files = out.commit().map_err(anyhow::Error::from)?;
    Ok(Artifacts { files, parts, layout, kernel_release: kernel.release, modules: order.len(), verity, signed })
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
