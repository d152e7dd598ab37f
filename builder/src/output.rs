//! Output files appear whole or not at all: everything is written into a private staging
//! directory inside the output directory and renamed into place at the end. Dropping an
//! uncommitted [`Output`] removes the staging directory (and the output directory, if this
//! build created it).
//!
//! Also the summary of a finished build: a table for people, one JSON object for programs.

use std::io;
use std::path::{Path, PathBuf};

use crate::build::Artifacts;
use crate::disk::{self, PartKind};
use crate::progress::{size, StepTime};

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

/// One written file, as the summary shows it.
#[derive(Debug, Clone)]
pub struct FileInfo {
    /// Where it is.
    pub path: PathBuf,
    /// Its length in bytes.
    pub bytes: u64,
    /// Bytes allocated on the disk it is on (the disk image is sparse).
    pub allocated: u64,
    /// sha256, lower-case hex.
    pub sha256: String,
}

impl FileInfo {
    /// Stat and hash `path`.
    pub fn read(path: &Path) -> io::Result<FileInfo> {
        use std::os::unix::fs::MetadataExt;
        let md = std::fs::metadata(path)?;
        let sha256 = crate::config::sha256_file(path)?;
        Ok(FileInfo { path: path.to_path_buf(), bytes: md.len(), allocated: md.blocks() * 512, sha256 })
    }

    fn name(&self) -> String {
        self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }
}

/// What a finished build reports.
pub struct Summary<'a> {
    /// The config's name.
    pub name: &'a str,
    /// The config file.
    pub config: &'a Path,
    /// The target.
    pub arch: keel_plan::Arch,
    /// What the build made.
    pub artifacts: &'a Artifacts,
    /// The files written, stat'ed and hashed.
    pub files: &'a [FileInfo],
    /// The time of each step.
    pub steps: &'a [StepTime],
    /// Wall time of the whole build.
    pub seconds: f64,
}

/// What a partition holds, as the summary names it.
pub fn filesystem(kind: PartKind) -> &'static str {
    match kind {
        PartKind::Esp => "fat32",
        PartKind::Images => "ext4",
        PartKind::Data => "ext4",
    }
}

fn part_note(p: &disk::Part) -> &'static str {
    match p.kind {
        PartKind::Esp => "EFI system partition, holds the UKI",
        PartKind::Images => "read-only, the container images",
        PartKind::Data => "read-write, volumes and logs; grows to fill a larger disk",
    }
}

impl Summary<'_> {
    /// The summary as text: the files, the disk layout, the sizes of the parts.
    pub fn text(&self) -> String {
        use std::fmt::Write;
        let a = self.artifacts;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "built {} for {} in {:.1}s (kernel {}, {} modules):",
            self.name, self.arch, self.seconds, a.kernel_release, a.modules
        );
        let width = self.files.iter().map(|f| f.name().len()).max().unwrap_or(0).max(8);
        let _ = writeln!(s, "  {:<width$}  {:>9}  {:>9}  sha256", "file", "size", "allocated");
        for f in self.files {
            let _ = writeln!(s, "  {:<width$}  {:>9}  {:>9}  {}", f.name(), size(f.bytes), size(f.allocated), f.sha256);
        }
        let _ = writeln!(s, "disk layout ({}, GPT):", size(a.layout.disk_size));
        let _ = writeln!(s, "  #  {:<12}  {:>9}  {:>9}  filesystem", "label", "offset", "size");
        for (i, p) in a.layout.parts.iter().enumerate() {
            let _ = writeln!(
                s,
                "  {}  {:<12}  {:>9}  {:>9}  {} ({})",
                i + 1,
                p.name,
                size(p.offset()),
                size(p.size()),
                filesystem(p.kind),
                part_note(p)
            );
        }
        if let Some(v) = &a.verity {
            let _ = writeln!(
                s,
                "keel-images verity: root hash {}, {} data blocks, superblock and tree at {} ({})",
                v.root_hex(),
                v.data_blocks,
                size(v.hash_offset()),
                size(v.hash_area.len() as u64)
            );
        }
        if let Some(sig) = &a.signed {
            let cn = sig.common_name.as_deref().map(|c| format!("CN={c}, ")).unwrap_or_default();
            let _ = writeln!(s, "uki: signed (Authenticode) with {cn}cert sha256 {}", sig.cert_sha256);
        }
        let parts: Vec<String> = a.parts.iter().map(|(k, v)| format!("{k} {}", size(*v))).collect();
        let _ = writeln!(s, "parts: {}", parts.join(", "));
        s
    }

    /// The summary as one JSON object (sizes in bytes, times in seconds).
    pub fn json(&self) -> serde_json::Value {
        let a = self.artifacts;
        serde_json::json!({
            "name": self.name,
            "config": self.config.display().to_string(),
            "arch": self.arch.name(),
            "kernel": { "release": a.kernel_release, "modules": a.modules },
            "artifacts": self.files.iter().map(|f| serde_json::json!({
                "name": f.name(),
                "path": f.path.display().to_string(),
                "size": f.bytes,
                "allocated": f.allocated,
                "sha256": f.sha256,
            })).collect::<Vec<_>>(),
            "disk": {
                "size": a.layout.disk_size,
                "guid": a.layout.disk_guid.to_string(),
                "partitions": a.layout.parts.iter().enumerate().map(|(i, p)| serde_json::json!({
                    "number": i + 1,
                    "label": p.name,
                    "offset": p.offset(),
                    "size": p.size(),
                    "filesystem": filesystem(p.kind),
                    "type_guid": p.type_guid.to_string(),
                    "guid": p.unique_guid.to_string(),
                    "read_only": p.attributes & disk::ATTR_READ_ONLY != 0,
                })).collect::<Vec<_>>(),
            },
            "verity": a.verity.as_ref().map(crate::verity::Verity::json),
            "signed": a.signed.as_ref().map(|sig| serde_json::json!({
                "cert_sha256": sig.cert_sha256,
                "common_name": sig.common_name,
                "unsigned_sha256": sig.unsigned_sha256,
            })),
            "parts": a.parts.iter().map(|(k, v)| serde_json::json!({ "name": k, "size": v })).collect::<Vec<_>>(),
            "timings": {
                "total": self.seconds,
                "steps": self.steps.iter().map(|t| serde_json::json!({ "name": t.name, "seconds": t.seconds }))
                    .collect::<Vec<_>>(),
            },
        })
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
