//! The writable root of a container with `read_only = false`: an overlay with the container's tree
//! as its lower layer and its upper and work directories on a tmpfs, so writes land in memory and
//! vanish with the container.
//!
//! The parent mounts it, as real root, before the clone, at `<scratch>/<name>/merged`; the child's
//! mount namespace starts with a copy, which it bind-mounts as its root. The parent then detaches
//! its own (when the [`Overlay`] is dropped, after the child has exec'd and made its mounts
//! private), so nothing stays mounted on the host. Mounted from the child's user namespace, the
//! overlay could keep its metadata (whiteouts of directories, opaque directories) only in user
//! xattrs, which tmpfs lacks before Linux 6.6: removing a directory of the image then fails with
//! EIO on keel's 6.1 kernel. Mounted by real root, it keeps them in trusted xattrs, which tmpfs has.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use libc::{MS_NODEV, MS_NOSUID};

use crate::error::RuntimeError;
use crate::process::cstring;
use crate::rootfs::c_path;
use crate::sys;

/// An overlay mounted on the host for one container start; detached (with its tmpfs) on drop.
#[derive(Debug)]
pub(crate) struct Overlay {
    /// `<scratch>/<name>`, where the tmpfs is.
    dir: CString,
    /// `<scratch>/<name>/merged`, where the overlay is.
    merged: PathBuf,
}

impl Overlay {
    /// Mount a tmpfs at `dir` (made if missing), then an overlay of `lower` on `dir/merged`.
    pub(crate) fn mount(lower: &Path, dir: &Path) -> Result<Overlay, RuntimeError> {
        let fail = |what: String| move |source: io::Error| RuntimeError::Overlay { what, source };
        let [upper, work, merged] = ["upper", "work", "merged"].map(|d| dir.join(d));
        for p in [lower, &upper, &work] {
            // The overlay's option syntax has no escape for these.
            if p.as_os_str().as_bytes().iter().any(|b| matches!(b, b',' | b':' | b'\\')) {
                return Err(RuntimeError::OverlayPath(p.to_path_buf()));
            }
        }
        fs::create_dir_all(dir).map_err(fail(format!("create {}", dir.display())))?;
        let dir_c = c_path(dir)?;
        let tmpfs = cstring("tmpfs", "")?;
        sys::mount(&tmpfs, &dir_c, &tmpfs, MS_NOSUID | MS_NODEV, &cstring("mode=755", "")?)
            .map_err(fail(format!("mount tmpfs on {}", dir.display())))?;
        // From here on, dropping `overlay` detaches whatever was mounted.
        let overlay = Overlay { dir: dir_c, merged };
        for d in [&upper, &work, &overlay.merged] {
            fs::create_dir(d).map_err(fail(format!("create {}", d.display())))?;
        }
        // The overlay's root takes the upper directory's owner and mode: make them the tree's
        // (container root's, shifted by id_base), not the host root's.
        let meta = fs::metadata(lower).map_err(fail(format!("stat {}", lower.display())))?;
        std::os::unix::fs::chown(&upper, Some(meta.uid()), Some(meta.gid()))
            .and_then(|()| fs::set_permissions(&upper, meta.permissions()))
            .map_err(fail(format!("give {} the owner and mode of {}", upper.display(), lower.display())))?;
        let data = format!("lowerdir={},upperdir={},workdir={}", lower.display(), upper.display(), work.display());
        let name = cstring("overlay", "")?;
        sys::mount(&name, &c_path(&overlay.merged)?, &name, MS_NOSUID | MS_NODEV, &cstring(data, "overlay options")?)
            .map_err(fail(format!("mount the overlay of {} on {}", lower.display(), overlay.merged.display())))?;
        Ok(overlay)
    }

    /// Where the overlay is mounted (the container's new root).
    pub(crate) fn merged(&self) -> &Path {
        &self.merged
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        // Detaching the tmpfs takes the overlay on it along. The container keeps its copies.
        let _ = sys::detach(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_the_options_cannot_hold_are_refused_before_mounting() {
        let t = tempfile::tempdir().unwrap();
        let e = Overlay::mount(Path::new("/images/a,b"), &t.path().join("web")).unwrap_err();
        assert!(matches!(e, RuntimeError::OverlayPath(p) if p == Path::new("/images/a,b")));
        assert!(!t.path().join("web").exists(), "nothing made");
    }
}
