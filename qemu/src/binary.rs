//! Finding the QEMU programs: `qemu-system-<arch>` and `qemu-img`.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::{Arch, Error, Result};

/// Directories searched after `PATH`, in order. Fedora and RHEL keep `qemu-kvm` in `/usr/libexec`.
const STANDARD_DIRS: [&str; 3] = ["/usr/bin", "/usr/local/bin", "/usr/libexec"];

/// The environment variable that overrides the QEMU system emulator for `arch`:
/// `KEEL_QEMU_X86_64` or `KEEL_QEMU_AARCH64`.
pub fn qemu_env_var(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "KEEL_QEMU_X86_64",
        Arch::Aarch64 => "KEEL_QEMU_AARCH64",
    }
}

/// The environment variable that overrides `qemu-img`.
pub const QEMU_IMG_ENV: &str = "KEEL_QEMU_IMG";

/// Finds `qemu-system-x86_64` or `qemu-system-aarch64`.
///
/// Order: the override variable ([`qemu_env_var`]), which must name an executable file if set;
/// then `PATH`; then `/usr/bin`, `/usr/local/bin`, `/usr/libexec`; last, for the host's own
/// architecture only, Fedora/RHEL's `/usr/libexec/qemu-kvm`.
pub fn find_qemu(arch: Arch) -> Result<PathBuf> {
    let env = qemu_env_var(arch);
    let kvm_only: &[&str] = if Arch::host() == Some(arch) { &["/usr/libexec/qemu-kvm"] } else { &[] };
    search(arch.qemu_binary_name(), env, std::env::var_os(env), std::env::var_os("PATH"), &STANDARD_DIRS, kvm_only)
}

/// Finds `qemu-img` (override: `KEEL_QEMU_IMG`), in the same places as [`find_qemu`].
pub fn find_qemu_img() -> Result<PathBuf> {
    search("qemu-img", QEMU_IMG_ENV, std::env::var_os(QEMU_IMG_ENV), std::env::var_os("PATH"), &STANDARD_DIRS, &[])
}

/// The search behind [`find_qemu`] and [`find_qemu_img`], with its inputs passed in.
fn search(
    program: &str,
    env_name: &str,
    env_value: Option<OsString>,
    path_var: Option<OsString>,
    dirs: &[&str],
    last_resorts: &[&str],
) -> Result<PathBuf> {
    let not_found = |searched| Error::QemuNotFound {
        program: program.to_owned(),
        searched,
        hint: format!("{env_name}=/path/to/{program}"),
    };
    if let Some(value) = env_value.filter(|v| !v.is_empty()) {
        let path = PathBuf::from(value);
        return if is_executable(&path) { Ok(path) } else { Err(not_found(vec![path])) };
    }
    let mut searched: Vec<PathBuf> = Vec::new();
    let path_dirs = path_var.as_deref().map(std::env::split_paths).into_iter().flatten();
    let candidates = path_dirs
        .filter(|dir| !dir.as_os_str().is_empty())
        .chain(dirs.iter().map(PathBuf::from))
        .map(|dir| dir.join(program))
        .chain(last_resorts.iter().map(PathBuf::from));
    for candidate in candidates {
        if searched.contains(&candidate) {
            continue;
        }
        if is_executable(&candidate) {
            return Ok(candidate);
        }
        searched.push(candidate);
    }
    Err(not_found(searched))
}

fn is_executable(path: &Path) -> bool {
    path.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn executable(dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn path_comes_before_standard_dirs_and_non_executables_are_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b, std_dir) = (tmp.path().join("a"), tmp.path().join("b"), tmp.path().join("std"));
        for d in [&a, &b, &std_dir] {
            fs::create_dir(d).unwrap();
        }
        fs::write(a.join("qemu-img"), "not executable").unwrap();
        let in_b = executable(&b, "qemu-img");
        let in_std = executable(&std_dir, "qemu-img");
        let path_var = std::env::join_paths([&a, &b]).unwrap();
        let std_dirs = [std_dir.to_str().unwrap()];
        let found = search("qemu-img", "X", None, Some(path_var), &std_dirs, &[]).unwrap();
        assert_eq!(found, in_b);
        let found = search("qemu-img", "X", None, None, &std_dirs, &[]).unwrap();
        assert_eq!(found, in_std);
    }

    #[test]
    fn override_wins_and_must_exist() {
        let tmp = tempfile::tempdir().unwrap();
        let custom = executable(tmp.path(), "my-qemu");
        let found = search("qemu-system-x86_64", "X", Some(custom.clone().into()), None, &[], &[]).unwrap();
        assert_eq!(found, custom);
        let missing = tmp.path().join("missing");
        match search("qemu-system-x86_64", "KEEL_QEMU_X86_64", Some(missing.clone().into()), None, &["/usr/bin"], &[]) {
            Err(Error::QemuNotFound { searched, hint, .. }) => {
                assert_eq!(searched, vec![missing]);
                assert!(hint.starts_with("KEEL_QEMU_X86_64="), "{hint}");
            }
            other => panic!("expected QemuNotFound, got {other:?}"),
        }
    }

    #[test]
    fn not_found_lists_every_place_once() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_str().unwrap();
        let path_var = std::env::join_paths([dir, dir]).unwrap();
        let err = search("qemu-nothing", "X", None, Some(path_var), &[dir], &["/nonexistent/qemu-kvm"]).unwrap_err();
        match err {
            Error::QemuNotFound { searched, .. } => {
                assert_eq!(searched, vec![tmp.path().join("qemu-nothing"), PathBuf::from("/nonexistent/qemu-kvm")])
            }
            other => panic!("expected QemuNotFound, got {other:?}"),
        }
    }

    #[test]
    fn finds_the_installed_emulators() {
        // Debian's qemu-system-x86, qemu-system-arm and qemu-utils are installed on keel's build
        // machines; a missing one is a setup bug worth failing on.
        for arch in Arch::ALL {
            let path = find_qemu(arch).unwrap();
            assert!(path.ends_with(arch.qemu_binary_name()) || path.ends_with("qemu-kvm"), "{}", path.display());
        }
        assert!(find_qemu_img().unwrap().ends_with("qemu-img"));
    }
}
