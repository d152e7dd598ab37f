//! OCI image layouts: index, manifests, configs and blobs, every blob's digest verified.

use std::io::Read;
use std::path::{Path, PathBuf};

use keel_plan::Arch;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::limits::{MAX_INDEX_DEPTH, MAX_JSON, MAX_LAYERS};
use super::ImageError;

const REF_NAME: &str = "org.opencontainers.image.ref.name";
const INDEX_TYPES: &[&str] =
    &["application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"];

/// A content descriptor.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type.
    #[serde(default)]
    pub media_type: String,
    /// `sha256:…`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// Annotations (the tag lives in `org.opencontainers.image.ref.name`).
    #[serde(default)]
    pub annotations: std::collections::BTreeMap<String, String>,
    /// Platform, in indexes.
    #[serde(default)]
    pub platform: Option<Platform>,
}

/// A platform in an index.
#[derive(Debug, Clone, Deserialize)]
pub struct Platform {
    /// `amd64`, `arm64`, …
    pub architecture: String,
    /// `linux`.
    #[serde(default)]
    pub os: String,
}

#[derive(Debug, Deserialize)]
struct Index {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

/// An image manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// The image config blob.
    pub config: Descriptor,
    /// Layers, bottom first.
    pub layers: Vec<Descriptor>,
}

/// The parts of an image config keel uses.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ImageConfig {
    /// `amd64`, `arm64`.
    #[serde(default)]
    pub architecture: String,
    /// Runtime defaults.
    #[serde(default)]
    pub config: Option<RunConfig>,
    /// Uncompressed layer digests.
    #[serde(default)]
    pub rootfs: Option<RootFs>,
}

impl ImageConfig {
    /// Check the config against its image: the architecture is `arch` (when it says), there are
    /// at most [`MAX_LAYERS`] layers, and `rootfs.diff_ids` lists one uncompressed digest per
    /// layer, so every byte applied is verified.
    pub fn check(&self, layers: usize, arch: Arch) -> Result<(), ImageError> {
        if !self.architecture.is_empty() && Arch::parse(&self.architecture) != Some(arch) {
            return Err(ImageError::WrongArch { image: self.architecture.clone(), wanted: arch });
        }
        if layers > MAX_LAYERS {
            return Err(ImageError::Invalid(format!(
                "the image has {layers} layers, more than the limit of {MAX_LAYERS}"
            )));
        }
        let diff_ids = self.rootfs.as_ref().map_or(0, |r| r.diff_ids.len());
        if diff_ids != layers {
            return Err(ImageError::Invalid(format!(
                "image config lists {diff_ids} rootfs.diff_ids for {layers} layers"
            )));
        }
        Ok(())
    }

    /// Its run defaults.
    pub fn defaults(&self) -> super::ImageDefaults {
        let rc = self.config.clone().unwrap_or_default();
        super::ImageDefaults {
            entrypoint: rc.entrypoint.unwrap_or_default(),
            cmd: rc.cmd.unwrap_or_default(),
            env: rc.env.unwrap_or_default(),
            workdir: rc.working_dir.filter(|w| !w.is_empty()),
            user: rc.user.filter(|u| !u.is_empty()),
        }
    }

    /// The uncompressed digest of layer `i`.
    pub fn diff_id(&self, i: usize) -> Result<&str, ImageError> {
        self.rootfs
            .as_ref()
            .and_then(|r| r.diff_ids.get(i))
            .map(String::as_str)
            .ok_or_else(|| ImageError::Invalid(format!("layer {i} has no diff_id")))
    }
}

/// `config` of an image config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    /// Entrypoint.
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// Cmd.
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    /// Env, `K=V`.
    #[serde(default)]
    pub env: Option<Vec<String>>,
    /// WorkingDir.
    #[serde(default)]
    pub working_dir: Option<String>,
    /// User.
    #[serde(default)]
    pub user: Option<String>,
}

/// `rootfs` of an image config.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RootFs {
    /// `sha256:` of each uncompressed layer.
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// An OCI image layout directory.
#[derive(Debug, Clone)]
pub struct Layout {
    dir: PathBuf,
}

/// A resolved image in a layout.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The layout.
    pub layout: Layout,
    /// Digest of the chosen manifest.
    pub manifest_digest: String,
    /// The manifest.
    pub manifest: Manifest,
    /// Its config.
    pub config: ImageConfig,
}

/// The hex part of a well-formed `sha256:` digest.
pub fn hex_of(digest: &str) -> Result<&str, ImageError> {
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| ImageError::Invalid(format!("unsupported digest `{digest}` (only sha256)")))?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(ImageError::Invalid(format!("malformed digest `{digest}`")));
    }
    Ok(hex)
}

impl Layout {
    /// Open a layout directory (checks `oci-layout`).
    pub fn open(dir: &Path) -> Result<Layout, ImageError> {
        let marker = dir.join("oci-layout");
        let text = read_small(&marker).map_err(|e| {
            ImageError::Invalid(format!("{} is not an OCI image layout (oci-layout: {e})", dir.display()))
        })?;
        let v: serde_json::Value =
            serde_json::from_slice(&text).map_err(|e| ImageError::Invalid(format!("{}: {e}", marker.display())))?;
        if v.get("imageLayoutVersion").and_then(|v| v.as_str()) != Some("1.0.0") {
            return Err(ImageError::Invalid(format!("{}: unsupported imageLayoutVersion", marker.display())));
        }
        Ok(Layout { dir: dir.to_path_buf() })
    }

    /// The path of a blob (the digest is checked to be well-formed first, so it cannot name a
    /// path outside `blobs/sha256`).
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, ImageError> {
        Ok(self.dir.join("blobs").join("sha256").join(hex_of(digest)?))
    }

    /// Open a blob: it must be a regular file (not a symlink, FIFO or device) of exactly the
    /// descriptor's size, so reading it always ends.
    fn open_checked(&self, d: &Descriptor) -> Result<std::fs::File, ImageError> {
        let path = self.blob_path(&d.digest)?;
        let f = open_regular(&path)?;
        let len = f.metadata().map_err(|e| ImageError::Io(path.clone(), e))?.len();
        if len != d.size {
            return Err(ImageError::Digest {
                digest: d.digest.clone(),
                reason: format!("blob is {len} bytes, descriptor says {}", d.size),
            });
        }
        Ok(f)
    }

    /// Read a small blob whole, verifying size and digest.
    pub fn read_blob(&self, d: &Descriptor) -> Result<Vec<u8>, ImageError> {
        if d.size > MAX_JSON {
            return Err(ImageError::Invalid(format!("blob {} is too large for JSON ({} bytes)", d.digest, d.size)));
        }
        let mut bytes = Vec::new();
        self.open_checked(d)?
            .take(d.size)
            .read_to_end(&mut bytes)
            .map_err(|e| ImageError::Io(self.dir.join("blobs"), e))?;
        verify(&d.digest, d.size, &bytes)?;
        Ok(bytes)
    }

    /// Open a blob for streaming; the caller verifies with [`DigestReader::finish`].
    pub fn open_blob(&self, d: &Descriptor) -> Result<DigestReader<std::io::Take<std::fs::File>>, ImageError> {
        let f = self.open_checked(d)?;
        Ok(DigestReader::new(f.take(d.size), d.digest.clone(), Some(d.size)))
    }

    /// Resolve `tag` (or the only/`latest` image when `None`) for `arch`.
    pub fn resolve(&self, tag: Option<&str>, arch: Arch) -> Result<Resolved, ImageError> {
        let index_path = self.dir.join("index.json");
        let text = read_small(&index_path)?;
        let index: Index =
            serde_json::from_slice(&text).map_err(|e| ImageError::Invalid(format!("{}: {e}", index_path.display())))?;
        let tagged: Vec<&Descriptor> = match tag {
            Some(t) => {
                index.manifests.iter().filter(|d| d.annotations.get(REF_NAME).map(String::as_str) == Some(t)).collect()
            }
            None => {
                let latest: Vec<_> = index
                    .manifests
                    .iter()
                    .filter(|d| d.annotations.get(REF_NAME).map(String::as_str) == Some("latest"))
                    .collect();
                if latest.is_empty() {
                    index.manifests.iter().collect()
                } else {
                    latest
                }
            }
        };
        if tagged.is_empty() {
            let tags: Vec<_> = index.manifests.iter().filter_map(|d| d.annotations.get(REF_NAME)).cloned().collect();
            return Err(ImageError::NoTag { tag: tag.unwrap_or("latest").to_string(), available: tags.join(", ") });
        }
        let desc = self.pick(&tagged, arch, 0)?;
        let manifest_bytes = self.read_blob(&desc)?;
        let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
            .map_err(|e| ImageError::Invalid(format!("manifest {}: {e}", desc.digest)))?;
        let config_bytes = self.read_blob(&manifest.config)?;
        let config: ImageConfig = serde_json::from_slice(&config_bytes)
            .map_err(|e| ImageError::Invalid(format!("image config {}: {e}", manifest.config.digest)))?;
        config.check(manifest.layers.len(), arch)?;
        Ok(Resolved { layout: self.clone(), manifest_digest: desc.digest.clone(), manifest, config })
    }

    /// Choose an image manifest among candidates, descending into image indexes by platform.
    fn pick(&self, candidates: &[&Descriptor], arch: Arch, depth: usize) -> Result<Descriptor, ImageError> {
        if depth > MAX_INDEX_DEPTH {
            return Err(ImageError::Invalid(format!("image indexes nested more than {MAX_INDEX_DEPTH} deep")));
        }
        let matches_arch = |d: &&Descriptor| match &d.platform {
            Some(p) => Arch::parse(&p.architecture) == Some(arch) && (p.os.is_empty() || p.os == "linux"),
            None => true,
        };
        let fitting: Vec<&Descriptor> = candidates.iter().copied().filter(matches_arch).collect();
        let Some(first) = fitting.first() else {
            let archs: Vec<_> =
                candidates.iter().filter_map(|d| d.platform.as_ref()).map(|p| p.architecture.clone()).collect();
            return Err(ImageError::NoPlatform { wanted: arch, available: archs.join(", ") });
        };
        // Prefer an entry that names our platform explicitly.
        let chosen = fitting.iter().find(|d| d.platform.is_some()).unwrap_or(first);
        if INDEX_TYPES.contains(&chosen.media_type.as_str()) {
            let bytes = self.read_blob(chosen)?;
            let index: Index = serde_json::from_slice(&bytes)
                .map_err(|e| ImageError::Invalid(format!("image index {}: {e}", chosen.digest)))?;
            let inner: Vec<&Descriptor> = index.manifests.iter().collect();
            return self.pick(&inner, arch, depth + 1);
        }
        Ok((*chosen).clone())
    }
}

/// Open a file that must be a regular file: symlinks, FIFOs and devices are refused before
/// being opened (a FIFO would block, a device might never end), and the opened file is checked
/// again, so a swap in between cannot slip one in.
fn open_regular(path: &Path) -> Result<std::fs::File, ImageError> {
    let not_regular = || ImageError::Invalid(format!("{} is not a regular file", path.display()));
    let md = std::fs::symlink_metadata(path).map_err(|e| ImageError::Io(path.to_path_buf(), e))?;
    if !md.file_type().is_file() {
        return Err(not_regular());
    }
    let f = std::fs::File::open(path).map_err(|e| ImageError::Io(path.to_path_buf(), e))?;
    let md = f.metadata().map_err(|e| ImageError::Io(path.to_path_buf(), e))?;
    if !md.file_type().is_file() {
        return Err(not_regular());
    }
    Ok(f)
}

/// Read a small regular file (a JSON document) whole; larger than [`MAX_JSON`] is an error.
fn read_small(path: &Path) -> Result<Vec<u8>, ImageError> {
    let f = open_regular(path)?;
    let mut bytes = Vec::new();
    f.take(MAX_JSON + 1).read_to_end(&mut bytes).map_err(|e| ImageError::Io(path.to_path_buf(), e))?;
    if bytes.len() as u64 > MAX_JSON {
        return Err(ImageError::Invalid(format!("{} is larger than the limit of {MAX_JSON} bytes", path.display())));
    }
    Ok(bytes)
}

/// Check that `bytes` is `size` bytes long and hashes to `digest`.
pub fn verify(digest: &str, size: u64, bytes: &[u8]) -> Result<(), ImageError> {
    if bytes.len() as u64 != size {
        return Err(ImageError::Digest {
            digest: digest.into(),
            reason: format!("size {} != descriptor size {size}", bytes.len()),
        });
    }
    let got = hex::encode(Sha256::digest(bytes));
    if got != hex_of(digest)? {
        return Err(ImageError::Digest { digest: digest.into(), reason: format!("content hashes to sha256:{got}") });
    }
    Ok(())
}

/// A reader that hashes what passes through, to verify a digest at the end.
pub struct DigestReader<R> {
    inner: R,
    hasher: Sha256,
    read: u64,
    digest: String,
    size: Option<u64>,
}

impl<R: Read> DigestReader<R> {
    /// Wrap `inner`, which must hash to `digest` (and be `size` bytes, if known).
    pub fn new(inner: R, digest: String, size: Option<u64>) -> Self {
        DigestReader { inner, hasher: Sha256::new(), read: 0, digest, size }
    }

    /// Drain what is left and check size and digest.
    pub fn finish(mut self) -> Result<(), ImageError> {
        std::io::copy(&mut self, &mut std::io::sink())
            .map_err(|e| ImageError::Digest { digest: self.digest.clone(), reason: e.to_string() })?;
        if let Some(size) = self.size {
            if self.read != size {
                return Err(ImageError::Digest {
                    digest: self.digest,
                    reason: format!("size {} != descriptor size {size}", self.read),
                });
            }
        }
        let got = hex::encode(self.hasher.finalize());
        if got != hex_of(&self.digest)? {
            return Err(ImageError::Digest { digest: self.digest, reason: format!("content hashes to sha256:{got}") });
        }
        Ok(())
    }
}

impl<R: Read> Read for DigestReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout_with(blob: &[u8]) -> (tempfile::TempDir, Layout, Descriptor) {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        std::fs::create_dir_all(d.path().join("blobs/sha256")).unwrap();
        let hex = hex::encode(Sha256::digest(blob));
        std::fs::write(d.path().join("blobs/sha256").join(&hex), blob).unwrap();
        let desc = Descriptor {
            media_type: String::new(),
            digest: format!("sha256:{hex}"),
            size: blob.len() as u64,
            annotations: Default::default(),
            platform: None,
        };
        let layout = Layout::open(d.path()).unwrap();
        (d, layout, desc)
    }

    #[test]
    fn good_blob_reads() {
        let (_d, l, desc) = layout_with(b"{}");
        assert_eq!(l.read_blob(&desc).unwrap(), b"{}");
    }

    #[test]
    fn wrong_size_and_wrong_content_are_refused() {
        let (_d, l, mut desc) = layout_with(b"{}");
        desc.size = 3;
        assert!(matches!(l.read_blob(&desc), Err(ImageError::Digest { .. })));
        let (d, l, desc) = layout_with(b"{}");
        std::fs::write(l.blob_path(&desc.digest).unwrap(), b"[]").unwrap();
        assert!(matches!(l.read_blob(&desc), Err(ImageError::Digest { .. })), "{:?}", d.path());
    }

    #[test]
    fn malformed_digests_cannot_name_other_paths() {
        let (_d, l, mut desc) = layout_with(b"{}");
        desc.digest = "sha256:../../../../etc/passwd".into();
        assert!(matches!(l.read_blob(&desc), Err(ImageError::Invalid(_))));
        desc.digest = "md5:abc".into();
        assert!(matches!(l.read_blob(&desc), Err(ImageError::Invalid(_))));
    }

    #[test]
    fn symlinked_and_special_blobs_are_refused() {
        let (_d, l, desc) = layout_with(b"{}");
        let p = l.blob_path(&desc.digest).unwrap();
        std::fs::remove_file(&p).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &p).unwrap();
        assert!(matches!(l.read_blob(&desc), Err(ImageError::Invalid(_))));
        assert!(l.open_blob(&desc).is_err());
    }
}
