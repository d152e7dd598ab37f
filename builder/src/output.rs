//! Output files appear whole or not at all: everything is written into a private staging
//! directory inside the output directory and renamed into place at the end. Dropping an
//! uncommitted [`Output`] removes the staging directory (and the output directory, if this
//! build created it).

use std::io;
use std::path::{Path, PathBuf};

/// A staged set of output files.
pub struct Output {
    dir: PathBuf,
    staging: PathBuf,
    created_dir: bool,
    names: Vec<String>,
    committed: bool,
}

impl Output {
    /// Stage outputs for `dir` (created if missing).
    pub fn new(dir: &Path) -> io::Result<Output> {
        let created_dir = !dir.exists();
        std::fs::create_dir_all(dir)?;
        let staging = dir.join(format!(".keel-staging-{}", std::process::id()));
        if staging.exists() {
            std::fs::remove_dir_all(&staging)?;
        }
        std::fs::create_dir(&staging)?;
        Ok(Output { dir: dir.to_path_buf(), staging, created_dir, names: Vec::new(), committed: false })
    }

    /// The staging path of output `name` (for writers that need a file).
    pub fn path(&mut self, name: &str) -> PathBuf {
        if !self.names.iter().any(|n| n == name) {
            self.names.push(name.to_string());
        }
        self.staging.join(name)
    }

    /// Stage a whole file.
    pub fn write(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let p = self.path(name);
        std::fs::write(p, bytes)
    }

    /// Move every staged file into place; returns their final paths.
    pub fn commit(mut self) -> io::Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for n in &self.names {
            let dst = self.dir.join(n);
            std::fs::rename(self.staging.join(n), &dst)?;
            out.push(dst);
        }
        self.committed = true;
        std::fs::remove_dir(&self.staging)?;
        Ok(out)
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.staging);
            if self.created_dir {
                let _ = std::fs::remove_dir(&self.dir);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncommitted_output_leaves_nothing() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("out");
        {
            let mut o = Output::new(&dir).unwrap();
            o.write("a.img", b"x").unwrap();
        }
        assert!(!dir.exists());
    }

    #[test]
    fn committed_files_appear() {
        let t = tempfile::tempdir().unwrap();
        let mut o = Output::new(t.path()).unwrap();
        o.write("a.img", b"x").unwrap();
        let files = o.commit().unwrap();
        assert_eq!(files, [t.path().join("a.img")]);
        assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 1);
    }
}
