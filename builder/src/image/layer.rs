//! Applying one layer (a tar stream) to a tree, with OCI whiteouts.
//!
//! Rules (docs/architecture.md, "Image layers"):
//! - paths are relative to the tree root; a leading `/` is dropped; `..` rejects the layer;
//! - parent directories are resolved inside the tree (symlinks followed chroot-style), so an
//!   entry can never land outside it; missing parents are created (0755, root);
//! - `.wh.NAME` deletes NAME from lower layers, `.wh..wh..opq` empties its directory of
//!   lower-layer entries; neither touches entries of its own layer nor creates directories;
//! - a path may appear once per layer (the OCI layer spec forbids duplicates): a second entry
//!   for it rejects the layer;
//! - hard links must name a regular file already in the tree;
//! - device nodes are dropped (containers get their own minimal /dev) and counted;
//! - sizes are capped (`limits.rs`, through `entries.rs`), and at most [`MAX_TRAILER`] bytes
//!   may follow the end-of-archive marker.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::Arc;

use super::entries::{self, TarError};
use super::limits::{Budget, MAX_TRAILER};
use super::tree::{components, Kind, Meta, Node, PathError, Tree};

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// Why a layer was rejected.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// The tar stream is malformed or over a cap.
    #[error(transparent)]
    Tar(#[from] TarError),
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
    /// Two entries for one path in one layer (whiteouts included).
    #[error("entry `{0}` appears twice in the layer")]
    Duplicate(String),
    /// Data after the end-of-archive marker beyond [`MAX_TRAILER`].
    #[error("more than {MAX_TRAILER} bytes after the end of the tar archive")]
    Trailing,
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

/// Apply one uncompressed tar layer to `tree`, charging `budget`; reads `tar` to its end.
pub fn apply<R: Read>(tree: &mut Tree, tar: R, budget: &mut Budget) -> Result<LayerStats, LayerError> {
    let mut archive = tar::Archive::new(tar);
    let stats = apply_entries(tree, &mut archive, budget)?;
    // What follows the end-of-archive marker is padding; it is hashed with the layer, so it is
    // read, but only so much of it.
    let rest = std::io::copy(&mut archive.into_inner().take(MAX_TRAILER + 1), &mut std::io::sink())
        .map_err(|e| LayerError::Tar(TarError::Io(e)))?;
    if rest > MAX_TRAILER {
        return Err(LayerError::Trailing);
    }
    Ok(stats)
}

fn apply_entries<R: Read>(
    tree: &mut Tree,
    archive: &mut tar::Archive<R>,
    budget: &mut Budget,
) -> Result<LayerStats, LayerError> {
    let mut stats = LayerStats::default();
    // What this layer added, by resolved path: whiteouts and opaque markers only remove
    // lower-layer entries, and each path may be written once.
    let mut added = Added::default();
    // Whiteout entries seen, as written: a repeated one is a duplicate entry like any other.
    let mut whiteouts: HashSet<String> = HashSet::new();
    let mut entries = archive.entries().map_err(TarError::Io)?.raw(true);
    while let Some(mut m) = entries::next(&mut entries, budget)? {
        let raw_path = m.path.clone();
        let path_err = |source| LayerError::Path { path: raw_path.clone(), source };
        let comps = components(&raw_path).map_err(path_err)?;
        let Some((name, parent)) = comps.split_last() else {
            // The root itself: take its metadata.
            if m.kind.is_dir() {
                tree.root.meta = m.meta;
            }
            continue;
        };

        if name == OPAQUE || name.starts_with(WHITEOUT) {
            if !whiteouts.insert(comps.join("/")) {
                return Err(LayerError::Duplicate(raw_path));
            }
            // Whiteouts only remove what lower layers put there, and never create anything: a
            // whiteout under a directory that does not exist has nothing to hide.
            let Ok(parent) = tree.resolve_dir(parent, None) else {
                stats.whiteouts += 1;
                continue;
            };
            let dir = tree.dir_mut(&parent).map_err(path_err)?;
            let ours = added.get(&parent);
            if name == OPAQUE {
                dir.retain(|child, _| ours.is_some_and(|a| a.kids.contains_key(child)));
            } else {
                let victim = &name[WHITEOUT.len()..];
                if victim.is_empty() || victim == "." || victim == ".." {
                    return Err(path_err(PathError::Invalid(raw_path.clone())));
                }
                if !ours.is_some_and(|a| a.kids.contains_key(victim)) {
                    dir.remove(victim);
                }
            }
            stats.whiteouts += 1;
            continue;
        }
        let parent = resolve_parent(tree, parent, &mut added).map_err(path_err)?;
        if added.get(&parent).and_then(|a| a.kids.get(name)).is_some_and(|n| n.written) {
            return Err(LayerError::Duplicate(raw_path));
        }

        let meta = m.meta;
        let kind = match m.kind {
            tar::EntryType::Directory => {
                let dir = tree.dir_mut(&parent).map_err(path_err)?;
                match dir.get_mut(name) {
                    Some(Node { meta: old, kind: Kind::Dir(_) }) => *old = meta,
                    _ => {
                        dir.insert(name.clone(), Node::dir(meta));
                    }
                }
                added.mark(&parent, name);
                stats.entries += 1;
                continue;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                // The size was charged to the budget before this read, and the entry yields
                // no more than it.
                let mut data = Vec::with_capacity(usize::try_from(m.size).unwrap_or(0));
                m.entry.read_to_end(&mut data).map_err(TarError::Io)?;
                Kind::File(Arc::new(data))
            }
            tar::EntryType::Symlink => {
                let target = m.link.clone().unwrap_or_default();
                if target.is_empty() || target.contains('\0') {
                    return Err(path_err(PathError::Invalid(format!("symlink target `{target}`"))));
                }
                Kind::Symlink(target)
            }
            tar::EntryType::Link => {
                let target = m.link.clone().unwrap_or_default();
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
        added.mark(&parent, name);
        stats.entries += 1;
    }
    Ok(stats)
}

/// The paths one layer added, as a tree of names: each node is stored once, so the memory is
/// linear in the layer, however deep its paths.
#[derive(Debug, Default)]
struct Added {
    kids: HashMap<String, Added>,
    /// An entry of the layer named this path (not only created it as a parent).
    written: bool,
}

impl Added {
    /// The node at resolved path `path`, if this layer added it.
    fn get(&self, path: &[String]) -> Option<&Added> {
        path.iter().try_fold(self, |node, c| node.kids.get(c))
    }

    /// Record `path` (and the parents on the way) as added.
    fn add(&mut self, path: &[String]) -> &mut Added {
        path.iter().fold(self, |node, c| node.kids.entry(c.clone()).or_default())
    }

    /// Record that an entry wrote `parent/name`.
    fn mark(&mut self, parent: &[String], name: &str) {
        let dir = self.add(parent);
        dir.kids.entry(name.to_string()).or_default().written = true;
    }
}

/// Resolve an entry's parent inside the tree, creating missing directories; the ones created
/// count as added by this layer (so a later opaque marker in the same layer keeps them).
fn resolve_parent(tree: &mut Tree, parent: &[String], added: &mut Added) -> Result<Vec<String>, PathError> {
    if let Ok(p) = tree.resolve_dir(parent, None) {
        return Ok(p);
    }
    let resolved = tree.resolve_dir(parent, Some(Meta::root(0o755)))?;
    added.add(&resolved);
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::limits::MAX_DEPTH as MAX_DEPTH_FOR_TEST;

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

    fn ap(t: &mut Tree, tar: &[u8]) -> Result<LayerStats, LayerError> {
        apply(t, tar, &mut Budget::default())
    }

    fn names(t: &mut Tree, dir: &[&str]) -> Vec<String> {
        let d: Vec<String> = dir.iter().map(|s| s.to_string()).collect();
        t.dir_mut(&d).unwrap().keys().cloned().collect()
    }

    #[test]
    fn whiteouts_and_opaque_dirs() {
        let mut t = Tree::default();
        ap(
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
        let s = ap(
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
        ap(&mut t, &layer(&[E::File("d/old", b"1")])[..]).unwrap();
        ap(&mut t, &layer(&[E::File("d/new", b"2"), E::File("d/.wh..wh..opq", b"")])[..]).unwrap();
        assert_eq!(names(&mut t, &["d"]), ["new"]);
    }

    #[test]
    fn whiteouts_spare_their_own_layer_and_create_nothing() {
        let mut t = Tree::default();
        ap(&mut t, &layer(&[E::File("a", b"lower")])[..]).unwrap();
        ap(&mut t, &layer(&[E::File("b", b"same"), E::File(".wh.b", b""), E::File("nodir/.wh.x", b"")])[..]).unwrap();
        assert_eq!(names(&mut t, &[]), ["a", "b"]);
    }

    #[test]
    fn implicit_parents_survive_an_opaque_marker_of_their_layer() {
        let mut t = Tree::default();
        ap(&mut t, &layer(&[E::File("d/old", b"1")])[..]).unwrap();
        ap(&mut t, &layer(&[E::File("d/sub/new", b"2"), E::File("d/.wh..wh..opq", b"")])[..]).unwrap();
        assert_eq!(names(&mut t, &["d"]), ["sub"]);
        assert_eq!(names(&mut t, &["d", "sub"]), ["new"]);
    }

    #[test]
    fn dotdot_is_rejected() {
        let mut t = Tree::default();
        let e = ap(&mut t, &layer(&[E::File("../../etc/evil", b"x")])[..]).unwrap_err();
        assert!(matches!(e, LayerError::Path { source: PathError::DotDot(_), .. }), "{e}");
    }

    #[test]
    fn absolute_paths_stay_inside() {
        let mut t = Tree::default();
        ap(&mut t, &layer(&[E::File("/etc/passwd", b"root")])[..]).unwrap();
        assert_eq!(names(&mut t, &["etc"]), ["passwd"]);
    }

    #[test]
    fn writes_through_escaping_symlinks_stay_inside() {
        let mut t = Tree::default();
        ap(&mut t, &layer(&[E::Sym("up", "../../../.."), E::File("up/etc/x", b"x")])[..]).unwrap();
        assert_eq!(names(&mut t, &["etc"]), ["x"]);
    }

    #[test]
    fn hardlinks_share_data_and_must_exist() {
        let mut t = Tree::default();
        ap(&mut t, &layer(&[E::File("a", b"data"), E::Hard("b", "a")])[..]).unwrap();
        assert_eq!(t.stats().file_bytes, 4);
        let e = ap(&mut t, &layer(&[E::Hard("c", "/nope")])[..]).unwrap_err();
        assert!(matches!(e, LayerError::BadHardlink { .. }), "{e}");
        let e = ap(&mut t, &layer(&[E::Hard("c", "../../etc/shadow")])[..]).unwrap_err();
        assert!(matches!(e, LayerError::BadHardlink { .. }), "{e}");
    }

    #[test]
    fn devices_are_dropped() {
        let mut t = Tree::default();
        let s = ap(&mut t, &layer(&[E::Dev("dev/sda")])[..]).unwrap();
        assert_eq!(s.devices_dropped, 1);
        assert!(names(&mut t, &["dev"]).is_empty());
    }

    /// A layer of long paths (GNU long-name records), for depth tests.
    fn long_layer(files: &[&str], links: &[(&str, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, target) in links {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            h.set_mode(0o777);
            b.append_link(&mut h, path, target).unwrap();
        }
        for path in files {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            h.set_size(1);
            b.append_data(&mut h, path, &b"x"[..]).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn paths_deeper_than_the_cap_are_refused_as_written_and_through_symlinks() {
        let at_cap = format!("{}f", "d/".repeat(MAX_DEPTH_FOR_TEST - 1));
        ap(&mut Tree::default(), &long_layer(&[&at_cap], &[])).unwrap();
        let over = format!("{}f", "d/".repeat(MAX_DEPTH_FOR_TEST));
        let e = ap(&mut Tree::default(), &long_layer(&[&over], &[])).unwrap_err();
        assert!(matches!(e, LayerError::Path { source: PathError::TooDeep(_), .. }), "{e}");
        // Shallow as written, too deep once the symlink is followed.
        let target = "d/".repeat(200);
        let through = format!("s/{}f", "e/".repeat(60));
        let e = ap(&mut Tree::default(), &long_layer(&[&through], &[("s", &target)])).unwrap_err();
        assert!(matches!(e, LayerError::Path { source: PathError::TooDeep(_), .. }), "{e}");
        assert!(e.to_string().contains("deeper than 256"), "{e}");
    }

    #[test]
    fn repeated_whiteouts_are_duplicates() {
        let mut t = Tree::default();
        ap(&mut t, &layer(&[E::File("d/a", b"1"), E::File("d/b", b"1")])).unwrap();
        for entries in [
            &[E::File("d/.wh..wh..opq", b""), E::File("d/.wh..wh..opq", b"")][..],
            &[E::File("d/.wh.a", b""), E::File("./d/.wh.a", b"")][..],
        ] {
            let e = ap(&mut t.clone(), &layer(entries)).unwrap_err();
            assert!(matches!(e, LayerError::Duplicate(_)), "{e}");
        }
    }

    #[test]
    fn duplicate_entries_are_rejected() {
        for entries in [
            &[E::File("a", b"1"), E::File("a", b"2")][..],
            &[E::File("a", b"1"), E::Dir("a")][..],
            &[E::Dir("d"), E::Dir("./d/")][..],
            &[E::Dir("real"), E::Sym("link", "real"), E::File("real/x", b"1"), E::File("link/x", b"2")][..],
        ] {
            let e = ap(&mut Tree::default(), &layer(entries)).unwrap_err();
            assert!(matches!(e, LayerError::Duplicate(_)), "{e}");
        }
        // A directory made implicitly and then listed is not a duplicate; nor is a path written
        // again by a later layer.
        let mut t = Tree::default();
        ap(&mut t, &layer(&[E::File("d/x", b"1"), E::Dir("d")])).unwrap();
        ap(&mut t, &layer(&[E::File("d/x", b"2")])).unwrap();
    }

    #[test]
    fn trailing_data_is_capped() {
        let mut tar = layer(&[E::File("a", b"1")]);
        tar.extend(vec![0u8; 4096]);
        ap(&mut Tree::default(), &tar).unwrap();
        tar.extend(vec![0u8; MAX_TRAILER as usize]);
        assert!(matches!(ap(&mut Tree::default(), &tar), Err(LayerError::Trailing)));
    }

    #[test]
    fn the_budget_is_shared_by_the_layers_of_an_image() {
        let mut t = Tree::default();
        let mut budget = Budget::new(2048, 100);
        let one = layer(&[E::File("a", &[7u8; 1000])]);
        apply(&mut t, &one[..], &mut budget).unwrap();
        let e = apply(&mut t, &one[..], &mut budget).unwrap_err();
        assert!(matches!(e, LayerError::Tar(TarError::Limit(_))), "{e}");
    }
}
