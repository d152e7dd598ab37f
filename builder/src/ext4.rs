//! ext4 filesystems built as bytes with `mkext4` (pure Rust, deterministic): the read-only
//! keel-images partition (one tree per image) and the empty keel-data partition.
//!
//! `ext4-rs`, the crate first asked for, does not build on stable Rust and corrupts images on
//! write; see docs/architecture.md.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;

use mkext4::{FsBuilder, InodeCount, InodeHandle, Options, ROOT};
use sha2::{Digest, Sha256};

use crate::image::tree::{Kind, Meta, Node, Tree};
use crate::sink::Sink;

/// Problems building an ext4 filesystem.
#[derive(Debug, thiserror::Error)]
pub enum Ext4Error {
    /// mkext4 refused the tree or ran out of room.
    #[error("building ext4 `{label}`: {message}")]
    Build {
        /// Filesystem label.
        label: String,
        /// mkext4's message.
        message: String,
    },
    /// Writing failed.
    #[error("writing ext4 `{0}`: {1}")]
    Io(String, #[source] io::Error),
}

/// Journal size in 4 KiB blocks: jbd2's minimum. The images filesystem is mounted read-only
/// and the data filesystem's journal only needs to cover metadata of small writes.
pub const JOURNAL_BLOCKS: u32 = 1024;

/// Smallest filesystem keel makes: mkext4 wants the journal to be at most a quarter of it.
pub const MIN_SIZE: u64 = 4 * JOURNAL_BLOCKS as u64 * 4096;

/// Fixed timestamp of filesystem-owned metadata: builds are reproducible.
pub const EPOCH: i64 = 0;

struct SinkAdapter<'a> {
    sink: &'a mut dyn Sink,
    base: u64,
}

impl mkext4::sink::RegionSink for SinkAdapter<'_> {
    fn data(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        self.sink.write_at(self.base + offset, bytes)
    }
    fn zeros(&mut self, _offset: u64, _len: u64) -> io::Result<()> {
        Ok(()) // the output starts zeroed and holes read as zero
    }
}

/// A deterministic filesystem UUID for `label` of image `seed`.
pub fn uuid_for(seed: &str, label: &str) -> [u8; 16] {
    let h = Sha256::digest(format!("keel-ext4:{seed}:{label}").as_bytes());
    let mut u = [0u8; 16];
    u.copy_from_slice(&h[..16]);
    u[6] = (u[6] & 0x0f) | 0x40;
    u[8] = (u[8] & 0x3f) | 0x80;
    u
}

/// One top-level directory of a filesystem: a tree, stored with every owner shifted by
/// `id_shift` (the container's user-namespace base, so owners look original inside it).
#[derive(Debug, Clone, Copy)]
pub struct Root<'a> {
    /// Directory name at the top of the filesystem.
    pub name: &'a str,
    /// The tree.
    pub tree: &'a Tree,
    /// Added to every uid and gid.
    pub id_shift: u32,
}

/// A size that fits `trees` (as top-level directories) with room for metadata and journal,
/// rounded up to 1 MiB.
pub fn size_for(trees: &[Root<'_>]) -> (u64, u32) {
    let (mut blocks, mut nodes) = (0u64, 16u64);
    for r in trees {
        let s = r.tree.stats();
        blocks += s.data_blocks + s.dirs;
        nodes += s.nodes;
    }
    let inodes = (nodes + 64).div_ceil(64) * 64;
    let bytes = (blocks * 4096 * 11 / 10 + inodes * 256 + (8 << 20)).max(MIN_SIZE);
    (bytes.div_ceil(1 << 20) << 20, u32::try_from(inodes).unwrap_or(u32::MAX))
}

/// What an ext4 filesystem is to be, besides its size and contents.
#[derive(Debug, Clone, Copy)]
pub struct Spec<'a> {
    /// Volume label.
    pub label: &'a str,
    /// Filesystem UUID.
    pub uuid: [u8; 16],
    /// Inodes to make, or `None` for mke2fs's ratio.
    pub inodes: Option<u32>,
    /// Share of the blocks reserved for root.
    pub reserved_percent: u8,
}

/// Build an ext4 filesystem of `size` bytes as `spec` says, holding each tree under its name,
/// written into `sink` at `base`. Returns the bytes of file data written.
pub fn write(sink: &mut dyn Sink, base: u64, size: u64, spec: Spec<'_>, trees: &[Root<'_>]) -> Result<u64, Ext4Error> {
    let Spec { label, uuid, inodes, reserved_percent } = spec;
    let err = |e: mkext4::Error| Ext4Error::Build { label: label.to_string(), message: e.to_string() };
    let mut opts = Options::new(size, uuid, EPOCH);
    opts.label = Some(label.to_string());
    opts.reserved_percent = reserved_percent;
    opts.journal_blocks = Some(JOURNAL_BLOCKS);
    if let Some(n) = inodes {
        opts.inodes = InodeCount::Exact(n);
    }
    let mut b = FsBuilder::new(opts).map_err(err)?;
    let mut fills: Vec<(InodeHandle, Arc<Vec<u8>>)> = Vec::new();
    for r in trees {
        // Hardlinks never cross trees: each tree's files carry their own (shifted) owners.
        let mut links: HashMap<usize, InodeHandle> = HashMap::new();
        let shift = r.id_shift;
        let dir = b.mkdir(ROOT, r.name, meta(&r.tree.root.meta, shift)).map_err(err)?;
        declare(&mut b, dir, &r.tree.root, shift, &mut fills, &mut links).map_err(err)?;
    }
    let layout = b.seal().map_err(err)?;
    let mut adapter = SinkAdapter { sink, base };
    let mut w = layout.writer(&mut adapter).map_err(err)?;
    let mut written = 0u64;
    for (h, data) in &fills {
        w.fill(*h, &mut &data[..]).map_err(err)?;
        written += data.len() as u64;
    }
    w.finish().map_err(err)?;
    Ok(written)
}

/// mkext4 metadata for `m`, owners shifted by `shift`. The builder checks that every owner fits
/// the container's id range; an owner that would overflow is clamped (never wraps to low ids).
fn meta(m: &Meta, shift: u32) -> mkext4::Meta {
    let mode = u16::try_from(m.mode & 0o7777).unwrap_or(0o755);
    mkext4::Meta::new(mode, m.uid.saturating_add(shift), m.gid.saturating_add(shift), (m.mtime.max(0), 0))
}

fn declare(
    b: &mut FsBuilder,
    dir: InodeHandle,
    node: &Node,
    shift: u32,
    fills: &mut Vec<(InodeHandle, Arc<Vec<u8>>)>,
    links: &mut HashMap<usize, InodeHandle>,
) -> mkext4::Result<()> {
    let Kind::Dir(children) = &node.kind else { return Ok(()) };
    for (name, child) in children {
        let m = meta(&child.meta, shift);
        match &child.kind {
            Kind::Dir(_) => {
                let d = b.mkdir(dir, name, m)?;
                declare(b, d, child, shift, fills, links)?;
            }
            Kind::File(data) => {
                let key = Arc::as_ptr(data) as usize;
                if let Some(&h) = links.get(&key) {
                    b.hardlink(dir, name, h)?;
                } else {
                    let h = b.file(dir, name, m, data.len() as u64)?;
                    links.insert(key, h);
                    if !data.is_empty() {
                        fills.push((h, data.clone()));
                    }
                }
            }
            Kind::Symlink(target) => {
                b.symlink(dir, name, target, m)?;
            }
            Kind::Fifo => {
                b.mknod(dir, name, m, mkext4::SpecialKind::Fifo)?;
            }
        }
    }
    Ok(())
}
