//! Applying one layer (a tar stream) to a tree, with OCI whiteouts.
//!
//! Rules (docs/architecture.md, "Image layers"):
//! - paths are relative to the tree root; a leading `/` is dropped; `..` rejects the layer;
//! - parent directories are resolved inside the tree (symlinks followed chroot-style), so an
//!   entry can never land outside it; missing parents are created (0755, root);
//! - `.wh.NAME` deletes NAME from lower layers, `.wh..wh..opq` empties its directory of
//!   lower-layer entries; neither touches entries of its own layer nor creates directories;
//! - hard links must name a regular file already in the tree;
//! - device nodes are dropped (containers get their own minimal /dev) and counted.

use std::collections::HashSet;
use std::io::Read;
use std::sync::Arc;

use super::tree::{components, Kind, Meta, Node, PathError, Tree};

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";
/// Longest path accepted from a layer.
const MAX_PATH: usize = 4096;

/// Why a layer was rejected.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// The tar stream is malformed.
    #[error("malformed tar: {0}")]
    Tar(std::io::Error),
    /// An entry's path is unacceptable.
    #[error("entry `{path}`: {source}")]
    Path {
        /// The entry.
        path: String,
        /// Why.
        #[source]
        source: PathError,
    },
    /// A hard link to something that is not a regular file in the tree.
    #[error("entry `{path}`: hard link target `{target}` is not a regular file in the image")]
    BadHardlink {
        /// The entry.
        path: String,
        /// Its target.
        target: String,
    },
    /// An entry type keel does not accept.
    #[error("entry `{path}`: unsupported tar entry type {kind}")]
    Unsupported {
        /// The entry.
        path: String,
        /// The type byte.
        kind: char,
    },
    /// A path longer than [`MAX_PATH`].
    #[error("entry path is longer than {MAX_PATH} bytes")]
    TooLong,
}

/// What applying a layer did, for the build summary.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LayerStats {
    /// Entries added or replaced.
    pub entries: u64,
    /// Whiteouts applied.
    pub whiteouts: u64,
    /// Device nodes dropped.
    pub devices_dropped: u64,
}

/// Apply one uncompressed tar layer to `tree`.
pub fn apply<R: Read>(tree: &mut Tree, tar: R) -> Result<LayerStats, LayerError> {
    let mut stats = LayerStats::default();
    // Entries this layer added: whiteouts and opaque markers only remove lower-layer entries.
    let mut added: HashSet<Vec<String>> = HashSet::new();
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries().map_err(LayerError::Tar)? {
        let mut entry = entry.map_err(LayerError::Tar)?;
        let raw_path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        if raw_path.len() > MAX_PATH {
            return Err(LayerError::TooLong);
        }
        let path_err = |source| LayerError::Path { path: raw_path.clone(), source };
        let comps = components(&raw_path).map_err(path_err)?;
        let Some((name, parent)) = comps.split_last() else {
            // The root itself: take its metadata.
            if entry.header().entry_type().is_dir() {
                tree.root.meta = meta_of(entry.header());
            }
            continue;
        };
        let header = entry.header().clone();

        if name == OPAQUE || name.starts_with(WHITEOUT) {
            // Whiteouts only remove what lower layers put there, and never create anything: a
            // whiteout under a directory that does not exist has nothing to hide.
            let Ok(parent) = tree.resolve_dir(parent, None) else {
                stats.whiteouts += 1;
                continue;
            };
            let dir = tree.dir_mut(&parent).map_err(path_err)?;
            if name == OPAQUE {
                dir.retain(|child, _| {
                    let mut p = parent.clone();
                    p.push(child.clone());
                    added.contains(&p)
                });
            } else {
                let victim = &name[WHITEOUT.len()..];
                if victim.is_empty() || victim == "." || victim == ".." {
                    return Err(path_err(PathError::Invalid(raw_path.clone())));
                }
                let mut p = parent.clone();
                p.push(victim.to_string());
                if !added.contains(&p) {
                    dir.remove(victim);
                }
            }
            stats.whiteouts += 1;
            continue;
        }
        let parent = resolve_parent(tree, parent, &mut added).map_err(path_err)?;

        let meta = meta_of(&header);
        let kind = match header.entry_type() {
            tar::EntryType::Directory => {
                let dir = tree.dir_mut(&parent).map_err(path_err)?;
                match dir.get_mut(name) {
                    Some(Node { meta: m, kind: Kind::Dir(_) }) => *m = meta,
                    _ => {
                        dir.insert(name.clone(), Node::dir(meta));
                    }
                }
                mark(&mut added, &parent, name);
                stats.entries += 1;
                continue;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut data = Vec::with_capacity(header.size().unwrap_or(0).min(1 << 20) as usize);
                entry.read_to_end(&mut data).map_err(LayerError::Tar)?;
                Kind::File(Arc::new(data))
            }
            tar::EntryType::Symlink => {
                let target =
                    entry.link_name_bytes().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
                if target.is_empty() || target.contains('\0') {
                    return Err(path_err(PathError::Invalid(format!("symlink target `{target}`"))));
                }
                Kind::Symlink(target)
            }
            tar::EntryType::Link => {
                let target =
                    entry.link_name_bytes().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
                let bad = || LayerError::BadHardlink { path: raw_path.clone(), target: target.clone() };
                match tree.lookup(&target) {
                    Ok(Node { kind: Kind::File(data), .. }) => Kind::File(data.clone()),
                    Ok(_) => return Err(bad()),
                    Err(PathError::DotDot(_)) | Err(PathError::Missing(_)) | Err(PathError::NotADir(_)) => {
                        return Err(bad())
                    }
                    Err(e) => return Err(path_err(e)),
                }
            }
            tar::EntryType::Fifo => Kind::Fifo,
            tar::EntryType::Char | tar::EntryType::Block => {
                stats.devices_dropped += 1;
                continue;
            }
            other => {
                return Err(LayerError::Unsupported { path: raw_path.clone(), kind: other.as_byte() as char });
            }
        };
        tree.dir_mut(&parent).map_err(path_err)?.insert(name.clone(), Node { meta, kind });
        mark(&mut added, &parent, name);
        stats.entries += 1;
    }
    Ok(stats)
}

/// Resolve an entry's parent inside the tree, creating missing directories; the ones created
/// count as added by this layer (so a later opaque marker in the same layer keeps them).
fn resolve_parent(
    tree: &mut Tree,
    parent: &[String],
    added: &mut HashSet<Vec<String>>,
) -> Result<Vec<String>, PathError> {
    if let Ok(p) = tree.resolve_dir(parent, None) {
        return Ok(p);
    }
    let resolved = tree.resolve_dir(parent, Some(Meta::root(0o755)))?;
    for i in 1..=resolved.len() {
        added.insert(resolved[..i].to_vec());
    }
    Ok(resolved)
}

fn mark(added: &mut HashSet<Vec<String>>, parent: &[String], name: &str) {
    let mut p = parent.to_vec();
    p.push(name.to_string());
    added.insert(p);
}

fn meta_of(h: &tar::Header) -> Meta {
    Meta {
        mode: h.mode().unwrap_or(0o644) & 0o7777,
        uid: h.uid().ok().and_then(|u| u32::try_from(u).ok()).unwrap_or(0),
        gid: h.gid().ok().and_then(|g| u32::try_from(g).ok()).unwrap_or(0),
        mtime: h.mtime().ok().and_then(|t| i64::try_from(t).ok()).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    enum E<'a> {
        Dir(&'a str),
        File(&'a str, &'a [u8]),
        Sym(&'a str, &'a str),
        Hard(&'a str, &'a str),
        Dev(&'a str),
    }

    fn layer(entries: &[E]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for e in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o755);
            h.set_mtime(1);
            let (path, data): (&str, &[u8]) = match e {
                E::Dir(p) => {
                    h.set_entry_type(tar::EntryType::Directory);
                    (p, b"")
                }
                E::File(p, d) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    (p, d)
                }
                E::Sym(p, t) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_link_name(t).unwrap();
                    (p, b"")
                }
                E::Hard(p, t) => {
                    h.set_entry_type(tar::EntryType::Link);
                    h.set_link_name(t).unwrap();
                    (p, b"")
                }
                E::Dev(p) => {
                    h.set_entry_type(tar::EntryType::Block);
                    (p, b"")
                }
            };
            h.set_size(data.len() as u64);
            // Write the raw name so tests can include `..` and absolute paths.
            let name = &mut h.as_old_mut().name;
            name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_cksum();
            b.append(&h, data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn names(t: &mut Tree, dir: &[&str]) -> Vec<String> {
        let d: Vec<String> = dir.iter().map(|s| s.to_string()).collect();
        t.dir_mut(&d).unwrap().keys().cloned().collect()
    }

    #[test]
    fn whiteouts_and_opaque_dirs() {
        let mut t = Tree::default();
        apply(
            &mut t,
            &layer(&[
                E::Dir("etc"),
                E::File("etc/a", b"1"),
                E::File("etc/b", b"2"),
                E::Dir("var"),
                E::File("var/x", b"x"),
            ])[..],
        )
        .unwrap();
        let s = apply(
            &mut t,
            &layer(&[E::File("etc/.wh.a", b""), E::File("var/.wh..wh..opq", b""), E::File("var/y", b"y")])[..],
        )
        .unwrap();
        assert_eq!(s.whiteouts, 2);
        assert_eq!(names(&mut t, &["etc"]), ["b"]);
        assert_eq!(names(&mut t, &["var"]), ["y"]);
    }

    #[test]
    fn opaque_marker_keeps_same_layer_entries_written_before_it() {
        let mut t = Tree::default();
        apply(&mut t, &layer(&[E::File("d/old", b"1")])[..]).unwrap();
        apply(&mut t, &layer(&[E::File("d/new", b"2"), E::File("d/.wh..wh..opq", b"")])[..]).unwrap();
        assert_eq!(names(&mut t, &["d"]), ["new"]);
    }

    #[test]
    fn whiteouts_spare_their_own_layer_and_create_nothing() {
        let mut t = Tree::default();
        apply(&mut t, &layer(&[E::File("a", b"lower")])[..]).unwrap();
        apply(&mut t, &layer(&[E::File("b", b"same"), E::File(".wh.b", b""), E::File("nodir/.wh.x", b"")])[..])
            .unwrap();
        assert_eq!(names(&mut t, &[]), ["a", "b"]);
    }

    #[test]
    fn implicit_parents_survive_an_opaque_marker_of_their_layer() {
        let mut t = Tree::default();
        apply(&mut t, &layer(&[E::File("d/old", b"1")])[..]).unwrap();
        apply(&mut t, &layer(&[E::File("d/sub/new", b"2"), E::File("d/.wh..wh..opq", b"")])[..]).unwrap();
        assert_eq!(names(&mut t, &["d"]), ["sub"]);
        assert_eq!(names(&mut t, &["d", "sub"]), ["new"]);
    }

    #[test]
    fn dotdot_is_rejected() {
        let mut t = Tree::default();
        let e = apply(&mut t, &layer(&[E::File("../../etc/evil", b"x")])[..]).unwrap_err();
        assert!(matches!(e, LayerError::Path { source: PathError::DotDot(_), .. }), "{e}");
    }

    #[test]
    fn absolute_paths_stay_inside() {
        let mut t = Tree::default();
        apply(&mut t, &layer(&[E::File("/etc/passwd", b"root")])[..]).unwrap();
        assert_eq!(names(&mut t, &["etc"]), ["passwd"]);
    }

    #[test]
    fn writes_through_escaping_symlinks_stay_inside() {
        let mut t = Tree::default();
        apply(&mut t, &layer(&[E::Sym("up", "../../../.."), E::File("up/etc/x", b"x")])[..]).unwrap();
        assert_eq!(names(&mut t, &["etc"]), ["x"]);
    }

    #[test]
    fn hardlinks_share_data_and_must_exist() {
        let mut t = Tree::default();
        apply(&mut t, &layer(&[E::File("a", b"data"), E::Hard("b", "a")])[..]).unwrap();
        assert_eq!(t.stats().file_bytes, 4);
        let e = apply(&mut t, &layer(&[E::Hard("c", "/nope")])[..]).unwrap_err();
        assert!(matches!(e, LayerError::BadHardlink { .. }), "{e}");
        let e = apply(&mut t, &layer(&[E::Hard("c", "../../etc/shadow")])[..]).unwrap_err();
        assert!(matches!(e, LayerError::BadHardlink { .. }), "{e}");
    }

    #[test]
    fn devices_are_dropped() {
        let mut t = Tree::default();
        let s = apply(&mut t, &layer(&[E::Dev("dev/sda")])[..]).unwrap();
        assert_eq!(s.devices_dropped, 1);
        assert!(names(&mut t, &["dev"]).is_empty());
    }
}
