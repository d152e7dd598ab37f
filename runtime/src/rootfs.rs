//! The container's root filesystem: its tree, read-only or under a throwaway overlay (mounted by
//! the parent, [`crate::overlay`]), the tmpfs
//! mounts it asks for, and the `pivot_root` into it once everything is mounted ([`crate::kernfs`]
//! and [`crate::devfs`] add `/proc`, `/sys` and `/dev` in between).
//!
//! Every mount is made under the new root *before* `pivot_root`, while the host's `/dev` is still
//! reachable for the device bind mounts. Mount targets come from the image, so [`check`] first makes
//! sure each is a real directory and not a symlink (which the mount would follow out of the tree).
//! The images partition is mounted read-only, so nothing can swap one for a symlink afterwards.
//!
//! The child's mount namespace belongs to its user namespace, so the flags the host's mounts had
//! (`nosuid`, `nodev`, `noexec`, `ro`) are locked: a bind remount must repeat them or it fails with
//! EPERM. The parent reads them with statvfs(3) ([`locked_flags`]).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use libc::{c_ulong, MNT_DETACH, MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_PRIVATE, MS_RDONLY, MS_REC, MS_REMOUNT};

use crate::child::{Op, Step};
use crate::error::RuntimeError;
use crate::process::cstring;
use crate::sys;

/// Directories of the tree the runtime always mounts over (the builder creates them in every tree).
pub const MOUNT_POINTS: [&str; 3] = ["proc", "sys", "dev"];

/// Where the tree comes from and how it is made writable (or not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// The tree itself, bind-mounted and remounted read-only; `locked` are the `MS_*` flags of its
    /// mount on the host that the remount must keep.
    ReadOnly {
        /// `MS_NOSUID`, `MS_NODEV`, `MS_NOEXEC` as set on the host mount holding the tree.
        locked: c_ulong,
    },
    /// A writable overlay of the tree, mounted by the parent at `merged` (see [`crate::overlay`]):
    /// bind-mounted as it is.
    Overlay {
        /// The overlay's mount point on the host, `<Host.scratch>/<name>/merged`.
        merged: PathBuf,
    },
}

/// The root tree of a container: `images_root/rootfs`, where `rootfs` must be one plain name.
pub fn root_dir(images_root: &Path, rootfs: &str) -> Result<PathBuf, RuntimeError> {
    if plain_name(rootfs) {
        Ok(images_root.join(rootfs))
    } else {
        Err(RuntimeError::InvalidRootfs(rootfs.to_string()))
    }
}

/// True if `name` is one path component, not `.` or `..`.
pub fn plain_name(name: &str) -> bool {
    let mut parts = Path::new(name).components();
    matches!((parts.next(), parts.next()), (Some(Component::Normal(_)), None))
}

/// Check the tree is a directory and that [`MOUNT_POINTS`] and every `tmpfs` path in it are
/// directories, with no symlink on the way. Returns the `tmpfs` paths, relative to the tree.
pub fn check(root: &Path, tmpfs: &[String]) -> Result<Vec<PathBuf>, RuntimeError> {
    let is_dir = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir());
    if !is_dir(root) {
        return Err(RuntimeError::MissingRoot { path: root.to_path_buf() });
    }
    for name in MOUNT_POINTS {
        let p = root.join(name);
        if !is_dir(&p) {
            return Err(RuntimeError::MountPoint { path: p });
        }
    }
    let mut relative = Vec::new();
    for path in tmpfs {
        let rel = tmpfs_path(path)?;
        let mut p = root.to_path_buf();
        for part in rel.components() {
            p.push(part);
            if !is_dir(&p) {
                return Err(RuntimeError::MountPoint { path: p });
            }
        }
        relative.push(rel);
    }
    Ok(relative)
}

/// `/a/b` as `a/b`; refuses relative paths, `..`, and `/` itself.
fn tmpfs_path(path: &str) -> Result<PathBuf, RuntimeError> {
    let bad = || RuntimeError::InvalidTmpfs(path.to_string());
    let mut parts = Path::new(path).components();
    if parts.next() != Some(Component::RootDir) {
        return Err(bad());
    }
    let mut rel = PathBuf::new();
    for part in parts {
        match part {
            Component::Normal(p) => rel.push(p),
            _ => return Err(bad()),
        }
    }
    if rel.as_os_str().is_empty() {
        return Err(bad());
    }
    Ok(rel)
}

/// The `MS_NOSUID`, `MS_NODEV` and `MS_NOEXEC` flags of the host mount holding `path`.
pub fn locked_flags(path: &Path) -> Result<c_ulong, RuntimeError> {
    let c = c_path(path)?;
    let st = sys::mount_flags(&c).map_err(|source| RuntimeError::Stat { path: path.to_path_buf(), source })?;
    let pairs = [(libc::ST_NOSUID, MS_NOSUID), (libc::ST_NODEV, MS_NODEV), (libc::ST_NOEXEC, MS_NOEXEC)];
    Ok(pairs.iter().filter(|(st_flag, _)| st & st_flag != 0).fold(0, |acc, (_, ms)| acc | ms))
}

pub(crate) fn c_path(p: &Path) -> Result<CString, RuntimeError> {
    cstring(p.as_os_str().as_bytes(), "a path")
}

/// The steps that make the container's root from the tree `root`, mounted at the returned path
/// (the tree itself, or the overlay's merged directory).
pub(crate) fn root_steps(root: &Path, layout: &Layout) -> Result<(Vec<Step>, PathBuf), RuntimeError> {
    let root_c = c_path(root)?;
    let mut steps = vec![Step::new(
        "make every mount private",
        Op::Mount { source: None, target: cstring("/", "")?, fstype: None, flags: MS_REC | MS_PRIVATE, data: None },
    )];
    match layout {
        Layout::ReadOnly { locked } => {
            steps.push(Step::new(
                format!("bind-mount the root tree {}", root.display()),
                Op::Mount {
                    source: Some(root_c.clone()),
                    target: root_c.clone(),
                    fstype: None,
                    flags: MS_BIND | MS_REC,
                    data: None,
                },
            ));
            steps.push(Step::new(
                "remount the root tree read-only",
                Op::Mount {
                    source: None,
                    target: root_c,
                    fstype: None,
                    flags: MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | locked,
                    data: None,
                },
            ));
            Ok((steps, root.to_path_buf()))
        }
        Layout::Overlay { merged } => {
            steps.push(Step::new(
                format!("bind-mount the overlay {}", merged.display()),
                Op::Mount {
                    source: Some(c_path(merged)?),
                    target: c_path(merged)?,
                    fstype: None,
                    flags: MS_BIND | MS_REC,
                    data: None,
                },
            ));
            Ok((steps, merged.clone()))
        }
    }
}

/// A tmpfs at each of `paths` (relative to `new_root`): mode 1777 for `tmp`, 0755 otherwise.
pub(crate) fn tmpfs_steps(new_root: &Path, paths: &[PathBuf]) -> Result<Vec<Step>, RuntimeError> {
    paths
        .iter()
        .map(|rel| {
            let mode = if rel == Path::new("tmp") { "mode=1777" } else { "mode=755" };
            tmpfs(&format!("/{}", rel.display()), c_path(&new_root.join(rel))?, MS_NOSUID | MS_NODEV, mode)
        })
        .collect()
}

/// Into `new_root`, with the old root detached. Ends at `/` of the new root.
pub(crate) fn pivot_steps(new_root: &Path) -> Result<Vec<Step>, RuntimeError> {
    // pivot_root(".", ".") stacks the old root on top of the new one at "/"; detaching "." then
    // drops the old root and every mount under it, with no put_old directory in the tree.
    Ok(vec![
        Step::new(format!("chdir to the new root {}", new_root.display()), Op::Chdir(c_path(new_root)?)),
        Step::new("pivot_root", Op::PivotRoot { new_root: cstring(".", "")?, put_old: cstring(".", "")? }),
        Step::new("detach the old root", Op::Umount { target: cstring(".", "")?, flags: MNT_DETACH }),
        Step::new("chdir to /", Op::Chdir(cstring("/", "")?)),
    ])
}

/// A step mounting a tmpfs with `flags` and `data` on `target`, named `mount tmpfs on <name>`.
pub(crate) fn tmpfs(name: &str, target: CString, flags: c_ulong, data: &str) -> Result<Step, RuntimeError> {
    Ok(Step::new(
        format!("mount tmpfs on {name}"),
        Op::Mount {
            source: Some(cstring("tmpfs", "")?),
            target,
            fstype: Some(cstring("tmpfs", "")?),
            flags,
            data: Some(cstring(data, "")?),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::child::{self, fake::Recorder, ChildPlan};
    use crate::process::Exec;

    fn record(steps: Vec<Step>) -> Vec<String> {
        let plan = ChildPlan { steps, exec: Exec::for_tests(&[], "exec") };
        let mut r = Recorder::default();
        child::run(&plan, &mut r);
        r.calls
    }

    #[test]
    fn rootfs_must_be_one_plain_name() {
        let r = Path::new("/run/keel/images");
        assert_eq!(root_dir(r, "abc").unwrap(), Path::new("/run/keel/images/abc"));
        for bad in ["", ".", "..", "../x", "a/b", "/abc", "a/.."] {
            assert!(matches!(root_dir(r, bad), Err(RuntimeError::InvalidRootfs(_))), "{bad:?} accepted");
        }
    }

    #[test]
    fn mount_points_must_be_real_directories() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("tree");
        assert!(matches!(check(&root, &[]), Err(RuntimeError::MissingRoot { .. })));
        for d in MOUNT_POINTS.iter().chain(&["tmp", "var/cache"]) {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let tmpfs = ["/tmp".to_string(), "/var/cache".to_string()];
        assert_eq!(check(&root, &tmpfs).unwrap(), [Path::new("tmp"), Path::new("var/cache")]);
        std::fs::remove_dir(root.join("dev")).unwrap();
        std::os::unix::fs::symlink("/dev", root.join("dev")).unwrap();
        match check(&root, &[]) {
            Err(RuntimeError::MountPoint { path }) => assert_eq!(path, root.join("dev")),
            other => panic!("symlinked mount point accepted: {other:?}"),
        }
    }

    #[test]
    fn tmpfs_paths_are_checked_component_by_component() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        for d in MOUNT_POINTS {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        // A symlinked parent would send the mount out of the tree.
        std::os::unix::fs::symlink("/etc", root.join("var")).unwrap();
        match check(root, &["/var/cache".to_string()]) {
            Err(RuntimeError::MountPoint { path }) => assert_eq!(path, root.join("var")),
            other => panic!("accepted: {other:?}"),
        }
        match check(root, &["/missing".to_string()]) {
            Err(RuntimeError::MountPoint { path }) => assert_eq!(path, root.join("missing")),
            other => panic!("accepted: {other:?}"),
        }
        for bad in ["tmp", "/", "/a/../tmp", ""] {
            let r = check(root, &[bad.to_string()]);
            assert!(matches!(r, Err(RuntimeError::InvalidTmpfs(_))), "{bad:?}: {r:?}");
        }
    }

    #[test]
    fn a_read_only_root_is_a_bind_remounted_with_the_locked_flags() {
        let (steps, new_root) =
            root_steps(Path::new("/images/abc"), &Layout::ReadOnly { locked: MS_NOSUID | MS_NOEXEC }).unwrap();
        assert_eq!(new_root, Path::new("/images/abc"));
        assert_eq!(
            record(steps),
            [
                "mount - / - 0x44000 -",
                "mount /images/abc /images/abc - 0x5000 -",
                // MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
                "mount - /images/abc - 0x102f -",
            ]
        );
    }

    #[test]
    fn a_writable_root_is_the_parents_overlay_bound_as_is() {
        let layout = Layout::Overlay { merged: PathBuf::from("/run/keel/containers/web/merged") };
        let (steps, new_root) = root_steps(Path::new("/images/abc"), &layout).unwrap();
        assert_eq!(new_root, Path::new("/run/keel/containers/web/merged"));
        assert_eq!(
            record(steps),
            [
                "mount - / - 0x44000 -",
                "mount /run/keel/containers/web/merged /run/keel/containers/web/merged - 0x5000 -",
            ]
        );
    }

    #[test]
    fn tmpfs_mounts_and_the_pivot() {
        let mut steps = tmpfs_steps(Path::new("/r"), &[PathBuf::from("tmp"), PathBuf::from("var/cache")]).unwrap();
        steps.extend(pivot_steps(Path::new("/r")).unwrap());
        assert_eq!(steps.first().map(|s| s.what.as_str()), Some("mount tmpfs on /tmp"));
        assert_eq!(
            record(steps),
            [
                "mount tmpfs /r/tmp tmpfs 0x6 mode=1777",
                "mount tmpfs /r/var/cache tmpfs 0x6 mode=755",
                "chdir /r",
                "pivot_root . .",
                "umount2 . 0x2",
                "chdir /",
            ]
        );
    }

    #[test]
    fn locked_flags_come_from_the_host_mount() {
        // What /proc/self/mounts says of /proc's own mount.
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        let options = mounts.lines().find_map(|l| l.strip_prefix("proc /proc proc ")).unwrap();
        let options: Vec<&str> = options.split(&[',', ' ']).collect();
        let expected = [("nosuid", MS_NOSUID), ("nodev", MS_NODEV), ("noexec", MS_NOEXEC)]
            .iter()
            .filter(|(o, _)| options.contains(o))
            .fold(0, |acc, (_, f)| acc | f);
        assert_eq!(locked_flags(Path::new("/proc/self")).unwrap(), expected, "{options:?}");
        assert!(matches!(locked_flags(Path::new("/no/such/path")), Err(RuntimeError::Stat { .. })));
    }
}
