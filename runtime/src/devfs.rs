//! The container's `/dev`: a small `nodev` tmpfs holding bind mounts of a few harmless host device
//! nodes, its own devpts instance (so its terminals are its own), `/dev/shm`, and the standard
//! links. No block devices, nothing else from the host.

use std::path::Path;

use libc::{MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID};

use crate::child::{Op, Step};
use crate::error::RuntimeError;
use crate::process::cstring;
use crate::rootfs::{c_path, tmpfs};

/// Host device nodes bind-mounted into the container's `/dev`.
pub const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Symlinks in the container's `/dev`: (name, target).
pub const DEV_LINKS: [(&str, &str); 5] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
];

/// devpts options: a private instance, `/dev/pts/ptmx` usable by all, terminals owned by group
/// `tty` (gid 5).
pub const DEVPTS_OPTIONS: &str = "newinstance,ptmxmode=0666,mode=0620,gid=5";

/// The steps that build `<root>/dev`, with device nodes taken from `host_dev`.
pub(crate) fn steps(root: &Path, host_dev: &Path) -> Result<Vec<Step>, RuntimeError> {
    let under = |rel: &str| c_path(&root.join(rel));
    // nodev: nothing created in this tmpfs works as a device; the bind-mounted nodes below are
    // mounts of their own and keep working.
    let mut steps = vec![tmpfs("/dev", under("dev")?, MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755,size=64k")?];
    for name in DEVICES {
        let target = under(&format!("dev/{name}"))?;
        steps.push(Step::new(format!("create /dev/{name}"), Op::CreateFile { path: target.clone(), mode: 0o666 }));
        steps.push(Step::new(
            format!("bind-mount {} on /dev/{name}", host_dev.join(name).display()),
            Op::Mount { source: Some(c_path(&host_dev.join(name))?), target, fstype: None, flags: MS_BIND, data: None },
        ));
    }
    steps.push(Step::new("mkdir /dev/pts", Op::Mkdir { path: under("dev/pts")?, mode: 0o755 }));
    steps.push(Step::new(
        "mount devpts on /dev/pts",
        Op::Mount {
            source: Some(cstring("devpts", "")?),
            target: under("dev/pts")?,
            fstype: Some(cstring("devpts", "")?),
            flags: MS_NOSUID | MS_NOEXEC,
            data: Some(cstring(DEVPTS_OPTIONS, "")?),
        },
    ));
    steps.push(Step::new("mkdir /dev/shm", Op::Mkdir { path: under("dev/shm")?, mode: 0o755 }));
    steps.push(tmpfs("/dev/shm", under("dev/shm")?, MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777")?);
    for (name, target) in DEV_LINKS {
        steps.push(Step::new(
            format!("symlink /dev/{name}"),
            Op::Symlink { target: cstring(target, "")?, link: under(&format!("dev/{name}"))? },
        ));
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::child::{self, fake::Recorder, ChildPlan};
    use crate::process::Exec;

    #[test]
    fn dev_is_built_in_order_with_its_flags() {
        let plan =
            ChildPlan { steps: steps(Path::new("/r"), Path::new("/dev")).unwrap(), exec: Exec::for_tests(&[], "exec") };
        let mut r = Recorder::default();
        child::run(&plan, &mut r);
        assert_eq!(
            r.calls,
            [
                "mount tmpfs /r/dev tmpfs 0xe mode=755,size=64k",
                "create /r/dev/null 666",
                "mount /dev/null /r/dev/null - 0x1000 -",
                "create /r/dev/zero 666",
                "mount /dev/zero /r/dev/zero - 0x1000 -",
                "create /r/dev/full 666",
                "mount /dev/full /r/dev/full - 0x1000 -",
                "create /r/dev/random 666",
                "mount /dev/random /r/dev/random - 0x1000 -",
                "create /r/dev/urandom 666",
                "mount /dev/urandom /r/dev/urandom - 0x1000 -",
                "create /r/dev/tty 666",
                "mount /dev/tty /r/dev/tty - 0x1000 -",
                "mkdir /r/dev/pts 755",
                "mount devpts /r/dev/pts devpts 0xa newinstance,ptmxmode=0666,mode=0620,gid=5",
                "mkdir /r/dev/shm 755",
                "mount tmpfs /r/dev/shm tmpfs 0xe mode=1777",
                "symlink /r/dev/fd -> /proc/self/fd",
                "symlink /r/dev/stdin -> /proc/self/fd/0",
                "symlink /r/dev/stdout -> /proc/self/fd/1",
                "symlink /r/dev/stderr -> /proc/self/fd/2",
                "symlink /r/dev/ptmx -> pts/ptmx",
            ]
        );
        let mut r = Recorder { fail_on: Some(("mount /dev/tty".into(), libc::ENOENT)), ..Default::default() };
        let f = child::run(&plan, &mut r);
        assert_eq!(plan.describe(f.index), "bind-mount /dev/tty on /dev/tty");
    }
}
