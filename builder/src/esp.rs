//! The EFI system partition: a FAT32 filesystem written as bytes into a [`Sink`].
//!
//! Our own writer because `fatfs` 0.3.6 (the latest published) writes FAT32 that `fsck.fat`
//! rejects (long-name entries for "." and ".."). This one is a formatter and populator in one
//! pass, for the few files an ESP holds:
//!
//! - Geometry as mkfs.fat 4.2 picks it: 512-byte sectors, 32 reserved sectors, 2 FATs, media
//!   0xF8, one sector per cluster up to 260 MiB, then 4/8/16 KiB clusters (`-s` defaults), and at
//!   least 65525 clusters (below that it would be FAT16 by definition).
//! - Boot sector with its backup at sector 6, FSInfo at sector 1 (backup at 7) with an exact free
//!   count and next-free hint, the volume label in the boot sector and as a root-directory entry.
//! - 8.3 upper-case names only, no long-name entries; directories get "." and "..".
//! - Children sorted by name, directories allocated first (root at cluster 2), then each file's
//!   data in one contiguous run. All timestamps are 1980-01-01 00:00, so the output depends only
//!   on the input.
//!
//! Only non-zero bytes are written: the sink starts zeroed (free clusters, FAT tails and
//! directory ends are zero), so a large ESP costs only its data.

use std::io;

use crate::sink::Sink;

/// Bytes per sector.
pub const SECTOR: u64 = 512;
const MIB: u64 = 1 << 20;
const RESERVED_SECTORS: u32 = 32;
const FATS: u32 = 2;
const MEDIA: u8 = 0xF8;
const FSINFO_SECTOR: u16 = 1;
const BACKUP_BOOT_SECTOR: u16 = 6;
/// FAT32 by definition has at least this many clusters.
const MIN_CLUSTERS: u32 = 65525;
/// Cluster numbers ≥ 0x0FFFFFF7 are reserved/bad/end-of-chain markers.
const MAX_CLUSTERS: u32 = 0x0FFF_FFF5 - 2;
const ROOT_CLUSTER: u32 = 2;
const END_OF_CHAIN: u32 = 0x0FFF_FFFF;
const DIR_ENTRY: usize = 32;
const ATTR_VOLUME_ID: u8 = 0x08;
const ATTR_DIRECTORY: u8 = 0x10;
const ATTR_ARCHIVE: u8 = 0x20;
/// 1980-01-01, the earliest date FAT can store (time 00:00:00 is 0).
const FIXED_DATE: u16 = (1 << 5) | 1;
/// Characters allowed in 8.3 names besides A-Z and 0-9.
const NAME_PUNCTUATION: &[u8] = b"!#$%&'()-@^_`{}~";

/// Problems writing the ESP.
#[derive(Debug, thiserror::Error)]
pub enum EspError {
    /// A file path that is not a `/`-separated list of upper-case 8.3 names.
    #[error("ESP path `{path}`: {reason}")]
    BadPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The same path given twice, or a file where a directory is needed.
    #[error("ESP path `{0}` clashes with another file or directory")]
    Clash(String),
    /// A file too large for FAT's 32-bit size field.
    #[error("ESP file `{0}` is 4 GiB or larger")]
    FileTooLarge(String),
    /// A label that is not 1–11 upper-case 8.3 characters or spaces.
    #[error("ESP volume label `{0}` is not 1 to 11 upper-case letters, digits, spaces or 8.3 punctuation")]
    BadLabel(String),
    /// A size that cannot hold FAT32.
    #[error("ESP size of {size} bytes: {reason}")]
    BadSize {
        /// The size asked for.
        size: u64,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The files do not fit.
    #[error("ESP of {size} bytes is too small: {needed} clusters needed, {available} available")]
    Full {
        /// The ESP size.
        size: u64,
        /// Clusters the directories and files need.
        needed: u64,
        /// Clusters the filesystem has.
        available: u32,
    },
    /// The sink failed.
    #[error("writing the ESP")]
    Io(#[source] io::Error),
}

/// Sizes of the filesystem areas, in sectors unless named otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Geometry {
    total_sectors: u32,
    sectors_per_cluster: u32,
    fat_sectors: u32,
    clusters: u32,
}

impl Geometry {
    fn for_size(size: u64) -> Result<Geometry, EspError> {
        let bad = |reason| EspError::BadSize { size, reason };
        if !size.is_multiple_of(SECTOR) {
            return Err(bad("not a multiple of 512"));
        }
        let total_sectors = u32::try_from(size / SECTOR).map_err(|_| bad("over 2 TiB, too large for FAT32"))?;
        // mkfs.fat 4.2's default cluster size for FAT32, by size in MiB rounded up.
        let mib = size.div_ceil(MIB);
        let sectors_per_cluster = match mib {
            m if m > 16 * 1024 => 32,
            m if m > 8 * 1024 => 16,
            m if m > 260 => 8,
            _ => 1,
        };
        // FAT length as mkfs.fat computes it (the smallest FAT that covers the clusters left
        // beside it), then rounded to whole clusters so the data area stays cluster-aligned (32
        // reserved sectors are a multiple of every cluster size used).
        let spc = u64::from(sectors_per_cluster);
        let fat_data = u64::from(total_sectors.checked_sub(RESERVED_SECTORS).ok_or(bad("too small for FAT32"))?);
        let fats = u64::from(FATS);
        let estimate = (fat_data * SECTOR + fats * 8) / (spc * SECTOR + fats * 4);
        let fat_for = |clusters: u64| ((clusters + 2) * 4).div_ceil(SECTOR).div_ceil(spc) * spc;
        let mut fat_sectors = fat_for(estimate);
        let clusters = loop {
            let data = fat_data.checked_sub(fats * fat_sectors).ok_or(bad("too small for FAT32"))?;
            let clusters = data / spc;
            if fat_for(clusters) <= fat_sectors {
                break clusters;
            }
            fat_sectors = fat_for(clusters);
        };
        let fat_sectors = u32::try_from(fat_sectors).map_err(|_| bad("too large for FAT32"))?;
        let clusters = u32::try_from(clusters).map_err(|_| bad("too large for FAT32"))?;
        if clusters < MIN_CLUSTERS {
            return Err(bad("too small for FAT32 (fewer than 65525 clusters)"));
        }
        if clusters > MAX_CLUSTERS {
            return Err(bad("too large for FAT32"));
        }
        Ok(Geometry { total_sectors, sectors_per_cluster, fat_sectors, clusters })
    }

    fn cluster_bytes(&self) -> u64 {
        u64::from(self.sectors_per_cluster) * SECTOR
    }

    fn fat_offset(&self, copy: u32) -> u64 {
        u64::from(RESERVED_SECTORS + copy * self.fat_sectors) * SECTOR
    }

    fn cluster_offset(&self, cluster: u32) -> u64 {
        let data_start = u64::from(RESERVED_SECTORS + FATS * self.fat_sectors);
        (data_start + u64::from(cluster - 2) * u64::from(self.sectors_per_cluster)) * SECTOR
    }
}

/// The smallest FAT32 ESP, a whole number of MiB (33 MiB with 512-byte clusters).
pub fn min_fat32_size() -> u64 {
    (1..).map(|mib| mib * MIB).find(|&s| Geometry::for_size(s).is_ok()).unwrap_or(u64::MAX)
}

/// An ESP size that holds `payload_bytes` of files (a few, in a few directories) with 1/8 and
/// 1 MiB to spare, rounded up to 1 MiB and at least [`min_fat32_size`].
pub fn fat32_size_for(payload_bytes: u64) -> u64 {
    let want = payload_bytes + payload_bytes / 8 + MIB;
    let mut size = want.div_ceil(MIB).saturating_mul(MIB).max(min_fat32_size());
    // The FATs and cluster rounding take some of the space: grow until the data area fits.
    while let Ok(g) = Geometry::for_size(size) {
        if u64::from(g.clusters) * g.cluster_bytes() >= want {
            break;
        }
        size += MIB;
    }
    size
}

/// An 8.3 name in directory-entry form (base padded to 8, extension to 3, with spaces).
fn short_name(component: &str, path: &str) -> Result<[u8; 11], EspError> {
    let bad = |reason| EspError::BadPath { path: path.to_string(), reason };
    if component.is_empty() {
        return Err(bad("empty path component"));
    }
    if component == "." || component == ".." {
        return Err(bad("`.` and `..` are not allowed"));
    }
    let (base, ext) = match component.split_once('.') {
        Some((b, e)) => (b, Some(e)),
        None => (component, None),
    };
    if base.is_empty() || base.len() > 8 || ext.is_some_and(|e| e.is_empty() || e.len() > 3) {
        return Err(bad("not an 8.3 name (1-8 characters, optionally `.` and 1-3 more)"));
    }
    let ok = |c: u8| c.is_ascii_uppercase() || c.is_ascii_digit() || NAME_PUNCTUATION.contains(&c);
    if !base.bytes().chain(ext.unwrap_or("").bytes()).all(ok) {
        return Err(bad("8.3 names are upper-case letters, digits and !#$%&'()-@^_`{}~ only"));
    }
    let mut name = [b' '; 11];
    name[..base.len()].copy_from_slice(base.as_bytes());
    if let Some(e) = ext {
        name[8..8 + e.len()].copy_from_slice(e.as_bytes());
    }
    Ok(name)
}

fn volume_label(label: &str) -> Result<[u8; 11], EspError> {
    let ok = |c: u8| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b' ' || NAME_PUNCTUATION.contains(&c);
    if label.is_empty() || label.len() > 11 || label.starts_with(' ') || !label.bytes().all(ok) {
        return Err(EspError::BadLabel(label.to_string()));
    }
    let mut l = [b' '; 11];
    l[..label.len()].copy_from_slice(label.as_bytes());
    Ok(l)
}

/// A directory or file of the tree being written; node 0 is the root directory.
struct Node<'a> {
    name: [u8; 11],
    /// `Some` for files.
    data: Option<&'a [u8]>,
    children: Vec<usize>,
    parent: usize,
    first_cluster: u32,
    clusters: u32,
}

fn build_tree<'a>(files: &[(&str, &'a [u8])]) -> Result<Vec<Node<'a>>, EspError> {
    let mut nodes =
        vec![Node { name: [b' '; 11], data: None, children: Vec::new(), parent: 0, first_cluster: 0, clusters: 0 }];
    for (path, data) in files {
        if u32::try_from(data.len()).is_err() {
            return Err(EspError::FileTooLarge(path.to_string()));
        }
        let parts: Vec<&str> = path.split('/').collect();
        let mut dir = 0;
        for (i, part) in parts.iter().enumerate() {
            let name = short_name(part, path)?;
            let is_file = i + 1 == parts.len();
            let existing = nodes[dir].children.iter().copied().find(|&c| nodes[c].name == name);
            match existing {
                Some(c) if !is_file && nodes[c].data.is_none() => dir = c,
                Some(_) => return Err(EspError::Clash(path.to_string())),
                None => {
                    let id = nodes.len();
                    nodes.push(Node {
                        name,
                        data: is_file.then_some(*data),
                        children: Vec::new(),
                        parent: dir,
                        first_cluster: 0,
                        clusters: 0,
                    });
                    nodes[dir].children.push(id);
                    dir = id;
                }
            }
        }
    }
    let names: Vec<[u8; 11]> = nodes.iter().map(|n| n.name).collect();
    for n in &mut nodes {
        n.children.sort_by_key(|&c| names[c]);
    }
    Ok(nodes)
}

/// Directories in breadth-first order from the root, then files depth-first, all sorted.
fn allocation_order(nodes: &[Node]) -> Vec<usize> {
    let mut dirs = vec![0];
    let mut i = 0;
    while i < dirs.len() {
        dirs.extend(nodes[dirs[i]].children.iter().copied().filter(|&c| nodes[c].data.is_none()));
        i += 1;
    }
    let mut files = Vec::new();
    let mut stack = vec![0];
    while let Some(d) = stack.pop() {
        for &c in &nodes[d].children {
            if nodes[c].data.is_some() {
                files.push(c);
            }
        }
        stack.extend(nodes[d].children.iter().rev().copied().filter(|&c| nodes[c].data.is_none()));
    }
    dirs.extend(files);
    dirs
}

fn dir_entry(name: &[u8; 11], attr: u8, cluster: u32, size: u32) -> [u8; DIR_ENTRY] {
    let mut e = [0u8; DIR_ENTRY];
    e[..11].copy_from_slice(name);
    e[11] = attr;
    // Creation (14..18), access (18..20) and write (22..26) time and date: the fixed date.
    e[16..18].copy_from_slice(&FIXED_DATE.to_le_bytes());
    e[18..20].copy_from_slice(&FIXED_DATE.to_le_bytes());
    e[20..22].copy_from_slice(&((cluster >> 16) as u16).to_le_bytes());
    e[24..26].copy_from_slice(&FIXED_DATE.to_le_bytes());
    e[26..28].copy_from_slice(&(cluster as u16).to_le_bytes());
    e[28..32].copy_from_slice(&size.to_le_bytes());
    e
}

fn boot_sector(g: &Geometry, label: &[u8; 11], volume_id: u32) -> [u8; 512] {
    let mut b = [0u8; 512];
    b[0..3].copy_from_slice(&[0xEB, 0x58, 0x90]); // jmp short 0x5A; nop
    b[3..11].copy_from_slice(b"MSWIN4.1"); // the OEM name fatgen103 recommends
    b[11..13].copy_from_slice(&(SECTOR as u16).to_le_bytes());
    b[13] = g.sectors_per_cluster as u8;
    b[14..16].copy_from_slice(&(RESERVED_SECTORS as u16).to_le_bytes());
    b[16] = FATS as u8;
    // 17..19 root entries, 19..21 total sectors (16-bit), 22..24 FAT size (16-bit): 0 on FAT32.
    b[21] = MEDIA;
    b[24..26].copy_from_slice(&32u16.to_le_bytes()); // sectors per track (no real geometry)
    b[26..28].copy_from_slice(&64u16.to_le_bytes()); // heads
                                                     // 28..32 hidden sectors: 0, the filesystem does not know where its partition starts.
    b[32..36].copy_from_slice(&g.total_sectors.to_le_bytes());
    b[36..40].copy_from_slice(&g.fat_sectors.to_le_bytes());
    // 40..42 flags (FATs mirrored), 42..44 version 0.0.
    b[44..48].copy_from_slice(&ROOT_CLUSTER.to_le_bytes());
    b[48..50].copy_from_slice(&FSINFO_SECTOR.to_le_bytes());
    b[50..52].copy_from_slice(&BACKUP_BOOT_SECTOR.to_le_bytes());
    b[64] = 0x80; // drive number
    b[66] = 0x29; // extended boot signature: the next three fields are valid
    b[67..71].copy_from_slice(&volume_id.to_le_bytes());
    b[71..82].copy_from_slice(label);
    b[82..90].copy_from_slice(b"FAT32   ");
    b[90..94].copy_from_slice(&[0xCD, 0x18, 0xEB, 0xFE]); // int 18h (not bootable); jmp $
    b[510] = 0x55;
    b[511] = 0xAA;
    b
}

fn fsinfo_sector(free: u32, next_free: u32) -> [u8; 512] {
    let mut b = [0u8; 512];
    b[0..4].copy_from_slice(&0x4161_5252u32.to_le_bytes());
    b[484..488].copy_from_slice(&0x6141_7272u32.to_le_bytes());
    b[488..492].copy_from_slice(&free.to_le_bytes());
    b[492..496].copy_from_slice(&next_free.to_le_bytes());
    b[508..512].copy_from_slice(&0xAA55_0000u32.to_le_bytes());
    b
}

/// Write a FAT32 filesystem of `size` bytes holding `files` into `sink` (which must read as
/// zeros where nothing is written). Paths are `/`-separated upper-case 8.3 names, e.g.
/// `EFI/BOOT/BOOTX64.EFI`; directories are created as needed.
pub fn write_fat32(
    sink: &mut dyn Sink,
    size: u64,
    volume_label: &str,
    volume_id: u32,
    files: &[(&str, &[u8])],
) -> Result<(), EspError> {
    let g = Geometry::for_size(size)?;
    let label = self::volume_label(volume_label)?;
    let mut nodes = build_tree(files)?;
    let cluster_bytes = g.cluster_bytes();

    // Allocate: every directory at least one cluster, files by their size, empty files none.
    let mut next = ROOT_CLUSTER;
    let mut needed: u64 = 0;
    for id in allocation_order(&nodes) {
        let n = &nodes[id];
        let bytes = match n.data {
            Some(d) => d.len() as u64,
            // Root: the label entry; others: "." and "..". Plus one entry per child.
            None => ((n.children.len() + if id == 0 { 1 } else { 2 }) * DIR_ENTRY) as u64,
        };
        let clusters = bytes.div_ceil(cluster_bytes).max(u64::from(n.data.is_none()));
        needed += clusters;
        if needed > u64::from(g.clusters) {
            continue; // reported below with the full count
        }
        let n = &mut nodes[id];
        n.clusters = clusters as u32;
        if clusters > 0 {
            n.first_cluster = next;
            next += clusters as u32;
        }
    }
    if needed > u64::from(g.clusters) {
        return Err(EspError::Full { size, needed, available: g.clusters });
    }

    // The FAT up to the last used cluster; the rest is zero (free).
    let mut fat = Vec::with_capacity(next as usize * 4);
    fat.extend_from_slice(&(0x0FFF_FF00 | u32::from(MEDIA)).to_le_bytes());
    fat.extend_from_slice(&END_OF_CHAIN.to_le_bytes()); // clean, no I/O errors
    fat.resize(next as usize * 4, 0);
    for n in &nodes {
        for c in n.first_cluster..n.first_cluster + n.clusters {
            let value = if c + 1 == n.first_cluster + n.clusters { END_OF_CHAIN } else { c + 1 };
            fat[c as usize * 4..c as usize * 4 + 4].copy_from_slice(&value.to_le_bytes());
        }
    }

    let write = |sink: &mut dyn Sink, offset: u64, data: &[u8]| sink.write_at(offset, data).map_err(EspError::Io);
    let boot = boot_sector(&g, &label, volume_id);
    let used = next - ROOT_CLUSTER;
    // Next-free hint: the first cluster after the data, or "unknown" when there is none.
    let next_free = if used == g.clusters { u32::MAX } else { next };
    let fsinfo = fsinfo_sector(g.clusters - used, next_free);
    for base in [0, u64::from(BACKUP_BOOT_SECTOR)] {
        write(sink, base * SECTOR, &boot)?;
        write(sink, (base + u64::from(FSINFO_SECTOR)) * SECTOR, &fsinfo)?;
    }
    for copy in 0..FATS {
        write(sink, g.fat_offset(copy), &fat)?;
    }

    for (id, n) in nodes.iter().enumerate() {
        let offset = g.cluster_offset(n.first_cluster.max(ROOT_CLUSTER));
        match n.data {
            Some(data) => {
                if !data.is_empty() {
                    write(sink, offset, data)?;
                }
            }
            None => {
                let mut dir = Vec::with_capacity(n.clusters as usize * cluster_bytes as usize);
                if id == 0 {
                    dir.extend_from_slice(&dir_entry(&label, ATTR_VOLUME_ID, 0, 0));
                } else {
                    // ".." of a directory in the root points at cluster 0, by convention.
                    let parent = if n.parent == 0 { 0 } else { nodes[n.parent].first_cluster };
                    dir.extend_from_slice(&dir_entry(b".          ", ATTR_DIRECTORY, n.first_cluster, 0));
                    dir.extend_from_slice(&dir_entry(b"..         ", ATTR_DIRECTORY, parent, 0));
                }
                for &c in &n.children {
                    let child = &nodes[c];
                    let e = match child.data {
                        Some(d) => dir_entry(&child.name, ATTR_ARCHIVE, child.first_cluster, d.len() as u32),
                        None => dir_entry(&child.name, ATTR_DIRECTORY, child.first_cluster, 0),
                    };
                    dir.extend_from_slice(&e);
                }
                write(sink, offset, &dir)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::VecSink;

    fn u32_at(b: &[u8], o: usize) -> u32 {
        u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
    }

    #[test]
    fn geometry_matches_mkfs_fat() {
        // mkfs.fat 4.2 -F 32 on 33 MiB: 512-byte clusters, 520 sectors per FAT, 66512 clusters.
        let g = Geometry::for_size(33 * MIB).unwrap();
        assert_eq!(g, Geometry { total_sectors: 67584, sectors_per_cluster: 1, fat_sectors: 520, clusters: 66512 });
        assert_eq!(Geometry::for_size(300 * MIB).unwrap().sectors_per_cluster, 8);
        assert_eq!(Geometry::for_size(9 * 1024 * MIB).unwrap().sectors_per_cluster, 16);
        assert!(matches!(Geometry::for_size(32 * MIB), Err(EspError::BadSize { .. })));
        assert!(matches!(Geometry::for_size(33 * MIB + 1), Err(EspError::BadSize { .. })));
        assert!(matches!(Geometry::for_size(4 << 40), Err(EspError::BadSize { .. })));
    }

    #[test]
    fn sizes() {
        assert_eq!(min_fat32_size(), 33 * MIB);
        assert_eq!(fat32_size_for(0), 33 * MIB);
        for payload in [40 * MIB, 100 * MIB + 3, 300 * MIB, 1 << 32] {
            let s = fat32_size_for(payload);
            assert_eq!(s % MIB, 0);
            let g = Geometry::for_size(s).unwrap();
            assert!(u64::from(g.clusters) * g.cluster_bytes() >= payload + payload / 8, "{payload}: {g:?}");
        }
    }

    #[test]
    fn names() {
        assert_eq!(&short_name("BOOTX64.EFI", "p").unwrap(), b"BOOTX64 EFI");
        assert_eq!(&short_name("EFI", "p").unwrap(), b"EFI        ");
        for bad in ["bootx64.efi", "TOOLONGNAME.EFI", "A.LONG", "A.B.C", "", ".", "..", ".EFI", "A.", "A B", "É"] {
            assert!(matches!(short_name(bad, "p"), Err(EspError::BadPath { .. })), "{bad:?} accepted");
        }
        assert!(volume_label("KEEL-ESP").is_ok());
        for bad in ["", "keel", "TWELVE-CHARS", " LEADING"] {
            assert!(volume_label(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn clashes_are_errors() {
        let e = write_fat32(&mut VecSink::default(), 33 * MIB, "K", 1, &[("A/B", b"x"), ("A/B", b"y")]);
        assert!(matches!(e, Err(EspError::Clash(p)) if p == "A/B"));
        let e = write_fat32(&mut VecSink::default(), 33 * MIB, "K", 1, &[("A", b"x"), ("A/B", b"y")]);
        assert!(matches!(e, Err(EspError::Clash(p)) if p == "A/B"));
        let e = write_fat32(&mut VecSink::default(), 33 * MIB, "K", 1, &[("EFI/boot.efi", b"x")]);
        assert!(matches!(e, Err(EspError::BadPath { .. })));
    }

    #[test]
    fn full_is_an_error() {
        let big = vec![1u8; 34 * MIB as usize];
        let e = write_fat32(&mut VecSink::default(), 33 * MIB, "K", 1, &[("BIG", &big)]).unwrap_err();
        assert!(matches!(e, EspError::Full { available: 66512, .. }), "{e}");
    }

    #[test]
    fn exactly_full() {
        // 66512 clusters: one for the root directory, the rest for one file.
        let data = vec![1u8; 66511 * 512];
        let mut v = VecSink::default();
        write_fat32(&mut v, 33 * MIB, "K", 1, &[("F", &data)]).unwrap();
        assert_eq!(u32_at(&v.bytes, 512 + 488), 0, "free count");
        assert_eq!(u32_at(&v.bytes, 512 + 492), u32::MAX, "next free");
    }

    #[test]
    fn layout_of_a_small_tree() {
        let mut v = VecSink::default();
        let data = vec![7u8; 1300];
        write_fat32(&mut v, 33 * MIB, "KEEL-ESP", 0x1234_5678, &[("EFI/BOOT/BOOTX64.EFI", &data), ("EMPTY", b"")])
            .unwrap();
        let b = &v.bytes;
        assert_eq!(&b[510..512], &[0x55, 0xAA]);
        assert_eq!(&b[..512], &b[6 * 512..7 * 512], "backup boot sector");
        assert_eq!(&b[512..1024], &b[7 * 512..8 * 512], "backup FSInfo");
        // Clusters: 2 root, 3 EFI, 4 BOOT, 5-7 BOOTX64.EFI (1300 bytes); EMPTY has none.
        assert_eq!(u32_at(b, 512 + 488), 66512 - 6, "free count");
        assert_eq!(u32_at(b, 512 + 492), 8, "next free");
        let fat = 32 * 512;
        let entries: Vec<u32> = (0..9).map(|i| u32_at(b, fat + i * 4)).collect();
        assert_eq!(
            entries,
            [0x0FFFFFF8, END_OF_CHAIN, END_OF_CHAIN, END_OF_CHAIN, END_OF_CHAIN, 6, 7, END_OF_CHAIN, 0]
        );
        assert_eq!(&b[fat..fat + 36], &b[fat + 520 * 512..fat + 520 * 512 + 36], "FAT copies differ");
        let root = (32 + 2 * 520) * 512;
        assert_eq!(&b[root..root + 12], b"KEEL-ESP   \x08");
        assert_eq!(&b[root + 32..root + 44], b"EFI        \x10");
        assert_eq!(&b[root + 64..root + 76], b"EMPTY      \x20");
        let efi = root + 512;
        assert_eq!(&b[efi..efi + 11], b".          ");
        assert_eq!(u32::from(u16::from_le_bytes([b[efi + 26], b[efi + 27]])), 3);
        assert_eq!(&b[efi + 32..efi + 43], b"..         ");
        assert_eq!(u16::from_le_bytes([b[efi + 58], b[efi + 59]]), 0, "`..` of a root child is 0");
        let boot = root + 2 * 512;
        assert_eq!(u16::from_le_bytes([b[boot + 58], b[boot + 59]]), 3, "`..` of EFI/BOOT is EFI");
        assert_eq!(&b[boot + 64..boot + 75], b"BOOTX64 EFI");
        assert_eq!(u32_at(b, boot + 64 + 28), 1300);
        assert_eq!(&b[root + 3 * 512..root + 3 * 512 + 1300], &data[..]);
    }

    #[test]
    fn deterministic_and_order_independent() {
        let run = |files: &[(&str, &[u8])]| {
            let mut v = VecSink::default();
            write_fat32(&mut v, 40 * MIB, "K", 9, files).unwrap();
            v.bytes
        };
        let a = run(&[("B/X", b"1"), ("A", b"2")]);
        assert_eq!(a, run(&[("B/X", b"1"), ("A", b"2")]));
        assert_eq!(a, run(&[("A", b"2"), ("B/X", b"1")]));
    }
}
