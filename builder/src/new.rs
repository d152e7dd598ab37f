//! `keel new NAME`: a starter config that `keel check` accepts and `keel build` builds as
//! written, pinning the kernel and stub packages `make setup` downloads (or the ones given).

use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use keel_builder::build::deb_architecture;
use keel_builder::config::{sha256_file, valid_name};
use keel_plan::Arch;

/// The example container's image, in the cache: an OCI layout and a multi-arch tag.
const BUSYBOX_LAYOUT: &str = "oci/busybox";
const BUSYBOX_TAG: &str = "hello";

/// `keel new`: exit 0 with the config written, 2 on bad input (nothing written).
pub fn run(name: &str, arch: Option<&str>, kernel: Option<PathBuf>, stub: Option<PathBuf>) -> ExitCode {
    match new(name, arch, kernel, stub) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keel new: {e}");
            ExitCode::from(2)
        }
    }
}

/// Where the package cache was found.
struct Cache {
    /// The `.cache` directory.
    dir: PathBuf,
    /// How it was found, for the report.
    found: String,
}

fn new(name: &str, arch: Option<&str>, kernel: Option<PathBuf>, stub: Option<PathBuf>) -> Result<(), String> {
    let name = name.strip_suffix(".toml").unwrap_or(name);
    if !valid_name(name) || name.contains('.') {
        return Err(format!(
            "`{name}` is not a valid name (lower-case letters, digits, `-`, `_`, starting with a letter or digit; \
             at most 63)"
        ));
    }
    let arch = match arch {
        Some(a) => Arch::parse(a).ok_or_else(|| format!("--arch: unknown arch `{a}` (expected x86_64 or aarch64)"))?,
        None => Arch::parse(std::env::consts::ARCH).unwrap_or(Arch::X86_64),
    };
    let cwd = std::env::current_dir().map_err(|e| format!("cannot tell the current directory: {e}"))?;
    let file = cwd.join(format!("{name}.toml"));
    if file.exists() {
        return Err(format!("{name}.toml already exists; not overwriting it"));
    }

    let cache = find_cache(&cwd);
    match &cache {
        Some(c) => eprintln!("keel new: using the package cache {} ({})", c.dir.display(), c.found),
        None => eprintln!(
            "keel new: no package cache found (a .cache/debs that `make setup` fills, looked for above the keel binary \
             and above {})",
            cwd.display()
        ),
    }
    let pick = |given: Option<PathBuf>, flag: &str, prefix: &str| -> Result<PathBuf, String> {
        if let Some(p) = given {
            return if p.is_file() { Ok(p) } else { Err(format!("--{flag}: {}: no such file", p.display())) };
        }
        let Some(c) = &cache else {
            return Err(format!("no {prefix} package: pass --{flag} FILE.deb (or run `make setup` in the keel repo)"));
        };
        let suffix = format!("_{}.deb", arch.debian());
        let debs = c.dir.join("debs");
        let mut found: Vec<PathBuf> = std::fs::read_dir(&debs)
            .map_err(|e| format!("{}: {e}", debs.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let n = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                n.starts_with(prefix) && n.ends_with(&suffix)
            })
            .collect();
        found.sort();
        found.pop().ok_or_else(|| {
            format!("no {prefix}*{suffix} in {}: pass --{flag} FILE.deb (or run `make setup`)", debs.display())
        })
    };
    let kernel = pick(kernel, "kernel", "linux-image-")?;
    let stub = pick(stub, "stub", "systemd-boot-efi_")?;
    for (flag, p) in [("kernel", &kernel), ("stub", &stub)] {
        let bytes = std::fs::read(p).map_err(|e| format!("--{flag}: {}: {e}", p.display()))?;
        if bytes.starts_with(b"!<arch>\n") {
            let got = deb_architecture(&bytes).map_err(|e| format!("--{flag}: {}: {e}", p.display()))?;
            if got != arch.debian() {
                return Err(format!(
                    "--{flag}: {} is a package for {got}, not for {arch} ({}); pass --arch or another package",
                    p.display(),
                    arch.debian()
                ));
            }
        }
    }
    let busybox = cache.as_ref().map(|c| c.dir.join(BUSYBOX_LAYOUT)).filter(|p| p.join("index.json").is_file());

    let at = |p: &Path| toml_string(&relative_to(&cwd, p).to_string_lossy());
    let sha = |p: &Path| sha256_file(p).map_err(|e| format!("{}: {e}", p.display()));
    let image = match &busybox {
        Some(layout) => toml_string(&format!("oci:{}:{BUSYBOX_TAG}", relative_to(&cwd, layout).to_string_lossy())),
        None => "\"oci:PATH/TO/OCI-LAYOUT:TAG\"".to_string(),
    };
    let hostname = name.replace('_', "-");
    let text = format!(
        r#"# {name}: a keel host image, from `keel new`. Every key is described in docs/config.md.
#   keel check {name}.toml            validate it, the files it pins and its images
#   keel build {name}.toml -o out     write out/{name}-{arch}.img (and the UKI, kernel, initrd)
#   keel run out/{name}-{arch}.img    boot it under QEMU
version = 1
name = "{name}"
# Target architecture (`keel build --arch` overrides it).
arch = "{arch}"

# The kernel: a Debian linux-image package and the systemd-stub that boots it through UEFI,
# each pinned by sha256 and checked before use. Relative paths are relative to this file.
[kernel]
package.{arch} = {{ path = {kpath}, sha256 = "{ksha}" }}
stub.{arch} = {{ path = {spath}, sha256 = "{ssha}" }}
# Appended to the kernel command line keel needs.
cmdline = "quiet"

# The machine: its host name, and what to do once every container has exited.
[host]
hostname = "{hostname}"
on-exit = "poweroff"

# One [[container]] table per container: an image and what to run in it. Each one gets its own
# namespaces, no capabilities, a read-only root and memory and pid limits unless loosened.
[[container]]
name = "hello"
image = {image}
command = ["/bin/sh", "-c", "echo Hello from keel on $(uname -m)!"]
"#,
        kpath = at(&kernel),
        ksha = sha(&kernel)?,
        spath = at(&stub),
        ssha = sha(&stub)?,
    );
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&file)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    f.write_all(text.as_bytes()).map_err(|e| format!("{}: {e}", file.display()))?;
    eprintln!(
        "keel new: wrote {name}.toml ({arch}; kernel {}, stub {})",
        kernel.file_name().unwrap_or_default().to_string_lossy(),
        stub.file_name().unwrap_or_default().to_string_lossy()
    );
    if busybox.is_none() {
        eprintln!(
            "keel new: no example image ({BUSYBOX_LAYOUT} in the cache, made by `make setup`): set `image` of container \
             `hello` before building"
        );
    } else {
        eprintln!("keel new: next: keel check {name}.toml && keel build {name}.toml -o out");
    }
    Ok(())
}

/// The `.cache` with a `debs` directory above this keel binary, else above `cwd`.
fn find_cache(cwd: &Path) -> Option<Cache> {
    let exe = std::env::current_exe().ok().and_then(|e| e.canonicalize().ok());
    let places = [
        (exe.as_deref().and_then(Path::parent), "found above the keel binary"),
        (Some(cwd), "found above the current directory"),
    ];
    for (start, how) in places {
        let Some(start) = start else { continue };
        if let Some(dir) = start.ancestors().map(|d| d.join(".cache")).find(|c| c.join("debs").is_dir()) {
            return Some(Cache { dir, found: how.to_string() });
        }
    }
    None
}

/// `target` relative to `base` when they share a directory below `/` (as `../.cache/…`), else
/// absolute.
fn relative_to(base: &Path, target: &Path) -> PathBuf {
    let (Ok(base), Ok(target)) = (base.canonicalize(), target.canonicalize()) else { return target.to_path_buf() };
    let b: Vec<Component<'_>> = base.components().collect();
    let t: Vec<Component<'_>> = target.components().collect();
    let common = b.iter().zip(&t).take_while(|(x, y)| x == y).count();
    if common <= 1 {
        return target;
    }
    let mut out = PathBuf::new();
    for _ in common..b.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c);
    }
    out
}

/// `s` as a TOML basic string.
fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        let t = tempfile::tempdir().unwrap();
        let a = t.path().join("repo/configs");
        let c = t.path().join("repo/.cache/debs");
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&c).unwrap();
        assert_eq!(relative_to(&a, &c), Path::new("../.cache/debs"));
        assert_eq!(relative_to(&a, &a), Path::new(""));
        for v in ["a\"b", "it's", "c:\\d", "plain"] {
            let t: toml::Table = toml::from_str(&format!("v = {}", toml_string(v))).unwrap();
            assert_eq!(t["v"].as_str(), Some(v));
        }
    }
}
