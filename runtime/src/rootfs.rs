//! The container's root filesystem: its tree bind-mounted onto itself, fresh `/proc`, a small
//! `/dev`, tmpfs `/tmp` and `/run`, then `pivot_root` into it and the old root detached.
//!
//! Every mount is made under the new root *before* `pivot_root`, while the host's `/dev` is still
//! reachable for the device bind mounts. Mount targets come from the image, so [`check`] first makes
//! sure each is a real directory and not a symlink (which the mount would follow out of the tree).
//! The images partition is mounted read-only, so nothing can swap one for a symlink afterwards.

use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use libc::{MNT_DETACH, MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_PRIVATE, MS_REC};

use crate::child::{Op, Step};
use crate::error::RuntimeError;
use crate::process::cstring;

/// Directories of the tree the runtime mounts over (the builder creates them in every tree).
pub const MOUNT_POINTS: [&str; 4] = ["proc", "dev", "tmp", "run"];

/// Host device nodes bind-mounted into the container's `/dev`.
pub const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Symlinks in the container's `/dev`: (name, target).
pub const DEV_LINKS: [(&str, &str); 4] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
];

/// The root tree of a container: `images_root/rootfs`, where `rootfs` must be one plain name.
pub fn root_dir(images_root: &Path, rootfs: &str) -> Result<PathBuf, RuntimeError> {
    let mut parts = Path::new(rootfs).components();
    match (parts.next(), parts.next()) {
        (Some(Component::Normal(_)), None) => Ok(images_root.join(rootfs)),
        _ => Err(RuntimeError::InvalidRootfs(rootfs.to_string())),
    }
}

/// Check the tree is a directory and each mount point in it is a directory, not a symlink.
pub fn check(root: &Path) -> Result<(), RuntimeError> {
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
    Ok(())
}

/// The steps that build the container's root from `root`, with device nodes taken from `host_dev`.
/// Ends inside the new root, at `/`.
pub(crate) fn steps(root: &Path, host_dev: &Path) -> Result<Vec<Step>, RuntimeError> {
    let c = |p: &Path| cstring(p.as_os_str().as_bytes(), "the root path");
    let under = |rel: &str| c(&root.join(rel));
    let root_c = c(root)?;
    let mut steps = vec![
        Step::new(
            "make every mount private",
            Op::Mount { source: None, target: cstring("/", "")?, fstype: None, flags: MS_REC | MS_PRIVATE, data: None },
        ),
        Step::new(
            format!("bind-mount the root tree {}", root.display()),
            Op::Mount {
                source: Some(root_c.clone()),
                target: root_c.clone(),
                fstype: None,
                flags: MS_BIND | MS_REC,
                data: None,
            },
        ),
        Step::new(
            "mount proc on /proc",
            Op::Mount {
                source: Some(cstring("proc", "")?),
                target: under("proc")?,
                fstype: Some(cstring("proc", "")?),
                flags: MS_NOSUID | MS_NODEV | MS_NOEXEC,
                data: None,
            },
        ),
        // nodev: nothing created in this tmpfs works as a device; the bind-mounted nodes below
        // are mounts of their own and keep working.
        tmpfs("/dev", under("dev")?, MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755,size=64k")?,
    ];
    for name in DEVICES {
        let target = under(&format!("dev/{name}"))?;
        steps.push(Step::new(format!("create /dev/{name}"), Op::CreateFile { path: target.clone(), mode: 0o666 }));
        steps.push(Step::new(
            format!("bind-mount {} on /dev/{name}", host_dev.join(name).display()),
            Op::Mount { source: Some(c(&host_dev.join(name))?), target, fstype: None, flags: MS_BIND, data: None },
        ));
    }
    for (name, target) in DEV_LINKS {
        steps.push(Step::new(
            format!("symlink /dev/{name}"),
            Op::Symlink { target: cstring(target, "")?, link: under(&format!("dev/{name}"))? },
        ));
    }
    steps.push(tmpfs("/tmp", under("tmp")?, MS_NOSUID | MS_NODEV, "mode=1777")?);
    steps.push(tmpfs("/run", under("run")?, MS_NOSUID | MS_NODEV, "mode=755")?);
    // pivot_root(".", ".") stacks the old root on top of the new one at "/"; detaching "." then
    // drops the old root and every mount under it, with no put_old directory in the tree.
    steps.push(Step::new(format!("chdir to the root tree {}", root.display()), Op::Chdir(root_c)));
    steps.push(Step::new("pivot_root", Op::PivotRoot { new_root: cstring(".", "")?, put_old: cstring(".", "")? }));
    steps.push(Step::new("detach the old root", Op::Umount { target: cstring(".", "")?, flags: MNT_DETACH }));
    steps.push(Step::new("chdir to /", Op::Chdir(cstring("/", "")?)));
    Ok(steps)
}

fn tmpfs(name: &str, target: std::ffi::CString, flags: libc::c_ulong, data: &str) -> Result<Step, RuntimeError> {
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
        assert!(matches!(check(&root), Err(RuntimeError::MissingRoot { .. })));
        for d in MOUNT_POINTS {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        check(&root).unwrap();
        std::fs::remove_dir(root.join("dev")).unwrap();
        std::os::unix::fs::symlink("/dev", root.join("dev")).unwrap();
        match check(&root) {
            Err(RuntimeError::MountPoint { path }) => assert_eq!(path, root.join("dev")),
            other => panic!("symlinked mount point accepted: {other:?}"),
        }
    }

    #[test]
    fn the_mounts_come_in_order_with_their_flags() {
        let plan = ChildPlan {
            steps: steps(Path::new("/images/abc"), Path::new("/dev")).unwrap(),
            exec: Exec::for_tests(&["/bin/true"], "exec /bin/true"),
        };
        let mut r = Recorder::default();
        child::run(&plan, &mut r);
        let expected = [
            "mount - / - 0x44000 -",
            "mount /images/abc /images/abc - 0x5000 -",
            "mount proc /images/abc/proc proc 0xe -",
            "mount tmpfs /images/abc/dev tmpfs 0xe mode=755,size=64k",
            "create /images/abc/dev/null 666",
            "mount /dev/null /images/abc/dev/null - 0x1000 -",
            "create /images/abc/dev/zero 666",
            "mount /dev/zero /images/abc/dev/zero - 0x1000 -",
            "create /images/abc/dev/full 666",
            "mount /dev/full /images/abc/dev/full - 0x1000 -",
            "create /images/abc/dev/random 666",
            "mount /dev/random /images/abc/dev/random - 0x1000 -",
            "create /images/abc/dev/urandom 666",
            "mount /dev/urandom /images/abc/dev/urandom - 0x1000 -",
            "create /images/abc/dev/tty 666",
            "mount /dev/tty /images/abc/dev/tty - 0x1000 -",
            "symlink /images/abc/dev/fd -> /proc/self/fd",
            "symlink /images/abc/dev/stdin -> /proc/self/fd/0",
            "symlink /images/abc/dev/stdout -> /proc/self/fd/1",
            "symlink /images/abc/dev/stderr -> /proc/self/fd/2",
            "mount tmpfs /images/abc/tmp tmpfs 0x6 mode=1777",
            "mount tmpfs /images/abc/run tmpfs 0x6 mode=755",
            "chdir /images/abc",
            "pivot_root . .",
            "umount2 . 0x2",
            "chdir /",
            "execve /bin/true [\"prog\"]",
        ];
        assert_eq!(r.calls, expected);
    }

    #[test]
    fn a_failing_mount_is_named() {
        let plan = ChildPlan {
            steps: steps(Path::new("/images/abc"), Path::new("/dev")).unwrap(),
            exec: Exec::for_tests(&["/bin/true"], "exec /bin/true"),
        };
        let mut r = Recorder { fail_on: Some(("pivot_root".into(), libc::EINVAL)), ..Default::default() };
        let f = child::run(&plan, &mut r);
        assert_eq!(plan.describe(f.index), "pivot_root");
        let mut r = Recorder { fail_on: Some(("mount /dev/tty".into(), libc::ENOENT)), ..Default::default() };
        let f = child::run(&plan, &mut r);
        assert_eq!(plan.describe(f.index), "bind-mount /dev/tty on /dev/tty");
    }
}
