//! The initramfs: a newc cpio archive, zstd-compressed, holding `/init` (keel-init), the boot
//! plan, the kernel modules and `/dev/console`. Nothing else.
//!
//! Written with the `cpio` crate, which needs care: it silently writes a corrupt archive if an
//! entry is shorter than declared, does not number inodes and does not add the trailer. This
//! module gives every entry a unique inode, checks every length and writes the trailer.

use std::io::Write;

/// Problems writing the initramfs.
#[derive(Debug, thiserror::Error)]
pub enum InitramfsError {
    /// An entry is too large for newc's 32-bit size field.
    #[error("initramfs entry {0} is larger than 4 GiB")]
    TooLarge(String),
    /// The cpio crate wrote fewer bytes than declared.
    #[error("initramfs entry {0} was written short")]
    Short(String),
    /// Writing or compressing failed.
    #[error("writing the initramfs: {0}")]
    Io(#[from] std::io::Error),
}

/// What one entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file with its bytes.
    File(Vec<u8>),
    /// A character device (major, minor).
    CharDev(u32, u32),
}

/// One archive entry. Paths have no leading `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path inside the archive, e.g. `etc/keel/plan`.
    pub path: String,
    /// Permission bits.
    pub mode: u32,
    /// What it is.
    pub kind: Kind,
}

impl Entry {
    /// A directory, mode 0755.
    pub fn dir(path: &str) -> Entry {
        Entry { path: path.into(), mode: 0o755, kind: Kind::Dir }
    }
    /// A regular file.
    pub fn file(path: &str, mode: u32, bytes: Vec<u8>) -> Entry {
        Entry { path: path.into(), mode, kind: Kind::File(bytes) }
    }
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFCHR: u32 = 0o020000;

/// Write `entries` as a newc cpio archive (uid/gid 0, mtime 0, unique inodes, trailer).
pub fn write_cpio<W: Write>(mut out: W, entries: &[Entry]) -> Result<W, InitramfsError> {
    for (i, e) in entries.iter().enumerate() {
        let ino = u32::try_from(i + 1).map_err(|_| InitramfsError::TooLarge(e.path.clone()))?;
        let (type_bits, nlink, rdev, data): (u32, u32, (u32, u32), &[u8]) = match &e.kind {
            Kind::Dir => (S_IFDIR, 2, (0, 0), &[]),
            Kind::File(b) => (S_IFREG, 1, (0, 0), b),
            Kind::CharDev(ma, mi) => (S_IFCHR, 1, (*ma, *mi), &[]),
        };
        let size = u32::try_from(data.len()).map_err(|_| InitramfsError::TooLarge(e.path.clone()))?;
        let builder = cpio::newc::Builder::new(&e.path)
            .ino(ino)
            .mode(type_bits | (e.mode & 0o7777))
            .uid(0)
            .gid(0)
            .nlink(nlink)
            .mtime(0)
            .rdev_major(rdev.0)
            .rdev_minor(rdev.1);
        let mut w = builder.write(&mut out, size);
        w.write_all(data)?;
        w.finish().map_err(|err| {
            if err.kind() == std::io::ErrorKind::UnexpectedEof {
                InitramfsError::Short(e.path.clone())
            } else {
                InitramfsError::Io(err)
            }
        })?;
    }
    Ok(cpio::newc::trailer(out)?)
}

/// zstd level for the initramfs: high, since it is built once and decompressed at every boot.
pub const ZSTD_LEVEL: i32 = 19;

/// The compressed initramfs for `entries`. Deterministic: single-threaded zstd, fixed level.
pub fn build(entries: &[Entry]) -> Result<Vec<u8>, InitramfsError> {
    let cpio = write_cpio(Vec::new(), entries)?;
    Ok(zstd::bulk::compress(&cpio, ZSTD_LEVEL)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_reads_back() {
        let entries = vec![
            Entry::dir("dev"),
            Entry { path: "dev/console".into(), mode: 0o600, kind: Kind::CharDev(5, 1) },
            Entry::file("init", 0o755, b"\x7fELF...".to_vec()),
        ];
        let bytes = write_cpio(Vec::new(), &entries).unwrap();
        let mut r = &bytes[..];
        let mut seen = Vec::new();
        loop {
            let reader = cpio::newc::Reader::new(r).unwrap();
            if reader.entry().is_trailer() {
                break;
            }
            let e = reader.entry();
            seen.push((e.name().to_string(), e.ino(), e.mode(), e.file_size(), e.rdev_major()));
            r = reader.finish().unwrap();
        }
        assert_eq!(
            seen,
            [
                ("dev".to_string(), 1, S_IFDIR | 0o755, 0, 0),
                ("dev/console".to_string(), 2, S_IFCHR | 0o600, 0, 5),
                ("init".to_string(), 3, S_IFREG | 0o755, 7, 0),
            ]
        );
    }

    #[test]
    fn compressed_is_deterministic() {
        let entries = vec![Entry::file("a", 0o644, vec![7; 100_000])];
        assert_eq!(build(&entries).unwrap(), build(&entries).unwrap());
    }
}
