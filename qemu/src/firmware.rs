//! UEFI firmware for disk boots: OVMF (x86_64) and AAVMF (aarch64), as a read-only code image
//! plus a variable-store template that each VM gets its own writable copy of. For Secure Boot, a
//! build that enforces it and a template with keys enrolled.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::{Arch, Error, Result};

/// Where distributions install the firmware, as (code, vars template) pairs, Debian first.
const X86_64_CANDIDATES: &[(&str, &str)] = &[
    // Debian 12+, Ubuntu 22.04+
    ("/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"),
    // older Debian and Ubuntu
    ("/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"),
    // Fedora, RHEL
    ("/usr/share/edk2/ovmf/OVMF_CODE.fd", "/usr/share/edk2/ovmf/OVMF_VARS.fd"),
    // Arch Linux
    ("/usr/share/edk2/x64/OVMF_CODE.4m.fd", "/usr/share/edk2/x64/OVMF_VARS.4m.fd"),
    ("/usr/share/edk2-ovmf/x64/OVMF_CODE.fd", "/usr/share/edk2-ovmf/x64/OVMF_VARS.fd"),
    // openSUSE
    ("/usr/share/qemu/ovmf-x86_64-code.bin", "/usr/share/qemu/ovmf-x86_64-vars.bin"),
    // QEMU's own bundled build (upstream `make install`, Homebrew-like layouts)
    ("/usr/share/qemu/edk2-x86_64-code.fd", "/usr/share/qemu/edk2-i386-vars.fd"),
    ("/usr/local/share/qemu/edk2-x86_64-code.fd", "/usr/local/share/qemu/edk2-i386-vars.fd"),
];

/// As [`X86_64_CANDIDATES`], for aarch64.
const AARCH64_CANDIDATES: &[(&str, &str)] = &[
    // Debian, Ubuntu
    ("/usr/share/AAVMF/AAVMF_CODE.fd", "/usr/share/AAVMF/AAVMF_VARS.fd"),
    // Fedora, RHEL
    ("/usr/share/edk2/aarch64/QEMU_EFI-pflash.raw", "/usr/share/edk2/aarch64/vars-template-pflash.raw"),
    // Arch Linux
    ("/usr/share/edk2/aarch64/QEMU_CODE.fd", "/usr/share/edk2/aarch64/QEMU_VARS.fd"),
    // openSUSE
    ("/usr/share/qemu/aavmf-aarch64-code.bin", "/usr/share/qemu/aavmf-aarch64-vars.bin"),
    // QEMU's own bundled build
    ("/usr/share/qemu/edk2-aarch64-code.fd", "/usr/share/qemu/edk2-arm-vars.fd"),
    ("/usr/local/share/qemu/edk2-aarch64-code.fd", "/usr/local/share/qemu/edk2-arm-vars.fd"),
];

/// Secure Boot firmware as (code, vars template) pairs: Debian's (and Ubuntu's) builds, with the
/// varstore whose PK, KEK and db are all Debian's snakeoil certificate
/// (`/usr/share/ovmf/PkKek-1-snakeoil.pem`) and Secure Boot on. On x86_64 the code is the build
/// with SMM, which keeps the varstore out of the guest OS's reach; on aarch64 the one code image
/// does both, and only the varstore decides.
const X86_64_SECURE_BOOT: &[(&str, &str)] =
    &[("/usr/share/OVMF/OVMF_CODE_4M.secboot.fd", "/usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd")];

/// As [`X86_64_SECURE_BOOT`], for aarch64.
const AARCH64_SECURE_BOOT: &[(&str, &str)] =
    &[("/usr/share/AAVMF/AAVMF_CODE.fd", "/usr/share/AAVMF/AAVMF_VARS.snakeoil.fd")];

/// Size of each flash device on the aarch64 `virt` machine; QEMU rejects smaller images there.
const VIRT_PFLASH_SIZE: u64 = 64 << 20;

/// A UEFI firmware build: the code image (mapped read-only) and the template of its variable store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Firmware {
    /// The firmware code, e.g. `/usr/share/OVMF/OVMF_CODE_4M.fd`.
    pub code: PathBuf,
    /// The pristine variable store, e.g. `/usr/share/OVMF/OVMF_VARS_4M.fd`. Never written: every VM
    /// boots a private copy, because the firmware writes to it.
    pub vars_template: PathBuf,
}

impl Firmware {
    /// Finds the firmware for `arch`.
    ///
    /// Overrides, checked first, must name both files: `KEEL_FIRMWARE_CODE_X86_64` and
    /// `KEEL_FIRMWARE_VARS_X86_64` (or `_AARCH64`), then the arch-less `KEEL_FIRMWARE_CODE` and
    /// `KEEL_FIRMWARE_VARS`, which apply to whichever architecture is booted. Otherwise the first
    /// installed pair of a list of distribution paths, Debian's first (see the crate docs).
    pub fn find(arch: Arch) -> Result<Firmware> {
        find_in(arch, |name| std::env::var_os(name), |path| path.is_file())
    }

    /// The (code, vars template) locations [`Firmware::find`] tries for `arch`, in order.
    pub fn candidates(arch: Arch) -> impl Iterator<Item = Firmware> {
        let list = match arch {
            Arch::X86_64 => X86_64_CANDIDATES,
            Arch::Aarch64 => AARCH64_CANDIDATES,
        };
        list.iter().map(|(code, vars)| Firmware { code: code.into(), vars_template: vars.into() })
    }

    /// Finds the Secure Boot firmware for `arch`: the code image that enforces Secure Boot and
    /// Debian's snakeoil varstore (see the crate docs). To trust other keys, keep the code and
    /// replace [`Firmware::vars_template`] with a varstore that enrols them. There are no
    /// environment overrides: set [`VmConfig::firmware`](crate::VmConfig::firmware) instead.
    pub fn find_secure_boot(arch: Arch) -> Result<Firmware> {
        first_installed(Firmware::secure_boot_candidates(arch), |path| path.is_file())
            .map_err(|searched| Error::SecureBootFirmwareNotFound { arch, searched })
    }

    /// The (code, vars template) locations [`Firmware::find_secure_boot`] tries for `arch`.
    pub fn secure_boot_candidates(arch: Arch) -> impl Iterator<Item = Firmware> {
        let list = match arch {
            Arch::X86_64 => X86_64_SECURE_BOOT,
            Arch::Aarch64 => AARCH64_SECURE_BOOT,
        };
        list.iter().map(|(code, vars)| Firmware { code: code.into(), vars_template: vars.into() })
    }

    /// Writes a private copy of the variable store to `dest`, sparse where the template is zero.
    /// On aarch64 the copy is padded to the 64 MiB the `virt` machine's flash requires.
    pub(crate) fn copy_vars(&self, arch: Arch, dest: &Path) -> Result<()> {
        let context = || format!("copying {} to {}", self.vars_template.display(), dest.display());
        sparse_copy(&self.vars_template, dest).map_err(|e| Error::io(context(), e))?;
        if arch == Arch::Aarch64 {
            let file = fs::OpenOptions::new().write(true).open(dest).map_err(|e| Error::io(context(), e))?;
            let len = file.metadata().map_err(|e| Error::io(context(), e))?.len();
            if len < VIRT_PFLASH_SIZE {
                file.set_len(VIRT_PFLASH_SIZE).map_err(|e| Error::io(context(), e))?;
            }
        }
        Ok(())
    }
}

/// [`Firmware::find`] with the environment and the file system passed in.
fn find_in(arch: Arch, env: impl Fn(&str) -> Option<OsString>, exists: impl Fn(&Path) -> bool) -> Result<Firmware> {
    let suffix = arch.as_str().to_ascii_uppercase();
    let arch_specific = (format!("KEEL_FIRMWARE_CODE_{suffix}"), format!("KEEL_FIRMWARE_VARS_{suffix}"));
    let generic = ("KEEL_FIRMWARE_CODE".to_owned(), "KEEL_FIRMWARE_VARS".to_owned());
    for (code_var, vars_var) in [arch_specific, generic] {
        let code = env(&code_var).filter(|v| !v.is_empty());
        let vars = env(&vars_var).filter(|v| !v.is_empty());
        match (code, vars) {
            (None, None) => continue,
            (Some(code), Some(vars)) => {
                let fw = Firmware { code: code.into(), vars_template: vars.into() };
                for path in [&fw.code, &fw.vars_template] {
                    if !exists(path) {
                        return Err(Error::FirmwareNotFound { arch, searched: vec![path.clone()] });
                    }
                }
                return Ok(fw);
            }
            _ => return Err(Error::Config(format!("set both {code_var} and {vars_var}, or neither"))),
        }
    }
    first_installed(Firmware::candidates(arch), exists).map_err(|searched| Error::FirmwareNotFound { arch, searched })
}

/// The first of `candidates` whose two files both exist, or the code files tried.
fn first_installed(
    candidates: impl Iterator<Item = Firmware>,
    exists: impl Fn(&Path) -> bool,
) -> std::result::Result<Firmware, Vec<PathBuf>> {
    let mut searched = Vec::new();
    for fw in candidates {
        if exists(&fw.code) && exists(&fw.vars_template) {
            return Ok(fw);
        }
        searched.push(fw.code);
    }
    Err(searched)
}

/// Copies `src` to `dest` block by block, leaving holes where `src` holds zeros. AAVMF's 64 MiB
/// variable store is all zeros, so this makes the per-VM copy nearly free.
fn sparse_copy(src: &Path, dest: &Path) -> std::io::Result<()> {
    const BLOCK: usize = 64 << 10;
    let mut input = File::open(src)?;
    let mut output = File::create(dest)?;
    let mut buf = vec![0u8; BLOCK];
    let mut len = 0u64;
    loop {
        let n = read_full(&mut input, &mut buf)?;
        if n == 0 {
            break;
        }
        if buf[..n].iter().all(|&b| b == 0) {
            output.seek(SeekFrom::Current(n as i64))?;
        } else {
            output.write_all(&buf[..n])?;
        }
        len += n as u64;
    }
    output.set_len(len)?;
    output.sync_all()
}

/// Reads until `buf` is full or the input ends; returns the count read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let map: HashMap<String, OsString> = pairs.iter().map(|(k, v)| (k.to_string(), OsString::from(v))).collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn debian_paths_come_first() {
        let fw = find_in(Arch::X86_64, env_of(&[]), |_| true).unwrap();
        assert_eq!(fw.code, Path::new("/usr/share/OVMF/OVMF_CODE_4M.fd"));
        assert_eq!(fw.vars_template, Path::new("/usr/share/OVMF/OVMF_VARS_4M.fd"));
        let fw = find_in(Arch::Aarch64, env_of(&[]), |_| true).unwrap();
        assert_eq!(fw.code, Path::new("/usr/share/AAVMF/AAVMF_CODE.fd"));
    }

    #[test]
    fn falls_through_to_other_distributions_and_needs_both_files() {
        // Fedora layout, plus a Debian code file whose vars template is missing.
        let present = [
            "/usr/share/AAVMF/AAVMF_CODE.fd",
            "/usr/share/edk2/aarch64/QEMU_EFI-pflash.raw",
            "/usr/share/edk2/aarch64/vars-template-pflash.raw",
        ];
        let fw = find_in(Arch::Aarch64, env_of(&[]), |p| present.iter().any(|q| p == Path::new(q))).unwrap();
        assert_eq!(fw.code, Path::new("/usr/share/edk2/aarch64/QEMU_EFI-pflash.raw"));
    }

    #[test]
    fn not_found_lists_the_searched_code_files() {
        match find_in(Arch::X86_64, env_of(&[]), |_| false) {
            Err(Error::FirmwareNotFound { arch, searched }) => {
                assert_eq!(arch, Arch::X86_64);
                assert_eq!(searched.len(), X86_64_CANDIDATES.len());
            }
            other => panic!("expected FirmwareNotFound, got {other:?}"),
        }
    }

    #[test]
    fn overrides_arch_specific_before_generic() {
        let env = env_of(&[
            ("KEEL_FIRMWARE_CODE", "/g/code"),
            ("KEEL_FIRMWARE_VARS", "/g/vars"),
            ("KEEL_FIRMWARE_CODE_AARCH64", "/a/code"),
            ("KEEL_FIRMWARE_VARS_AARCH64", "/a/vars"),
        ]);
        assert_eq!(find_in(Arch::Aarch64, &env, |_| true).unwrap().code, Path::new("/a/code"));
        assert_eq!(find_in(Arch::X86_64, &env, |_| true).unwrap().code, Path::new("/g/code"));
        assert!(matches!(find_in(Arch::X86_64, &env, |_| false), Err(Error::FirmwareNotFound { .. })));
        let half = env_of(&[("KEEL_FIRMWARE_CODE", "/g/code")]);
        assert!(matches!(find_in(Arch::X86_64, half, |_| true), Err(Error::Config(_))));
    }

    #[test]
    fn vars_copy_is_sparse_exact_and_padded_on_aarch64() {
        let tmp = tempfile::tempdir().unwrap();
        let template = tmp.path().join("vars");
        let mut content = vec![0u8; 300 << 10];
        content[100_000] = 0xaa;
        content[(300 << 10) - 1] = 0x55;
        fs::write(&template, &content).unwrap();
        let fw = Firmware { code: "/unused".into(), vars_template: template };
        let x86 = tmp.path().join("x86");
        fw.copy_vars(Arch::X86_64, &x86).unwrap();
        assert_eq!(fs::read(&x86).unwrap(), content);
        let arm = tmp.path().join("arm");
        fw.copy_vars(Arch::Aarch64, &arm).unwrap();
        let copied = fs::read(&arm).unwrap();
        assert_eq!(copied.len() as u64, VIRT_PFLASH_SIZE);
        assert_eq!(&copied[..content.len()], &content[..]);
    }

    #[test]
    fn secure_boot_firmware_is_debians_with_the_snakeoil_varstore() {
        let fw = first_installed(Firmware::secure_boot_candidates(Arch::X86_64), |_| true).unwrap();
        assert_eq!(fw.code, Path::new("/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"));
        assert_eq!(fw.vars_template, Path::new("/usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd"));
        let fw = first_installed(Firmware::secure_boot_candidates(Arch::Aarch64), |_| true).unwrap();
        assert_eq!(fw.vars_template, Path::new("/usr/share/AAVMF/AAVMF_VARS.snakeoil.fd"));
        for arch in Arch::ALL {
            let installed = Firmware::find_secure_boot(arch).unwrap();
            assert!(installed.code.is_file() && installed.vars_template.is_file(), "{installed:?}");
        }
    }

    #[test]
    fn installed_firmware_is_found_and_aavmf_vars_keep_64_mib() {
        let tmp = tempfile::tempdir().unwrap();
        for arch in Arch::ALL {
            let fw = Firmware::find(arch).unwrap();
            let copy = tmp.path().join(arch.as_str());
            fw.copy_vars(arch, &copy).unwrap();
            let template_len = fs::metadata(&fw.vars_template).unwrap().len();
            let copy_len = fs::metadata(&copy).unwrap().len();
            assert_eq!(copy_len, template_len.max(if arch == Arch::Aarch64 { VIRT_PFLASH_SIZE } else { 0 }));
        }
    }
}
