//! docker-archive tarballs, the format of `docker save` and of skopeo's `docker-archive:`
//! transport: `manifest.json` (`[{Config, RepoTags, Layers}]`), the image config and the layer
//! tars (plain, gzip or zstd), all members of one tarball.
//!
//! Members are read in place (positioned reads on the one open file; nothing is extracted),
//! every size bounded. The config must be named by its sha256 digest (`<hex>.json`,
//! `blobs/sha256/<hex>`, `sha256:<hex>`), which is checked, and each layer's uncompressed
//! stream must hash to the config's `rootfs.diff_ids`. Member names are only keys into the
//! archive's own table, and symlinks between members (docker save links repeated layers, skopeo
//! links `<id>/layer.tar` to `<digest>.tar`) are resolved in that table, never on disk.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use keel_plan::Arch;
use serde::Deserialize;

use super::entries;
use super::limits::{Budget, MAX_ARCHIVE_MEMBERS, MAX_JSON};
use super::oci::{self, ImageConfig};
use super::tree::components;
use super::ImageError;

/// Most links followed to find one member.
const MAX_LINK_HOPS: usize = 16;

/// What a member of the tarball is.
#[derive(Debug, Clone)]
enum Member {
    /// Data at `offset`, `size` bytes.
    File { offset: u64, size: u64 },
    /// A link (symbolic or hard) to another member, by its clean name.
    Link(String),
}

/// An open docker-archive tarball and the table of its members.
#[derive(Debug)]
pub struct Archive {
    path: PathBuf,
    file: File,
    members: BTreeMap<String, Member>,
}

/// One entry of manifest.json.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// An image chosen in an archive, its config verified.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The archive.
    pub archive: Arc<Archive>,
    /// `sha256:` of the config.
    pub config_digest: String,
    /// The config.
    pub config: ImageConfig,
    /// Member names of the layers, bottom first.
    pub layers: Vec<String>,
}

/// A member's clean name: relative, no `.` or empty components. `None` for names with `..`.
fn clean(name: &str) -> Option<String> {
    components(name).ok().map(|c| c.join("/"))
}

/// Where a symlink member at `name` pointing to `target` leads, resolved lexically within the
/// archive (`..` stops at the top).
fn link_target(name: &str, target: &str) -> String {
    let mut out: Vec<&str> = if target.starts_with('/') {
        Vec::new()
    } else {
        let mut dir: Vec<&str> = name.split('/').collect();
        dir.pop();
        dir
    };
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out.join("/")
}

/// The sha256 a member name carries: `<hex>`, `<hex>.json`, `sha256:<hex>` as its last
/// component (`blobs/sha256/<hex>` included).
fn digest_in_name(name: &str) -> Option<String> {
    let base = name.rsplit('/').next().unwrap_or(name);
    let base = base.strip_prefix("sha256:").unwrap_or(base);
    let base = base.strip_suffix(".json").unwrap_or(base);
    let hex = base.len() == 64 && base.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    hex.then(|| format!("sha256:{base}"))
}

/// A reference in its canonical short form: no `docker.io/` or `library/` prefix, and a tag
/// (`latest` when none is given).
fn normalize(r: &str) -> String {
    let mut r = r;
    for prefix in ["docker.io/", "index.docker.io/"] {
        if let Some(rest) = r.strip_prefix(prefix) {
            r = rest;
            break;
        }
    }
    let r = r.strip_prefix("library/").unwrap_or(r);
    let last = r.rsplit('/').next().unwrap_or(r);
    if last.contains(':') || r.contains('@') {
        r.to_string()
    } else {
        format!("{r}:latest")
    }
}

/// A reader of `size` bytes at `offset` of a file, by positioned reads.
struct Slice<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for Slice<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = usize::try_from(self.end - self.pos).unwrap_or(usize::MAX);
        let n = buf.len().min(left);
        if n == 0 {
            return Ok(0);
        }
        let got = self.file.read_at(&mut buf[..n], self.pos)?;
        if got == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the archive is truncated"));
        }
        self.pos += got as u64;
        Ok(got)
    }
}

impl Archive {
    /// Open a tarball and index its members. The path may be a symlink (it is the user's
    /// choice), but what it names must be a regular file.
    pub fn open(path: &Path) -> Result<Archive, ImageError> {
        let io = |e| ImageError::Io(path.to_path_buf(), e);
        let not_file = || ImageError::Invalid(format!("{} is not a regular file", path.display()));
        if !std::fs::metadata(path).map_err(io)?.is_file() {
            return Err(not_file());
        }
        let file = File::open(path).map_err(io)?;
        if !file.metadata().map_err(io)?.is_file() {
            return Err(not_file());
        }
        let bad = |e: String| ImageError::Invalid(format!("{}: not a docker-archive tarball: {e}", path.display()));
        let mut members = BTreeMap::new();
        {
            let mut archive = tar::Archive::new(&file);
            let mut list = archive.entries_with_seek().map_err(|e| bad(e.to_string()))?.raw(true);
            let mut budget = Budget::new(u64::MAX, MAX_ARCHIVE_MEMBERS);
            while let Some(m) = entries::next(&mut list, &mut budget).map_err(|e| bad(e.to_string()))? {
                let Some(name) = clean(&m.path).filter(|n| !n.is_empty()) else { continue };
                let member = match m.kind {
                    tar::EntryType::Regular | tar::EntryType::Continuous => {
                        Member::File { offset: m.entry.raw_file_position(), size: m.size }
                    }
                    tar::EntryType::Symlink => Member::Link(link_target(&name, m.link.as_deref().unwrap_or(""))),
                    tar::EntryType::Link => Member::Link(link_target("", m.link.as_deref().unwrap_or(""))),
                    _ => continue,
                };
                if members.insert(name.clone(), member).is_some() {
                    return Err(bad(format!("member `{name}` appears twice")));
                }
            }
        }
        Ok(Archive { path: path.to_path_buf(), file, members })
    }

    /// Offset and size of member `name`, links followed.
    fn locate(&self, name: &str) -> Result<(u64, u64), ImageError> {
        let missing = |n: &str| ImageError::Invalid(format!("{}: no member `{n}`", self.path.display()));
        let mut cur = clean(name).ok_or_else(|| missing(name))?;
        for _ in 0..MAX_LINK_HOPS {
            match self.members.get(&cur) {
                Some(Member::File { offset, size }) => return Ok((*offset, *size)),
                Some(Member::Link(to)) => cur = to.clone(),
                None => return Err(missing(&cur)),
            }
        }
        Err(ImageError::Invalid(format!("{}: too many links resolving member `{name}`", self.path.display())))
    }

    /// A reader of member `name`.
    pub fn open_member(&self, name: &str) -> Result<impl Read + '_, ImageError> {
        let (offset, size) = self.locate(name)?;
        let end = offset
            .checked_add(size)
            .ok_or_else(|| ImageError::Invalid(format!("{}: member `{name}` is out of range", self.path.display())))?;
        Ok(Slice { file: &self.file, pos: offset, end })
    }

    /// Member `name` whole; larger than [`MAX_JSON`] is an error.
    fn read_json(&self, name: &str) -> Result<Vec<u8>, ImageError> {
        let (_, size) = self.locate(name)?;
        if size > MAX_JSON {
            return Err(ImageError::Invalid(format!(
                "{}: member `{name}` is {size} bytes, more than the limit of {MAX_JSON} for JSON",
                self.path.display()
            )));
        }
        let mut bytes = Vec::new();
        self.open_member(name)?.read_to_end(&mut bytes).map_err(|e| ImageError::Io(self.path.clone(), e))?;
        Ok(bytes)
    }
}

/// Choose the image `reference` names (`NAME[:TAG]`, or `@N` for the Nth entry of
/// manifest.json), or the only one when `None`, for `arch`, and verify its config.
pub fn resolve(archive: Arc<Archive>, reference: Option<&str>, arch: Arch) -> Result<Resolved, ImageError> {
    let path = archive.path.display().to_string();
    let text = archive.read_json("manifest.json")?;
    let manifest: Vec<ManifestEntry> =
        serde_json::from_slice(&text).map_err(|e| ImageError::Invalid(format!("{path}: manifest.json: {e}")))?;
    let tags = || {
        let t: Vec<String> = manifest.iter().flat_map(|m| m.repo_tags.iter().flatten()).cloned().collect();
        if t.is_empty() {
            "none".to_string()
        } else {
            t.join(", ")
        }
    };
    let entry =
        match reference {
            None if manifest.len() == 1 => &manifest[0],
            None => {
                return Err(ImageError::Invalid(format!(
                    "{path} holds {} images: name one as docker-archive:FILE:REF (tags: {})",
                    manifest.len(),
                    tags()
                )))
            }
            Some(r) => match r.strip_prefix('@') {
                Some(n) => n.parse::<usize>().ok().and_then(|n| manifest.get(n)).ok_or_else(|| {
                    ImageError::Invalid(format!("{path} has no image {r} (it holds {})", manifest.len()))
                })?,
                None => {
                    let want = normalize(r);
                    manifest
                        .iter()
                        .find(|m| m.repo_tags.iter().flatten().any(|t| normalize(t) == want))
                        .ok_or_else(|| ImageError::NoTag { tag: r.to_string(), available: tags() })?
                }
            },
        };
    let digest = digest_in_name(&entry.config).ok_or_else(|| {
        ImageError::Invalid(format!("{path}: config `{}` is not named by its sha256 digest", entry.config))
    })?;
    let bytes = archive.read_json(&entry.config)?;
    oci::verify(&digest, bytes.len() as u64, &bytes)?;
    let config: ImageConfig = serde_json::from_slice(&bytes)
        .map_err(|e| ImageError::Invalid(format!("{path}: image config {digest}: {e}")))?;
    config.check(entry.layers.len(), arch)?;
    Ok(Resolved { archive, config_digest: digest, config, layers: entry.layers.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn tar_of(members: &[(&str, &[u8])], links: &[(&str, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in members {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, name, *data).unwrap();
        }
        for (name, target) in links {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            b.append_link(&mut h, name, target).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn archive_with(members: &[(&str, &[u8])], links: &[(&str, &str)]) -> (tempfile::TempDir, Arc<Archive>) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.tar");
        std::fs::write(&p, tar_of(members, links)).unwrap();
        let a = Arc::new(Archive::open(&p).unwrap());
        (d, a)
    }

    fn image(arch: &str, layer: &[u8]) -> (String, Vec<u8>) {
        let diff = hex::encode(Sha256::digest(layer));
        let config = format!(
            r#"{{"architecture":"{arch}","config":{{"Cmd":["/x"]}},"rootfs":{{"type":"layers","diff_ids":["sha256:{diff}"]}}}}"#
        );
        (hex::encode(Sha256::digest(config.as_bytes())), config.into_bytes())
    }

    #[test]
    fn picks_by_tag_and_follows_member_links() {
        let layer = tar_of(&[("hello", b"hi")], &[]);
        let (c1, j1) = image("amd64", &layer);
        let (c2, j2) = image("arm64", &layer);
        let manifest = format!(
            r#"[{{"Config":"{c1}.json","RepoTags":["docker.io/keel/x:amd64"],"Layers":["id1/layer.tar"]}},
                {{"Config":"blobs/sha256/{c2}","RepoTags":["keel/x:arm64"],"Layers":["l.tar"]}}]"#
        );
        let c1n = format!("{c1}.json");
        let c2n = format!("blobs/sha256/{c2}");
        let (_d, a) = archive_with(
            &[("manifest.json", manifest.as_bytes()), (&c1n, &j1), (&c2n, &j2), ("l.tar", &layer)],
            &[("id1/layer.tar", "../l.tar")],
        );
        let r = resolve(a.clone(), Some("keel/x:amd64"), Arch::X86_64).unwrap();
        assert_eq!(r.config_digest, format!("sha256:{c1}"));
        let mut got = Vec::new();
        a.open_member(&r.layers[0]).unwrap().read_to_end(&mut got).unwrap();
        assert_eq!(got, layer);
        let r = resolve(a.clone(), Some("docker.io/keel/x:arm64"), Arch::Aarch64).unwrap();
        assert_eq!(r.config_digest, format!("sha256:{c2}"));
        assert!(resolve(a.clone(), Some("@1"), Arch::Aarch64).is_ok());
        let e = resolve(a.clone(), None, Arch::X86_64).unwrap_err().to_string();
        assert!(e.contains("holds 2 images") && e.contains("keel/x:arm64"), "{e}");
        let e = resolve(a.clone(), Some("keel/x:riscv"), Arch::X86_64).unwrap_err();
        assert!(matches!(e, ImageError::NoTag { .. }), "{e}");
        let e = resolve(a, Some("keel/x:amd64"), Arch::Aarch64).unwrap_err();
        assert!(matches!(e, ImageError::WrongArch { .. }), "{e}");
    }

    #[test]
    fn configs_are_verified_by_name() {
        let layer = tar_of(&[("hello", b"hi")], &[]);
        let (c, mut j) = image("amd64", &layer);
        j.push(b' ');
        let manifest = format!(r#"[{{"Config":"{c}.json","Layers":["l.tar"]}}]"#);
        let cn = format!("{c}.json");
        let (_d, a) = archive_with(&[("manifest.json", manifest.as_bytes()), (&cn, &j), ("l.tar", &layer)], &[]);
        assert!(matches!(resolve(a, None, Arch::X86_64), Err(ImageError::Digest { .. })));
        let manifest = r#"[{"Config":"config.json","Layers":["l.tar"]}]"#;
        let (_d, a) = archive_with(&[("manifest.json", manifest.as_bytes()), ("config.json", b"{}")], &[]);
        let e = resolve(a, None, Arch::X86_64).unwrap_err().to_string();
        assert!(e.contains("not named by its sha256 digest"), "{e}");
    }

    #[test]
    fn links_stay_in_the_table_and_loops_end() {
        let (_d, a) = archive_with(&[("f", b"x")], &[("up", "../../../../etc/passwd"), ("a", "b"), ("b", "a")]);
        assert!(a.locate("up").unwrap_err().to_string().contains("no member `etc/passwd`"));
        assert!(a.locate("a").unwrap_err().to_string().contains("too many links"));
        assert!(a.locate("../f").is_err());
        assert_eq!(a.locate("./f").unwrap().1, 1);
    }

    #[test]
    fn references_normalize() {
        assert_eq!(normalize("busybox"), "busybox:latest");
        assert_eq!(normalize("docker.io/library/busybox:1"), "busybox:1");
        assert_eq!(normalize("localhost:5000/x"), "localhost:5000/x:latest");
        assert_eq!(normalize("keel/debian:amd64"), "keel/debian:amd64");
    }

    #[test]
    fn compressed_layers_flatten_and_are_verified_uncompressed() {
        use std::io::Write;
        let layer = tar_of(&[("etc/hello", b"hi")], &[]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&layer).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(&layer[..], 3).unwrap();
        let diff = hex::encode(Sha256::digest(&layer));
        let config = format!(
            r#"{{"architecture":"amd64","config":{{"Cmd":["/x"]}},"rootfs":{{"diff_ids":["sha256:{diff}","sha256:{diff}"]}}}}"#
        );
        let c = hex::encode(Sha256::digest(config.as_bytes()));
        let manifest = format!(r#"[{{"Config":"{c}.json","Layers":["a.tar.gz","b.tar.zst"]}}]"#);
        let cn = format!("{c}.json");
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.tar");
        let members: &[(&str, &[u8])] =
            &[("manifest.json", manifest.as_bytes()), (&cn, config.as_bytes()), ("a.tar.gz", &gz), ("b.tar.zst", &zst)];
        std::fs::write(&p, tar_of(members, &[])).unwrap();
        let r = crate::image::ImageRef::DockerArchive { file: p.clone(), reference: None };
        let img = crate::image::inspect(&r, Arch::X86_64).unwrap();
        assert_eq!(img.defaults.cmd, ["/x"]);
        let (mut tree, stats) = crate::image::flatten(&img).unwrap();
        assert_eq!(stats.layers, 2);
        assert!(tree.lookup("etc/hello").is_ok());

        // A layer that is not what its diff_id says is refused, compressed or not.
        let bad = config.replacen(&format!("sha256:{diff}"), &format!("sha256:{}", "0".repeat(64)), 1);
        let c = hex::encode(Sha256::digest(bad.as_bytes()));
        let manifest = format!(r#"[{{"Config":"{c}.json","Layers":["a.tar.gz","b.tar.zst"]}}]"#);
        let cn = format!("{c}.json");
        let members: &[(&str, &[u8])] =
            &[("manifest.json", manifest.as_bytes()), (&cn, bad.as_bytes()), ("a.tar.gz", &gz), ("b.tar.zst", &zst)];
        std::fs::write(&p, tar_of(members, &[])).unwrap();
        let img = crate::image::inspect(&r, Arch::X86_64).unwrap();
        let e = crate::image::flatten(&img).unwrap_err().to_string();
        assert!(e.contains("a.tar.gz") && e.contains("rootfs.diff_ids"), "{e}");
    }
}
