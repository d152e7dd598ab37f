//! The Secure Boot line: whether the firmware booted with Secure Boot on, and the kernel's
//! lockdown mode, e.g. `keel: secure boot on, lockdown integrity`.
//!
//! Secure Boot is the EFI variable `SecureBoot` (4 attribute bytes, then 1 for on, 0 for off),
//! read through efivarfs (a module in Debian's kernel, which the builder adds when the kernel has
//! it). Lockdown is the bracketed word of securityfs's `lockdown` (`none [integrity]
//! confidentiality`): Debian's kernel locks itself down to `integrity` when Secure Boot is on.
//! Both filesystems are mounted read-only for the reading and unmounted again; nothing here
//! fails the boot or waits.

use std::fs;
use std::path::Path;

use libc::{MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY};

use crate::{console, sys};

/// Where sysfs offers the EFI variables (present only on an EFI boot).
pub const EFIVARS: &str = "/sys/firmware/efi/efivars";
/// The `SecureBoot` variable of EFI_GLOBAL_VARIABLE, as efivarfs names it.
pub const SECURE_BOOT_VAR: &str = "SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c";
/// Where sysfs offers securityfs.
pub const SECURITYFS: &str = "/sys/kernel/security";

/// Print the Secure Boot line.
pub fn report() {
    let secure_boot = read_secure_boot();
    let lockdown = read_lockdown();
    console::say(describe(&secure_boot, &lockdown));
}

/// Whether the firmware booted with Secure Boot on (off when it has no `SecureBoot` variable),
/// or why that is unknown.
fn read_secure_boot() -> Result<bool, String> {
    let dir = Path::new(EFIVARS);
    if !dir.is_dir() {
        return Err("not an EFI boot".into());
    }
    read_mounted(dir, "efivarfs", |d| {
        match fs::read(d.join(SECURE_BOOT_VAR)) {
            Ok(bytes) => secure_boot_value(&bytes),
            // A firmware without Secure Boot has no such variable: it checked nothing.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(format!("read SecureBoot: {e}")),
        }
    })
}

/// The lockdown mode, or why it is unknown.
fn read_lockdown() -> Result<String, String> {
    read_mounted(Path::new(SECURITYFS), "securityfs", |d| {
        let text = fs::read_to_string(d.join("lockdown")).map_err(|e| format!("read lockdown: {e}"))?;
        lockdown_mode(&text).map(str::to_string).ok_or_else(|| format!("no mode in `{}`", text.trim()))
    })
}

/// Mount `fstype` read-only on `dir`, run `read`, unmount. An already mounted `dir` (EBUSY) is
/// read as it is and left mounted; an unknown filesystem (ENODEV) is `no FSTYPE`.
fn read_mounted<T>(dir: &Path, fstype: &str, read: impl Fn(&Path) -> Result<T, String>) -> Result<T, String> {
    let flags = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC;
    match sys::mount(Some(fstype), dir, Some(fstype), flags, None) {
        Ok(()) => {
            let value = read(dir);
            if let Err(e) = sys::umount2(dir, libc::MNT_DETACH) {
                console::say(format_args!("unmount {fstype} from {}: {e}", dir.display()));
            }
            value
        }
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => read(dir),
        // The kernel does not know the filesystem (its module is not loaded).
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Err(format!("no {fstype}")),
        Err(e) => Err(format!("mount {fstype}: {e}")),
    }
}

/// The value of the `SecureBoot` variable's file: attributes (4 bytes), then the value.
pub fn secure_boot_value(bytes: &[u8]) -> Result<bool, String> {
    match bytes {
        [_, _, _, _, 1] => Ok(true),
        [_, _, _, _, 0] => Ok(false),
        _ => Err(format!("SecureBoot holds {} bytes", bytes.len())),
    }
}

/// The bracketed word of securityfs's `lockdown`.
pub fn lockdown_mode(text: &str) -> Option<&str> {
    let (_, rest) = text.split_once('[')?;
    let (mode, _) = rest.split_once(']')?;
    Some(mode)
}

/// The line, e.g. `secure boot on, lockdown integrity`.
pub fn describe(secure_boot: &Result<bool, String>, lockdown: &Result<String, String>) -> String {
    let sb = match secure_boot {
        Ok(true) => "secure boot on".to_string(),
        Ok(false) => "secure boot off".to_string(),
        Err(why) => format!("secure boot unknown ({why})"),
    };
    match lockdown {
        Ok(mode) => format!("{sb}, lockdown {mode}"),
        Err(why) => format!("{sb}, lockdown unknown ({why})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_variable_and_the_mode() {
        assert_eq!(secure_boot_value(&[6, 0, 0, 0, 1]), Ok(true));
        assert_eq!(secure_boot_value(&[6, 0, 0, 0, 0]), Ok(false));
        assert!(secure_boot_value(&[6, 0, 0, 0]).is_err());
        assert!(secure_boot_value(&[6, 0, 0, 0, 2]).is_err());
        assert_eq!(lockdown_mode("none [integrity] confidentiality\n"), Some("integrity"));
        assert_eq!(lockdown_mode("[none] integrity confidentiality\n"), Some("none"));
        assert_eq!(lockdown_mode("none integrity\n"), None);
    }

    #[test]
    fn describes() {
        assert_eq!(describe(&Ok(true), &Ok("integrity".into())), "secure boot on, lockdown integrity");
        assert_eq!(describe(&Ok(false), &Ok("none".into())), "secure boot off, lockdown none");
        assert_eq!(
            describe(&Err("no efivarfs".into()), &Err("mount securityfs: x".into())),
            "secure boot unknown (no efivarfs), lockdown unknown (mount securityfs: x)"
        );
    }
}
