//! Container images: references, OCI layouts, local directories, and flattening layers into
//! one tree per image.

pub mod layer;
pub mod oci;
pub mod tree;

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use keel_plan::Arch;
use sha2::{Digest, Sha256};

use tree::{Kind, Meta, Node, Tree};

/// Problems with an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The reference cannot be parsed.
    #[error("`{0}` is not an image reference (expected oci:DIR[:TAG] or dir:PATH)")]
    BadRef(String),
    /// Reading a file failed.
    #[error("{0}: {1}")]
    Io(PathBuf, #[source] std::io::Error),
    /// The layout or a document in it is malformed.
    #[error("{0}")]
    Invalid(String),
    /// No manifest has that tag.
    #[error("no image tagged `{tag}` in the layout (tags: {available})")]
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
    /// A plain root filesystem directory.
    Dir(PathBuf),
}

impl ImageRef {
    /// Parse `oci:DIR[:TAG]` or `dir:PATH`; relative paths are against `base`.
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
    Dir(PathBuf),
}

/// Find and check an image for `arch` (manifest and config digests verified; layers are
/// verified while flattening).
pub fn inspect(r: &ImageRef, arch: Arch) -> Result<Image, ImageError> {
    match r {
        ImageRef::Oci { dir, tag } => {
            let layout = oci::Layout::open(dir)?;
            let resolved = layout.resolve(tag.as_deref(), arch)?;
            let rc = resolved.config.config.clone().unwrap_or_default();
            let defaults = ImageDefaults {
                entrypoint: rc.entrypoint.unwrap_or_default(),
                cmd: rc.cmd.unwrap_or_default(),
                env: rc.env.unwrap_or_default(),
                workdir: rc.working_dir.filter(|w| !w.is_empty()),
                user: rc.user.filter(|u| !u.is_empty()),
            };
            let id = short_id(resolved.manifest_digest.as_bytes());
            Ok(Image { id, defaults, source: Source::Oci(Box::new(resolved)) })
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

/// Flatten an image into one tree, verifying every layer's digests.
pub fn flatten(image: &Image) -> Result<(Tree, FlattenStats), ImageError> {
    let mut tree = Tree::default();
    let mut stats = FlattenStats::default();
    match &image.source {
        Source::Oci(r) => {
            let diff_ids = r.config.rootfs.as_ref().map(|f| f.diff_ids.clone()).unwrap_or_default();
            for (i, l) in r.manifest.layers.iter().enumerate() {
                let s = apply_layer(&r.layout, l, diff_ids.get(i), &mut tree)?;
                stats.layers += 1;
                stats.whiteouts += s.whiteouts;
                stats.devices_dropped += s.devices_dropped;
            }
        }
        Source::Dir(path) => {
            read_dir_tree(path, &mut tree.root)?;
        }
    }
    for (name, mode) in MOUNT_POINTS {
        if tree.ensure_dir(name, *mode) {
            stats.mount_points_replaced += 1;
        }
    }
    Ok((tree, stats))
}

fn apply_layer(
    layout: &oci::Layout,
    l: &oci::Descriptor,
    diff_id: Option<&String>,
    tree: &mut Tree,
) -> Result<layer::LayerStats, ImageError> {
    let mut blob = layout.open_blob(l)?;
    let mt = l.media_type.as_str();
    let layer_err = |source| ImageError::Layer { digest: l.digest.clone(), source };
    let stats = {
        let decompressed: Box<dyn Read + '_> = if mt.ends_with("+gzip") || mt.ends_with(".tar.gzip") {
            Box::new(flate2::read::MultiGzDecoder::new(&mut blob))
        } else if mt.ends_with("+zstd") {
            Box::new(zstd::stream::read::Decoder::new(&mut blob).map_err(|e| layer_err(layer::LayerError::Tar(e)))?)
        } else if mt.ends_with(".tar") || mt.ends_with(".diff.tar") {
            Box::new(&mut blob)
        } else {
            return Err(ImageError::MediaType { digest: l.digest.clone(), media_type: l.media_type.clone() });
        };
        let id = diff_id.ok_or_else(|| ImageError::Invalid(format!("layer {} has no diff_id", l.digest)))?;
        let mut r = oci::DigestReader::new(decompressed, id.clone(), None);
        let s = layer::apply(tree, &mut r).map_err(layer_err)?;
        r.finish()?;
        s
    };
    blob.finish()?;
    Ok(stats)
}

/// Read a host directory into `node` without following symlinks. Hard links (same inode)
/// share their data.
fn read_dir_tree(path: &Path, node: &mut Node) -> Result<(), ImageError> {
    let mut links: BTreeMap<(u64, u64), Arc<Vec<u8>>> = BTreeMap::new();
    let md = std::fs::symlink_metadata(path).map_err(|e| ImageError::Io(path.to_path_buf(), e))?;
    node.meta = meta_of(&md);
    read_dir_into(path, node, &mut links)
}

fn meta_of(md: &std::fs::Metadata) -> Meta {
    Meta { mode: md.mode() & 0o7777, uid: md.uid(), gid: md.gid(), mtime: md.mtime() }
}

fn read_dir_into(
    path: &Path,
    node: &mut Node,
    links: &mut BTreeMap<(u64, u64), Arc<Vec<u8>>>,
) -> Result<(), ImageError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e| ImageError::Io(p, e)
    };
    let Kind::Dir(children) = &mut node.kind else { return Ok(()) };
    for entry in std::fs::read_dir(path).map_err(io(path))? {
        let entry = entry.map_err(io(path))?;
        let p = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let md = std::fs::symlink_metadata(&p).map_err(io(&p))?;
        let meta = meta_of(&md);
        let ft = md.file_type();
        let child = if ft.is_dir() {
            let mut n = Node::dir(meta);
            read_dir_into(&p, &mut n, links)?;
            n
        } else if ft.is_symlink() {
            let t = std::fs::read_link(&p).map_err(io(&p))?;
            Node { meta, kind: Kind::Symlink(t.to_string_lossy().into_owned()) }
        } else if ft.is_file() {
            let key = (md.dev(), md.ino());
            let data = match links.get(&key) {
                Some(d) => d.clone(),
                None => {
                    let d = Arc::new(std::fs::read(&p).map_err(io(&p))?);
                    if md.nlink() > 1 {
                        links.insert(key, d.clone());
                    }
                    d
                }
            };
            Node { meta, kind: Kind::File(data) }
        } else {
            continue; // devices, sockets and fifos are not copied from a host directory
        };
        children.insert(name, child);
    }
    Ok(())
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
        assert!(ImageRef::parse("docker://busybox", b).is_err());
        assert!(ImageRef::parse("oci:", b).is_err());
    }
}
