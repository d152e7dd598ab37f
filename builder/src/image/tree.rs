//! An in-memory file tree: the flattened root filesystem of one image.
//!
//! Paths are resolved against the tree's own root, like a chroot: `..` never climbs above the
//! root and absolute symlink targets start at the root, so nothing resolved here can name a
//! path outside the tree.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::limits::MAX_DEPTH;

/// Ownership, permissions and time of one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// Permission bits (0o7777).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
}

impl Meta {
    /// root-owned with `mode`, at time 0.
    pub const fn root(mode: u32) -> Meta {
        Meta { mode, uid: 0, gid: 0, mtime: 0 }
    }
}

/// What a node is.
#[derive(Debug, Clone)]
pub enum Kind {
    /// A directory and its entries.
    Dir(BTreeMap<String, Node>),
    /// A regular file. Hard links share the same `Arc`.
    File(Arc<Vec<u8>>),
    /// A symbolic link and its target, verbatim.
    Symlink(String),
    /// A named pipe.
    Fifo,
}

/// One node of the tree.
#[derive(Debug, Clone)]
pub struct Node {
    /// Metadata.
    pub meta: Meta,
    /// Content.
    pub kind: Kind,
}

impl Node {
    /// An empty directory.
    pub fn dir(meta: Meta) -> Node {
        Node { meta, kind: Kind::Dir(BTreeMap::new()) }
    }
}

/// Why a path cannot be resolved in a tree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// A `..` component in a path that must not have one.
    #[error("path `{0}` contains `..`")]
    DotDot(String),
    /// A component that should be a directory is a file.
    #[error("`{0}` is not a directory")]
    NotADir(String),
    /// Too many symlinks.
    #[error("too many levels of symbolic links resolving `{0}`")]
    Loop(String),
    /// Nothing there.
    #[error("`{0}` does not exist")]
    Missing(String),
    /// An empty name, or one with NUL.
    #[error("invalid path `{0}`")]
    Invalid(String),
    /// More than [`MAX_DEPTH`] components, as written or once symlinks are followed.
    #[error("path `{0}` is deeper than {MAX_DEPTH} directories")]
    TooDeep(String),
}

/// `path` cut to its first 200 characters, for an error message.
fn short(path: &str) -> String {
    match path.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &path[..i]),
        None => path.to_string(),
    }
}

/// Split an archive path into clean components: leading `/` and `./` are dropped, `.` and
/// empty components skipped; `..` is refused.
pub fn components(path: &str) -> Result<Vec<String>, PathError> {
    if path.contains('\0') {
        return Err(PathError::Invalid(path.escape_debug().to_string()));
    }
    let mut out = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(PathError::DotDot(path.to_string())),
            c => out.push(c.to_string()),
        }
        if out.len() > MAX_DEPTH {
            return Err(PathError::TooDeep(short(path)));
        }
    }
    Ok(out)
}

const MAX_SYMLINKS: usize = 40;

/// What a path component names, without copying the node.
enum Found {
    Dir,
    Symlink(String),
    Other,
}

/// A flattened root filesystem.
#[derive(Debug, Clone)]
pub struct Tree {
    /// The root directory.
    pub root: Node,
}

impl Default for Tree {
    fn default() -> Self {
        Tree { root: Node::dir(Meta::root(0o755)) }
    }
}

impl Tree {
    /// Resolve a directory path (following symlinks inside the tree, chroot-style) to the
    /// clean component list of the real directory. Missing directories are created with
    /// `meta` when `create` is set.
    pub fn resolve_dir(&mut self, comps: &[String], create: Option<Meta>) -> Result<Vec<String>, PathError> {
        let mut hops = 0;
        self.resolve_dir_inner(comps, create, &mut hops)
    }

    fn resolve_dir_inner(
        &mut self,
        comps: &[String],
        create: Option<Meta>,
        hops: &mut usize,
    ) -> Result<Vec<String>, PathError> {
        let mut cur: Vec<String> = Vec::new();
        let mut queue: std::collections::VecDeque<String> = comps.iter().cloned().collect();
        while let Some(c) = queue.pop_front() {
            if cur.len() >= MAX_DEPTH && c != ".." && c != "." && !c.is_empty() {
                return Err(PathError::TooDeep(short(&format!("{}/{c}", cur.join("/")))));
            }
            if c == ".." {
                cur.pop();
                continue;
            }
            if c == "." || c.is_empty() {
                continue;
            }
            let dir = self.dir_mut(&cur)?;
            // Look at the entry without copying it: only a symlink's target is needed.
            let found = dir.get(&c).map(|n| match &n.kind {
                Kind::Dir(_) => Found::Dir,
                Kind::Symlink(t) => Found::Symlink(t.clone()),
                _ => Found::Other,
            });
            match found {
                Some(Found::Dir) => cur.push(c),
                Some(Found::Symlink(target)) => {
                    *hops += 1;
                    if *hops > MAX_SYMLINKS {
                        return Err(PathError::Loop(comps.join("/")));
                    }
                    let mut rest: Vec<String> = target.split('/').map(str::to_string).collect();
                    if target.starts_with('/') {
                        cur.clear();
                    }
                    rest.extend(queue.drain(..));
                    queue = rest.into();
                }
                Some(Found::Other) => return Err(PathError::NotADir(format!("{}/{c}", cur.join("/")))),
                None => match create {
                    Some(meta) => {
                        dir.insert(c.clone(), Node::dir(meta));
                        cur.push(c);
                    }
                    None => return Err(PathError::Missing(format!("{}/{c}", cur.join("/")))),
                },
            }
        }
        Ok(cur)
    }

    /// The entries of the directory at clean path `comps` (no symlinks followed).
    pub fn dir_mut(&mut self, comps: &[String]) -> Result<&mut BTreeMap<String, Node>, PathError> {
        let mut node = &mut self.root;
        for (i, c) in comps.iter().enumerate() {
            node = match &mut node.kind {
                Kind::Dir(children) => children.get_mut(c).ok_or_else(|| PathError::Missing(comps[..=i].join("/")))?,
                _ => return Err(PathError::NotADir(comps[..i].join("/"))),
            };
        }
        match &mut node.kind {
            Kind::Dir(children) => Ok(children),
            _ => Err(PathError::NotADir(comps.join("/"))),
        }
    }

    /// The node at `path`, following symlinks in the parent directories but not in the last
    /// component.
    pub fn lookup(&mut self, path: &str) -> Result<&Node, PathError> {
        let comps = components(path)?;
        let (name, parent) = comps.split_last().ok_or_else(|| PathError::Invalid(path.to_string()))?;
        let parent = self.resolve_dir(parent, None)?;
        let dir = self.dir_mut(&parent)?;
        dir.get(name).ok_or_else(|| PathError::Missing(path.to_string()))
    }

    /// Make sure a directory exists at a top-level `name` (mount points the runtime needs). An
    /// image's file or symlink of that name is replaced: the runtime mounts over it anyway, and a
    /// symlink there could point the mount elsewhere. Returns whether something was replaced.
    pub fn ensure_dir(&mut self, name: &str, mode: u32) -> bool {
        let Kind::Dir(children) = &mut self.root.kind else { return false };
        match children.get(name) {
            Some(Node { kind: Kind::Dir(_), .. }) => false,
            existing => {
                let replaced = existing.is_some();
                children.insert(name.to_string(), Node::dir(Meta::root(mode)));
                replaced
            }
        }
    }

    /// Count of nodes and bytes of file data (shared data counted once).
    pub fn stats(&self) -> TreeStats {
        let mut s = TreeStats::default();
        let mut seen = std::collections::HashSet::new();
        // A stack, not recursion: the walk's depth is the tree's.
        let mut stack = vec![&self.root];
        while let Some(n) = stack.pop() {
            s.nodes += 1;
            match &n.kind {
                Kind::Dir(c) => {
                    s.dirs += 1;
                    stack.extend(c.values());
                }
                Kind::File(d) => {
                    if seen.insert(Arc::as_ptr(d) as usize) {
                        s.file_bytes += d.len() as u64;
                        s.data_blocks += (d.len() as u64).div_ceil(4096);
                    }
                }
                Kind::Symlink(t) => {
                    if t.len() >= 60 {
                        s.data_blocks += 1;
                    }
                }
                Kind::Fifo => {}
            }
        }
        s
    }
}

/// Sizes of a tree.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TreeStats {
    /// Every node, the root included.
    pub nodes: u64,
    /// Directories.
    pub dirs: u64,
    /// Bytes of regular-file data.
    pub file_bytes: u64,
    /// 4 KiB blocks of file and long-symlink data.
    pub data_blocks: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(data: &[u8]) -> Node {
        Node { meta: Meta::root(0o644), kind: Kind::File(Arc::new(data.to_vec())) }
    }

    #[test]
    fn components_are_clean() {
        assert_eq!(components("./a//b/./c/").unwrap(), ["a", "b", "c"]);
        assert_eq!(components("/etc/passwd").unwrap(), ["etc", "passwd"]);
        assert!(matches!(components("a/../../etc"), Err(PathError::DotDot(_))));
    }

    #[test]
    fn symlinks_resolve_inside_the_tree() {
        let mut t = Tree::default();
        let usr_bin = t.resolve_dir(&["usr".into(), "bin".into()], Some(Meta::root(0o755))).unwrap();
        assert_eq!(usr_bin, ["usr", "bin"]);
        let root = t.dir_mut(&[]).unwrap();
        root.insert("bin".into(), Node { meta: Meta::root(0o777), kind: Kind::Symlink("usr/bin".into()) });
        // An escaping symlink is clamped at the root.
        root.insert("evil".into(), Node { meta: Meta::root(0o777), kind: Kind::Symlink("../../../../usr".into()) });
        assert_eq!(t.resolve_dir(&["bin".into()], None).unwrap(), ["usr", "bin"]);
        assert_eq!(t.resolve_dir(&["evil".into(), "bin".into()], None).unwrap(), ["usr", "bin"]);
    }

    #[test]
    fn symlink_loops_are_errors() {
        let mut t = Tree::default();
        let root = t.dir_mut(&[]).unwrap();
        root.insert("a".into(), Node { meta: Meta::root(0o777), kind: Kind::Symlink("b".into()) });
        root.insert("b".into(), Node { meta: Meta::root(0o777), kind: Kind::Symlink("/a".into()) });
        assert!(matches!(t.resolve_dir(&["a".into()], None), Err(PathError::Loop(_))));
    }

    #[test]
    fn files_are_not_dirs() {
        let mut t = Tree::default();
        t.dir_mut(&[]).unwrap().insert("f".into(), file(b"x"));
        assert!(matches!(
            t.resolve_dir(&["f".into(), "g".into()], Some(Meta::root(0o755))),
            Err(PathError::NotADir(_))
        ));
    }

    #[test]
    fn shared_data_counted_once() {
        let mut t = Tree::default();
        let data = Arc::new(vec![1u8; 5000]);
        let root = t.dir_mut(&[]).unwrap();
        root.insert("a".into(), Node { meta: Meta::root(0o644), kind: Kind::File(data.clone()) });
        root.insert("b".into(), Node { meta: Meta::root(0o644), kind: Kind::File(data) });
        let s = t.stats();
        assert_eq!((s.file_bytes, s.data_blocks, s.nodes), (5000, 2, 3));
    }
}
