//! `dir:PATH` images: a root filesystem read from a host directory, symlinks not followed.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use super::tree::{Kind, Meta, Node};
use super::ImageError;

/// Read a host directory into `node` without following symlinks. Hard links (same inode)
/// share their data.
pub fn read_dir_tree(path: &Path, node: &mut Node) -> Result<(), ImageError> {
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
