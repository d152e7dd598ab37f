//! Container images: references, OCI layouts, docker-archive tarballs, local directories, and
//! flattening layers into one tree per image.

pub mod dir;
pub mod docker;
pub mod dpkg;
pub mod entries;
pub mod layer;
pub mod limits;
pub mod oci;
pub mod stream;
pub mod tree;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use keel_plan::Arch;
use sha2::{Digest, Sha256};

use limits::Budget;
use stream::Compression;
use tree::Tree;

/// Problems with an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The reference cannot be parsed.
    #[error("`{0}` is not an image reference (expected oci:DIR[:TAG], docker-archive:FILE[:REF] or dir:PATH)")]
    BadRef(String),
    /// Reading a file failed.
    #[error("{0}: {1}")]
    Io(PathBuf, #[source] std::io::Error),
    /// The layout or a document in it is malformed.
    #[error("{0}")]
    Invalid(String),
    /// No manifest has that tag.
    #[error("no image tagged `{tag}` (tags: {available})")]
    NoTag {
        /// Wanted tag.
        tag: String,
        /// Tags present.
        available: String,
    },
    /// No manifest for the target arch.
    #[error("no image for {wanted} in the index (platforms: {available})")]
    NoPlatform {
        /// Target.
        wanted: Arch,
        /// Present.
        available: String,
    },
    /// The image is for another arch.
    #[error("image is for {image}, not {wanted}")]
    WrongArch {
        /// The image's architecture.
        image: String,
        /// Target.
        wanted: Arch,
    },
    /// A blob does not match its digest.
    #[error("blob {digest} failed verification: {reason}")]
    Digest {
        /// Expected digest.
        digest: String,
        /// What differed.
        reason: String,
    },
    /// A layer was rejected.
    #[error("layer {digest}: {source}")]
    Layer {
        /// The layer.
        digest: String,
        /// Why.
        #[source]
        source: layer::LayerError,
    },
    /// A layer media type keel cannot read.
    #[error("layer {digest}: unsupported media type `{media_type}`")]
    MediaType {
        /// The layer.
        digest: String,
        /// Its type.
        media_type: String,
    },
}

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    /// An OCI image layout directory and an optional tag.
    Oci {
        /// Layout directory.
        dir: PathBuf,
        /// Tag (`org.opencontainers.image.ref.name`).
        tag: Option<String>,
    },
    /// A docker-archive tarball (`docker save`) and an optional reference in it.
    DockerArchive {
        /// The tarball.
        file: PathBuf,
        /// `NAME[:TAG]` among its RepoTags, or `@N` for its Nth image.
        reference: Option<String>,
    },
    /// A plain root filesystem directory.
    Dir(PathBuf),
}

impl ImageRef {
    /// Parse `oci:DIR[:TAG]`, `docker-archive:FILE[:REF]` or `dir:PATH`; relative paths are
    /// against `base`. As in skopeo, a docker-archive path ends at its first `:`.
    pub fn parse(s: &str, base: &Path) -> Result<ImageRef, ImageError> {
        let abs = |p: &str| {
            let p = Path::new(p);
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        if let Some(rest) = s.strip_prefix("oci:") {
            // The tag is after the last `:` unless that `:` is part of the path (contains `/`).
            let (dir, tag) = match rest.rsplit_once(':') {
                Some((d, t)) if !t.contains('/') && !t.is_empty() => (d, Some(t.to_string())),
                _ => (rest, None),
            };
            if dir.is_empty() {
                return Err(ImageError::BadRef(s.into()));
            }
            Ok(ImageRef::Oci { dir: abs(dir), tag })
        } else if let Some(rest) = s.strip_prefix("docker-archive:") {
            let (file, reference) = match rest.split_once(':') {
                Some((f, r)) if !r.is_empty() => (f, Some(r.to_string())),
                Some((f, _)) => (f, None),
                None => (rest, None),
            };
            if file.is_empty() {
                return Err(ImageError::BadRef(s.into()));
            }
            Ok(ImageRef::DockerArchive { file: abs(file), reference })
        } else if let Some(rest) = s.strip_prefix("dir:") {
            if rest.is_empty() {
                return Err(ImageError::BadRef(s.into()));
            }
            Ok(ImageRef::Dir(abs(rest)))
        } else {
            Err(ImageError::BadRef(s.into()))
        }
    }
}

/// What an image says about how to run it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageDefaults {
    /// Entrypoint.
    pub entrypoint: Vec<String>,
    /// Cmd.
    pub cmd: Vec<String>,
    /// Env, `K=V`.
    pub env: Vec<String>,
    /// WorkingDir.
    pub workdir: Option<String>,
    /// User.
    pub user: Option<String>,
}

/// An image found and checked, not yet flattened.
#[derive(Debug, Clone)]
pub struct Image {
    /// Stable id: the name of its tree on the images partition.
    pub id: String,
    /// Run defaults from the image config.
    pub defaults: ImageDefaults,
    source: Source,
}

#[derive(Debug, Clone)]
enum Source {
    Oci(Box<oci::Resolved>),
    Docker(Box<docker::Resolved>),
    Dir(PathBuf),
}

impl Image {
    /// What names this image's content, for the provenance record: `(what, digest)` pairs, the
    /// manifest (OCI) or config (docker-archive) first, then each layer bottom first. A `dir:`
    /// image is not content-addressed and has none.
    pub fn digests(&self) -> Vec<(&'static str, String)> {
        match &self.source {
            Source::Oci(r) => [("manifest", r.manifest_digest.clone()), ("config", r.manifest.config.digest.clone())]
                .into_iter()
                .chain(r.manifest.layers.iter().map(|l| ("layer", l.digest.clone())))
                .collect(),
            Source::Docker(r) => std::iter::once(("config", r.config_digest.clone()))
                .chain(
                    r.config.rootfs.iter().flat_map(|f| f.diff_ids.iter().map(|d| ("layer (uncompressed)", d.clone()))),
                )
                .collect(),
            Source::Dir(_) => Vec::new(),
        }
    }
}

/// Find and check an image for `arch` (manifest and config digests verified; layers are
/// verified while flattening).
pub fn inspect(r: &ImageRef, arch: Arch) -> Result<Image, ImageError> {
    match r {
        ImageRef::Oci { dir, tag } => {
            let layout = oci::Layout::open(dir)?;
            let resolved = layout.resolve(tag.as_deref(), arch)?;
            let defaults = resolved.config.defaults();
            let id = short_id(resolved.manifest_digest.as_bytes());
            Ok(Image { id, defaults, source: Source::Oci(Box::new(resolved)) })
        }
        ImageRef::DockerArchive { file, reference } => {
            let archive = Arc::new(docker::Archive::open(file)?);
            let resolved = docker::resolve(archive, reference.as_deref(), arch)?;
            let defaults = resolved.config.defaults();
            let id = short_id(format!("docker-archive {}", resolved.config_digest).as_bytes());
            Ok(Image { id, defaults, source: Source::Docker(Box::new(resolved)) })
        }
        ImageRef::Dir(path) => {
            let md = std::fs::metadata(path).map_err(|e| ImageError::Io(path.clone(), e))?;
            if !md.is_dir() {
                return Err(ImageError::Invalid(format!("{} is not a directory", path.display())));
            }
            let id = short_id(path.to_string_lossy().as_bytes());
            Ok(Image { id, defaults: ImageDefaults::default(), source: Source::Dir(path.clone()) })
        }
    }
}

fn short_id(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..8])
}

/// What flattening did.
#[derive(Debug, Default, Clone, Copy)]
pub struct FlattenStats {
    /// Layers applied.
    pub layers: u64,
    /// Whiteouts applied.
    pub whiteouts: u64,
    /// Device nodes dropped.
    pub devices_dropped: u64,
    /// Top-level files or symlinks replaced by the runtime's mount-point directories.
    pub mount_points_replaced: u64,
}

/// Directories every tree gets (mount points of the runtime), with their modes.
pub const MOUNT_POINTS: &[(&str, u32)] =
    &[("proc", 0o555), ("sys", 0o555), ("dev", 0o755), ("tmp", 0o1777), ("run", 0o755)];

/// Flatten an image into one tree, verifying every layer's digests, within the caps of
/// `limits.rs` (all layers of the image share one [`Budget`]).
pub fn flatten(image: &Image) -> Result<(Tree, FlattenStats), ImageError> {
    let mut tree = Tree::default();
    let mut stats = FlattenStats::default();
    let mut budget = Budget::default();
    let mut add = |s: layer::LayerStats| {
        stats.layers += 1;
        stats.whiteouts += s.whiteouts;
        stats.devices_dropped += s.devices_dropped;
    };
    match &image.source {
        Source::Oci(r) => {
            for (i, l) in r.manifest.layers.iter().enumerate() {
                add(apply_oci_layer(&r.layout, l, r.config.diff_id(i)?, &mut tree, &mut budget)?);
            }
        }
        Source::Docker(r) => {
            for (i, name) in r.layers.iter().enumerate() {
                add(apply_docker_layer(r, name, r.config.diff_id(i)?, &mut tree, &mut budget)?);
            }
        }
        Source::Dir(path) => {
            dir::read_dir_tree(path, &mut tree.root)?;
        }
    }
    for (name, mode) in MOUNT_POINTS {
        if tree.ensure_dir(name, *mode) {
            stats.mount_points_replaced += 1;
        }
    }
    Ok((tree, stats))
}

/// Apply one uncompressed layer stream, checking that it hashes to `diff_id`.
fn apply_stream(
    what: &str,
    decompressed: Box<dyn Read + '_>,
    diff_id: &str,
    tree: &mut Tree,
    budget: &mut Budget,
) -> Result<layer::LayerStats, ImageError> {
    let mut r = oci::DigestReader::new(decompressed, diff_id.to_string(), None);
    let stats =
        layer::apply(tree, &mut r, budget).map_err(|source| ImageError::Layer { digest: what.into(), source })?;
    r.finish().map_err(|e| match e {
        ImageError::Digest { digest, reason } => {
            ImageError::Digest { digest, reason: format!("layer {what} uncompressed (rootfs.diff_ids): {reason}") }
        }
        e => e,
    })?;
    Ok(stats)
}

fn apply_oci_layer(
    layout: &oci::Layout,
    l: &oci::Descriptor,
    diff_id: &str,
    tree: &mut Tree,
    budget: &mut Budget,
) -> Result<layer::LayerStats, ImageError> {
    let compression = Compression::from_media_type(&l.media_type)
        .ok_or_else(|| ImageError::MediaType { digest: l.digest.clone(), media_type: l.media_type.clone() })?;
    let mut blob = layout.open_blob(l)?;
    let stats = {
        let decompressed = stream::decoder(compression, &mut blob).map_err(|e| ImageError::Layer {
            digest: l.digest.clone(),
            source: layer::LayerError::Tar(entries::TarError::Io(e)),
        })?;
        apply_stream(&l.digest, decompressed, diff_id, tree, budget)?
    };
    // The compressed blob is hashed too, to its last byte.
    blob.finish()?;
    Ok(stats)
}

fn apply_docker_layer(
    r: &docker::Resolved,
    name: &str,
    diff_id: &str,
    tree: &mut Tree,
    budget: &mut Budget,
) -> Result<layer::LayerStats, ImageError> {
    let member = r.archive.open_member(name)?;
    let what = format!("{name} ({diff_id})");
    let decompressed = stream::sniffing_decoder(member).map_err(|e| ImageError::Layer {
        digest: what.clone(),
        source: layer::LayerError::Tar(entries::TarError::Io(e)),
    })?;
    apply_stream(&what, decompressed, diff_id, tree, budget)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs() {
        let b = Path::new("/cfg");
        assert_eq!(
            ImageRef::parse("oci:images/bb:hello", b).unwrap(),
            ImageRef::Oci { dir: "/cfg/images/bb".into(), tag: Some("hello".into()) }
        );
        assert_eq!(ImageRef::parse("oci:/abs/bb", b).unwrap(), ImageRef::Oci { dir: "/abs/bb".into(), tag: None });
        assert_eq!(ImageRef::parse("dir:root", b).unwrap(), ImageRef::Dir("/cfg/root".into()));
        assert_eq!(
            ImageRef::parse("docker-archive:d.tar:keel/debian:amd64", b).unwrap(),
            ImageRef::DockerArchive { file: "/cfg/d.tar".into(), reference: Some("keel/debian:amd64".into()) }
        );
        assert_eq!(
            ImageRef::parse("docker-archive:/x/d.tar", b).unwrap(),
            ImageRef::DockerArchive { file: "/x/d.tar".into(), reference: None }
        );
        assert!(ImageRef::parse("docker-archive:", b).is_err());
        assert!(ImageRef::parse("docker://busybox", b).is_err());
        assert!(ImageRef::parse("oci:", b).is_err());
    }
}
