//! Persistent volumes: directories of the host (keel-init: `volumes/NAME` on keel-data) mounted
//! into the container as ID-MAPPED mounts.
//!
//! Volume files are stored with container-level ids (a file of container uid 1000 is uid 1000 on
//! disk), while each container's user namespace maps its ids to a host range of its own. An
//! idmapped mount translates between the two: through the mount, on-disk id `k` is host id
//! `id_base + k`, which is `k` again inside the container; a file the container's uid `k` creates
//! is stored as `k`. So containers with different id ranges share a volume and agree on its
//! owners, and the volume survives a change of id range (a renamed container).
//!
//! Making a mount idmapped (`mount_setattr(MOUNT_ATTR_IDMAP)`) needs CAP_SYS_ADMIN over the
//! filesystem's user namespace (the initial one), which only the parent has, and the container's
//! user namespace, which exists only after the clone. So:
//!
//! 1. before the clone, [`Volumes::prepare`] checks each volume and target, makes a socket pair and
//!    reserves one descriptor number per volume (placeholders the child inherits);
//! 2. after writing the id maps, the parent ([`Volumes::attach`]) clones each volume directory as a
//!    detached mount (`open_tree(OPEN_TREE_CLONE)`), makes it idmapped with the child's user
//!    namespace, `nosuid`, `nodev` and, for `:ro`, read-only (`mount_setattr`), and sends the
//!    mounts over the socket (SCM_RIGHTS), before releasing the child;
//! 3. the child ([`ChildSide::steps`]) receives them onto the reserved numbers and attaches each at
//!    its target inside the new root (`move_mount`), after the tmpfs mounts and before the
//!    pivot.

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Component, Path, PathBuf};

use keel_plan::VolumeMount;

use crate::child::{Op, Step};
use crate::error::RuntimeError;
use crate::rootfs::{c_path, plain_name};
use crate::sys;

/// One volume to mount.
#[derive(Debug)]
struct Volume {
    name: String,
    /// The directory on the host.
    source: PathBuf,
    /// Where it goes, relative to the container's root.
    target: PathBuf,
    read_only: bool,
}

/// A container's volumes, from the checks before the clone to the hand-over after it.
#[derive(Debug, Default)]
pub(crate) struct Volumes {
    list: Vec<Volume>,
    /// The parent's end of the socket pair the mounts go over (`None` without volumes).
    parent: Option<OwnedFd>,
    /// The child's end; closed in the parent after the clone.
    child: Option<OwnedFd>,
    /// Descriptor numbers reserved for the mounts in the child; closed in the parent after the
    /// clone.
    slots: Vec<OwnedFd>,
}

impl Volumes {
    /// Check `mounts` against `dir` (where volume directories are) and the container's tree `root`:
    /// every volume a directory, every target a directory of the tree with no symlink on the way.
    pub(crate) fn prepare(root: &Path, dir: Option<&Path>, mounts: &[VolumeMount]) -> Result<Volumes, RuntimeError> {
        if mounts.is_empty() {
            return Ok(Volumes::default());
        }
        let invalid = |m: &VolumeMount, why: String| RuntimeError::InvalidVolume { name: m.volume.clone(), why };
        if let Some(m) = mounts.get(sys::MAX_FDS) {
            return Err(invalid(m, format!("a container may mount at most {} volumes", sys::MAX_FDS)));
        }
        let Some(dir) = dir else {
            return Err(RuntimeError::InvalidVolume {
                name: mounts.iter().map(|m| m.volume.as_str()).collect::<Vec<_>>().join(", "),
                why: "this host has no volume directory".to_string(),
            });
        };
        let mut list = Vec::new();
        for m in mounts {
            if !plain_name(&m.volume) {
                return Err(invalid(m, "not a plain name".to_string()));
            }
            let source = dir.join(&m.volume);
            if !fs::symlink_metadata(&source).is_ok_and(|md| md.is_dir()) {
                return Err(invalid(m, format!("{} is missing or not a directory", source.display())));
            }
            let target = relative(&m.target).ok_or_else(|| invalid(m, format!("bad target `{}`", m.target)))?;
            let mut p = root.to_path_buf();
            for part in target.components() {
                p.push(part);
                if !fs::symlink_metadata(&p).is_ok_and(|md| md.is_dir()) {
                    return Err(RuntimeError::MountPoint { path: p });
                }
            }
            // One mount on or inside another would be hidden by it, or, attached first, could
            // be what the outer mount point resolves through: the builder refuses these, and a
            // plan that was not made by it is refused here too.
            if let Some(outer) =
                list.iter().find(|v: &&Volume| target.starts_with(&v.target) || v.target.starts_with(&target))
            {
                return Err(invalid(
                    m,
                    format!(
                        "target /{} overlaps volume {}'s target /{}",
                        target.display(),
                        outer.name,
                        outer.target.display()
                    ),
                ));
            }
            list.push(Volume { name: m.volume.clone(), source, target, read_only: m.read_only });
        }
        let names = list.iter().map(|v| v.name.as_str()).collect::<Vec<_>>().join(", ");
        let fail = |what: &str| {
            let (name, what) = (names.clone(), what.to_string());
            move |source| RuntimeError::Volume { name, what, source }
        };
        let (parent, child) = sys::socketpair().map_err(fail("create a socket pair"))?;
        // Any open descriptor reserves a number; the child's end is at hand (close-on-exec).
        let slots = list
            .iter()
            .map(|_| child.try_clone().map_err(fail("reserve a descriptor")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Volumes { list, parent: Some(parent), child: Some(child), slots })
    }

    /// What the child needs to know: its socket, and each mount's reserved number and target.
    pub(crate) fn child_side(&self) -> ChildSide {
        let Some(child) = &self.child else { return ChildSide::default() };
        let mounts = self
            .list
            .iter()
            .zip(&self.slots)
            .map(|(v, slot)| (v.name.clone(), v.target.clone(), slot.as_raw_fd()))
            .collect();
        ChildSide { sock: child.as_raw_fd(), mounts }
    }

    /// After the clone: close the parent's copies of the child's end and of the reserved numbers.
    pub(crate) fn cloned(&mut self) {
        self.slots.clear();
        self.child = None;
    }

    /// In the parent, once the child's id maps are written: one idmapped detached mount per volume
    /// (through the user namespace of `pid`), sent to the child.
    pub(crate) fn attach(&self, pid: libc::pid_t) -> Result<(), RuntimeError> {
        let Some(parent) = &self.parent else { return Ok(()) };
        let Some(first) = self.list.first() else { return Ok(()) };
        let ns = PathBuf::from(format!("/proc/{pid}/ns/user"));
        let userns =
            fs::File::open(&ns).map(OwnedFd::from).map_err(|source| RuntimeError::Open { path: ns.clone(), source })?;
        let mut mounts = Vec::with_capacity(self.list.len());
        for v in &self.list {
            let fail = |what: String| {
                let name = v.name.clone();
                move |source| RuntimeError::Volume { name, what, source }
            };
            let source = c_path(&v.source)?;
            let mount =
                sys::open_tree_clone(&source).map_err(fail(format!("clone the mount of {}", v.source.display())))?;
            let mut attr = sys::MOUNT_ATTR_IDMAP | sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV;
            if v.read_only {
                attr |= sys::MOUNT_ATTR_RDONLY;
            }
            sys::mount_setattr(&mount, attr, &userns)
                .map_err(fail(format!("make an idmapped mount of {} (mount_setattr)", v.source.display())))?;
            mounts.push(mount);
        }
        sys::send_fds(parent, &mounts).map_err(|source| RuntimeError::Volume {
            name: first.name.clone(),
            what: "send the mounts to the container".into(),
            source,
        })
    }
}

/// The child's part, as plain data: the socket the mounts come on, and for each mount its name,
/// its target (relative to the root) and the descriptor number it is received onto.
#[derive(Debug, Default)]
pub(crate) struct ChildSide {
    sock: RawFd,
    mounts: Vec<(String, PathBuf, RawFd)>,
}

impl ChildSide {
    /// The child's steps, on the new root at `new_root`: receive the mounts, attach each at its
    /// target, close its descriptor.
    pub(crate) fn steps(&self, new_root: &Path) -> Result<Vec<Step>, RuntimeError> {
        if self.mounts.is_empty() {
            return Ok(vec![]);
        }
        let into = self.mounts.iter().map(|(_, _, fd)| *fd).collect();
        let mut steps = vec![Step::new("receive the volume mounts", Op::ReceiveFds { sock: self.sock, into })];
        for (name, target, fd) in &self.mounts {
            steps.push(Step::new(
                format!("mount volume {name} on /{}", target.display()),
                Op::MoveMount { fd: *fd, target: c_path(&new_root.join(target))? },
            ));
            steps.push(Step::new(format!("close the mount of volume {name}"), Op::Close(*fd)));
        }
        Ok(steps)
    }
}

/// `/a/b` as `a/b`; `None` for relative paths, `.`/`..` or `/` itself.
fn relative(path: &str) -> Option<PathBuf> {
    let mut parts = Path::new(path).components();
    if parts.next() != Some(Component::RootDir) {
        return None;
    }
    let mut rel = PathBuf::new();
    for part in parts {
        match part {
            Component::Normal(p) => rel.push(p),
            _ => return None,
        }
    }
    (!rel.as_os_str().is_empty()).then_some(rel)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::child::{self, fake::Recorder, ChildPlan};
    use crate::process::Exec;

    fn mount(volume: &str, target: &str, read_only: bool) -> VolumeMount {
        VolumeMount { volume: volume.into(), target: target.into(), read_only }
    }

    #[test]
    fn volumes_and_targets_are_checked_before_the_clone() {
        let t = tempfile::tempdir().unwrap();
        let (root, vols) = (t.path().join("root"), t.path().join("volumes"));
        fs::create_dir_all(root.join("srv/data")).unwrap();
        fs::create_dir_all(vols.join("db")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("link")).unwrap();
        let none = Volumes::prepare(&root, None, &[]).unwrap();
        assert!(none.child_side().steps(&root).unwrap().is_empty());

        let ok = Volumes::prepare(&root, Some(&vols), &[mount("db", "/srv/data", true)]).unwrap();
        assert_eq!(ok.slots.len(), 1);
        assert!(ok.slots[0].as_raw_fd() > 2);

        let err = |m: VolumeMount| Volumes::prepare(&root, Some(&vols), &[m]).unwrap_err().to_string();
        assert!(err(mount("nope", "/srv/data", false)).contains("missing or not a directory"));
        assert!(err(mount("../db", "/srv/data", false)).contains("not a plain name"));
        assert!(err(mount("db", "/link", false)).contains("must be a directory"));
        assert!(err(mount("db", "/missing", false)).contains("must be a directory"));
        assert!(err(mount("db", "srv", false)).contains("bad target"));
        assert!(err(mount("db", "/", false)).contains("bad target"));
        let e = Volumes::prepare(&root, None, &[mount("db", "/srv/data", false)]).unwrap_err();
        assert!(e.to_string().contains("no volume directory"), "{e}");
        fs::create_dir_all(vols.join("logs")).unwrap();
        let nested = |a: &str, b: &str| {
            let e = Volumes::prepare(&root, Some(&vols), &[mount("db", a, false), mount("logs", b, false)]);
            e.unwrap_err().to_string()
        };
        for (a, b) in [("/srv", "/srv/data"), ("/srv/data", "/srv"), ("/srv/data", "/srv/data")] {
            assert!(nested(a, b).contains("overlaps volume db's target"), "{a} {b}: {}", nested(a, b));
        }
        fs::create_dir_all(root.join("srv/database")).unwrap();
        assert!(
            Volumes::prepare(
                &root,
                Some(&vols),
                &[mount("db", "/srv/data", false), mount("logs", "/srv/database", false)]
            )
            .is_ok(),
            "siblings sharing a prefix"
        );
        let many: Vec<VolumeMount> = (0..=sys::MAX_FDS).map(|_| mount("db", "/srv/data", false)).collect();
        assert!(Volumes::prepare(&root, Some(&vols), &many).unwrap_err().to_string().contains("at most"));
    }

    #[test]
    fn the_child_receives_then_attaches_each_mount() {
        let side = ChildSide {
            sock: 7,
            mounts: vec![("db".into(), PathBuf::from("var/lib/db"), 8), ("logs".into(), PathBuf::from("logs"), 9)],
        };
        let steps = side.steps(Path::new("/new")).unwrap();
        assert_eq!(steps.iter().map(|s| s.what.as_str()).nth(1), Some("mount volume db on /var/lib/db"));
        let plan = ChildPlan { steps, exec: Exec::for_tests(&[], "exec") };
        let mut r = Recorder::default();
        child::run(&plan, &mut r);
        assert_eq!(
            r.calls,
            [
                "receive fds on 7 into [8, 9]",
                "move_mount 8 /new/var/lib/db",
                "close 8",
                "move_mount 9 /new/logs",
                "close 9",
            ]
        );
    }
}
