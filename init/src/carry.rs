//! Files keel-init carries from the initramfs onto the root tmpfs: the compiled seccomp filters
//! the runtime reads when it starts a container (the initramfs is out of reach once left).

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// The regular files directly in `dir`, read into memory. A missing `dir` is no files.
pub fn read(dir: &Path) -> anyhow::Result<Vec<(PathBuf, Vec<u8>)>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("read {}", dir.display())),
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.with_context(|| format!("read {}", dir.display()))?.path();
        if path.is_file() {
            let bytes = fs::read(&path).with_context(|| format!("read {}", path.display()))?;
            files.push((path, bytes));
        }
    }
    files.sort();
    Ok(files)
}

/// Write `files` back at their paths (under the new root), read-only.
pub fn write(files: &[(PathBuf, Vec<u8>)]) -> anyhow::Result<()> {
    for (path, bytes) in files {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
        }
        fs::write(path, bytes).with_context(|| format!("write {}", path.display()))?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o444))
            .with_context(|| format!("chmod {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_round_trip_and_a_missing_dir_is_empty() {
        let t = tempfile::tempdir().unwrap();
        assert!(read(&t.path().join("none")).unwrap().is_empty());
        let dir = t.path().join("seccomp");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("default"), b"KEELBPF1").unwrap();
        let files = read(&dir).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        write(&files).unwrap();
        assert_eq!(fs::read(dir.join("default")).unwrap(), b"KEELBPF1");
    }
}
