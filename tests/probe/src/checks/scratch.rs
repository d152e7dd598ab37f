//! A private scratch directory under /tmp (mode 0700) for the checks that create things: the
//! mount target, the block-device node and the write test. Removed again on drop.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::errno::Errno;
use crate::sys;

/// Used as targets when the scratch directory could not be made: they do not exist, so the
/// calls fail (EPERM if denied, ENOENT otherwise) without touching anything.
const MISSING: &str = "/nonexistent/keel-probe";

/// The scratch directory, or why it could not be made.
pub struct Scratch {
    dir: Result<PathBuf, Errno>,
}

impl Scratch {
    /// Makes `/tmp/keel-probe-PID-NANOS` and its empty `mnt` subdirectory.
    pub fn create() -> Self {
        let dir = PathBuf::from(format!("/tmp/keel-probe-{}-{}", sys::getpid(), sys::monotonic().as_nanos()));
        let made = std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .and_then(|()| std::fs::DirBuilder::new().mode(0o700).create(dir.join("mnt")))
            .map(|()| dir.clone())
            .map_err(|e| Errno::from_io(&e));
        if made.is_err() {
            let _ = std::fs::remove_dir(&dir);
        }
        Scratch { dir: made }
    }

    /// The directory, or the errno that stopped its creation.
    pub fn dir(&self) -> Result<&Path, Errno> {
        self.dir.as_deref().map_err(|e| *e)
    }

    /// `NAME` inside the directory (inside a missing one if it could not be made).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir().unwrap_or(Path::new(MISSING)).join(name)
    }

    /// [`Self::path`] as a C string.
    pub fn c_path(&self, name: &str) -> CString {
        c_string(&self.path(name))
    }
}

/// `path` as a C string (a path with a NUL byte, which the probe never makes, becomes `MISSING`).
pub fn c_string(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).unwrap_or_else(|_| CString::from(c"/nonexistent/keel-probe"))
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Ok(dir) = &self.dir {
            for name in ["blk", "write-test"] {
                let _ = std::fs::remove_file(dir.join(name));
            }
            let _ = std::fs::remove_dir(dir.join("mnt"));
            let _ = std::fs::remove_dir(dir);
        }
    }
}
