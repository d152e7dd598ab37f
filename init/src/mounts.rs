//! The host's own filesystems: leaving the initramfs for a tmpfs root, then /proc, /sys, /dev,
//! /run and the cgroup2 hierarchy.

use std::fs;
use std::path::Path;

use anyhow::Context;
use libc::{c_ulong, MS_MOVE, MS_NODEV, MS_NOEXEC, MS_NOSUID};

use crate::sys;

/// Where the new root tmpfs is mounted before it is moved over `/`.
pub const NEW_ROOT: &str = "/keel-root";

/// One mount of the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mount {
    /// Source (a name for virtual filesystems).
    pub source: &'static str,
    /// Mount point, created if missing.
    pub target: &'static str,
    /// Filesystem type.
    pub fstype: &'static str,
    /// MS_* flags.
    pub flags: c_ulong,
    /// Filesystem options.
    pub data: Option<&'static str>,
}

/// The host's filesystems, in mount order (parents first).
pub const BASE: [Mount; 5] = [
    Mount { source: "proc", target: "/proc", fstype: "proc", flags: MS_NOSUID | MS_NODEV | MS_NOEXEC, data: None },
    Mount { source: "sysfs", target: "/sys", fstype: "sysfs", flags: MS_NOSUID | MS_NODEV | MS_NOEXEC, data: None },
    Mount { source: "devtmpfs", target: "/dev", fstype: "devtmpfs", flags: MS_NOSUID, data: Some("mode=0755") },
    Mount { source: "tmpfs", target: "/run", fstype: "tmpfs", flags: MS_NOSUID | MS_NODEV, data: Some("mode=0755") },
    Mount {
        source: "cgroup2",
        target: "/sys/fs/cgroup",
        fstype: "cgroup2",
        flags: MS_NOSUID | MS_NODEV | MS_NOEXEC,
        data: None,
    },
];

/// Move onto a fresh tmpfs root, like switch_root: mount it at `dir`, move it over `/`, chroot.
///
/// The initramfs is the kernel's rootfs, which pivot_root(2) refuses to leave (it has no parent
/// mount), and every container's pivot_root starts from a copy of init's root. On a tmpfs mounted
/// over rootfs it works, and a container's old root can be detached whole. Read what is needed from
/// the initramfs first: it is out of reach afterwards.
pub fn leave_initramfs(dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    sys::mount(Some("tmpfs"), dir, Some("tmpfs"), MS_NOSUID | MS_NODEV, Some("mode=0755"))
        .with_context(|| format!("mount the root tmpfs on {}", dir.display()))?;
    std::env::set_current_dir(dir).with_context(|| format!("chdir to {}", dir.display()))?;
    sys::mount(Some("."), Path::new("/"), None, MS_MOVE, None).context("move the root tmpfs over /")?;
    std::os::unix::fs::chroot(".").context("chroot into the root tmpfs")?;
    std::env::set_current_dir("/").context("chdir to /")?;
    Ok(())
}

/// Mount `mounts` in order, creating each mount point.
pub fn mount_all(mounts: &[Mount]) -> anyhow::Result<()> {
    for m in mounts {
        let target = Path::new(m.target);
        fs::create_dir_all(target).with_context(|| format!("create {}", m.target))?;
        sys::mount(Some(m.source), target, Some(m.fstype), m.flags, m.data)
            .with_context(|| format!("mount {} on {}", m.fstype, m.target))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_are_mounted_before_children() {
        for (i, m) in BASE.iter().enumerate() {
            assert!(m.target.starts_with('/'), "{} is not absolute", m.target);
            for later in BASE.iter().skip(i + 1) {
                assert!(
                    !m.target.starts_with(later.target),
                    "{} is mounted before its parent {}",
                    m.target,
                    later.target
                );
            }
        }
        let targets: Vec<&str> = BASE.iter().map(|m| m.target).collect();
        assert_eq!(targets, ["/proc", "/sys", "/dev", "/run", "/sys/fs/cgroup"]);
    }

    #[test]
    fn run_is_private_to_root() {
        let run = BASE.iter().find(|m| m.target == "/run").unwrap();
        assert_eq!((run.fstype, run.data), ("tmpfs", Some("mode=0755")));
        assert!(keel_plan::IMAGES_MOUNT.starts_with("/run/") && keel_plan::DATA_MOUNT.starts_with("/run/"));
    }
}
