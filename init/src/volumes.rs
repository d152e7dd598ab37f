//! The plan's volumes on keel-data: `volumes/NAME`, created at boot when missing.
//!
//! A new volume directory gets mode 0755 and the owner the plan gives, in container ids as they
//! are stored on disk: keel-runtime mounts volumes idmapped, so a container sees on-disk id `k` as
//! its own id `k`, whatever its host id range. The directory and its parent are fsynced, so a
//! volume created at boot survives a power cut. An existing volume is never changed: no chown, no
//! chmod, nothing deleted, whatever the plan says now.

use std::fs::{self, DirBuilder, File};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::Path;

use keel_plan::Volume;

/// What [`prepare`] did to one volume.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Made now, with this owner.
    Created { uid: u32, gid: u32 },
    /// Already there (owner as found on disk).
    Existing { uid: u32, gid: u32 },
}

/// Make `dir` (created if missing) hold a directory for each of `volumes`. Returns each volume's
/// outcome in plan order, or, for one that cannot be made, why (its containers then fail to
/// start, naming it). An error is returned only when `dir` itself cannot be made.
pub fn prepare(dir: &Path, volumes: &[Volume]) -> io::Result<Vec<(String, Result<Outcome, String>)>> {
    if volumes.is_empty() {
        return Ok(Vec::new());
    }
    if !dir.is_dir() {
        DirBuilder::new().mode(0o755).create(dir)?;
        sync_dir(dir.parent().unwrap_or(Path::new("/")))?;
    }
    Ok(volumes.iter().map(|v| (v.name.clone(), one(dir, v))).collect())
}

fn one(dir: &Path, v: &Volume) -> Result<Outcome, String> {
    // Plain names only (the builder checks; a plan could still be hand-made).
    if v.name.is_empty() || v.name.contains('/') || v.name == "." || v.name == ".." {
        return Err(format!("`{}` is not a volume name", v.name));
    }
    let path = dir.join(&v.name);
    match fs::symlink_metadata(&path) {
        Ok(m) if m.is_dir() => return Ok(Outcome::Existing { uid: m.uid(), gid: m.gid() }),
        Ok(_) => return Err(format!("{} exists and is not a directory", path.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("{}: {e}", path.display())),
    }
    let shown = path.display().to_string();
    let fail = |what: &'static str| {
        let shown = shown.clone();
        move |e: io::Error| format!("{what} {shown}: {e}")
    };
    DirBuilder::new().mode(0o755).create(&path).map_err(fail("create"))?;
    // lchown: the directory was just made by us, but never follow a link.
    std::os::unix::fs::lchown(&path, Some(v.uid), Some(v.gid)).map_err(fail("chown"))?;
    // The mode again: umask may have cleared bits at mkdir.
    fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).map_err(fail("chmod"))?;
    File::open(&path).and_then(|f| f.sync_all()).map_err(fail("fsync"))?;
    sync_dir(dir).map_err(fail("fsync the parent of"))?;
    Ok(Outcome::Created { uid: v.uid, gid: v.gid })
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vol(name: &str, uid: u32, gid: u32) -> Volume {
        Volume { name: name.into(), uid, gid }
    }

    #[test]
    fn creates_missing_volumes_and_leaves_existing_ones_alone() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("volumes");
        assert!(prepare(&dir, &[]).unwrap().is_empty());
        assert!(!dir.exists(), "nothing made without volumes");
        // As root (the tests' usual user) the owner is set; otherwise chown fails and says so.
        let root = euid() == 0;
        let (uid, gid) = if root { (1000, 100) } else { (euid(), egid()) };
        let got = prepare(&dir, &[vol("db", uid, gid)]).unwrap();
        assert_eq!(got, [("db".to_string(), Ok(Outcome::Created { uid, gid }))]);
        let m = fs::metadata(dir.join("db")).unwrap();
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (uid, gid, 0o755));
        // A file inside and another owner in the plan: nothing changes.
        fs::write(dir.join("db/keep"), b"x").unwrap();
        let got = prepare(&dir, &[vol("db", 0, 0)]).unwrap();
        assert_eq!(got, [("db".to_string(), Ok(Outcome::Existing { uid, gid }))]);
        assert_eq!(fs::read(dir.join("db/keep")).unwrap(), b"x");
        // Not a directory, or not a name: reported, the others still made.
        fs::write(dir.join("file"), b"").unwrap();
        let got = prepare(&dir, &[vol("file", uid, gid), vol("..", uid, gid), vol("new", uid, gid)]).unwrap();
        assert!(matches!(&got[0].1, Err(e) if e.contains("not a directory")), "{got:?}");
        assert!(matches!(&got[1].1, Err(e) if e.contains("not a volume name")), "{got:?}");
        assert_eq!(got[2].1, Ok(Outcome::Created { uid, gid }));
    }

    fn status_field(name: &str) -> u32 {
        let s = fs::read_to_string("/proc/self/status").unwrap();
        let line = s.lines().find(|l| l.starts_with(name)).unwrap();
        line.split_whitespace().nth(2).unwrap().parse().unwrap()
    }

    fn euid() -> u32 {
        status_field("Uid:")
    }

    fn egid() -> u32 {
        status_field("Gid:")
    }
}
