//! The disk: one table of partitions ([`TABLE`]), a [`plan`] that places them, and the GPT that
//! describes them, written as bytes (protective MBR, primary and backup headers and entry arrays).
//!
//! The GPT is written here rather than with the `gpt` crate: it is ~100 lines of header, entries
//! and CRC32, and writing it directly makes the output a pure function of the layout (the crate
//! draws random GUIDs unless every partition is set by hand, wants a Read+Write+Seek device and
//! does not write the protective MBR), with no device I/O beyond a few positioned writes.
//!
//! keel-init finds the images and data partitions by GPT partition name, so the names come from
//! `keel_plan`, the one place both sides read.

use std::fmt;
use std::io;

use sha2::{Digest, Sha256};

use crate::sink::Sink;

/// Bytes per logical sector.
pub const SECTOR: u64 = 512;
const MIB: u64 = 1 << 20;
/// Partitions start on 1 MiB boundaries, the first one at 1 MiB.
const ALIGN_SECTORS: u64 = MIB / SECTOR;
const ENTRY_COUNT: usize = 128;
const ENTRY_LEN: usize = 128;
/// Sectors of one partition entry array (128 × 128 bytes).
const ARRAY_SECTORS: u64 = (ENTRY_COUNT * ENTRY_LEN) as u64 / SECTOR;
const HEADER_LEN: usize = 92;
/// Longest partition name: 36 UTF-16 code units.
const NAME_UNITS: usize = 36;

/// What a partition holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PartKind {
    /// EFI system partition (FAT32) holding the UKI.
    Esp,
    /// Read-only ext4 with the flattened container image trees.
    Images,
    /// Read-write ext4 for container data.
    Data,
}

/// A GUID, stored in its textual (RFC 4122) byte order; GPT stores the first three fields
/// little-endian on disk.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// Parse `XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX` (hex, either case). Panics on bad input,
    /// which at compile time (in a `const`) is a build error.
    pub const fn parse(s: &str) -> Guid {
        let s = s.as_bytes();
        assert!(s.len() == 36, "GUID text must be 36 characters");
        let mut out = [0u8; 16];
        let (mut i, mut n) = (0, 0);
        while i < s.len() {
            if s[i] == b'-' {
                assert!(i == 8 || i == 13 || i == 18 || i == 23, "misplaced - in GUID");
                i += 1;
                continue;
            }
            out[n / 2] |= hex_digit(s[i]) << if n % 2 == 0 { 4 } else { 0 };
            n += 1;
            i += 1;
        }
        assert!(n == 32, "GUID text must have 32 hex digits");
        Guid(out)
    }

    /// A GUID derived from `parts` (hashed with a separator between them), marked as an RFC 4122
    /// version 4 (random) GUID, which is what it looks like.
    pub fn derive(parts: &[&[u8]]) -> Guid {
        let mut h = Sha256::new();
        for p in parts {
            h.update(p);
            h.update([0]);
        }
        let mut g = [0u8; 16];
        g.copy_from_slice(&h.finalize()[..16]);
        g[6] = (g[6] & 0x0f) | 0x40;
        g[8] = (g[8] & 0x3f) | 0x80;
        Guid(g)
    }

    /// The 16 bytes as GPT stores them (mixed-endian).
    pub fn to_gpt_bytes(self) -> [u8; 16] {
        let g = self.0;
        [g[3], g[2], g[1], g[0], g[5], g[4], g[7], g[6], g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15]]
    }
}

const fn hex_digit(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => panic!("bad hex digit in GUID"),
    }
}

impl fmt::Display for Guid {
    /// Upper-case, as sgdisk prints GUIDs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// EFI system partition type.
pub const ESP_TYPE: Guid = Guid::parse("C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
/// Linux filesystem data type.
pub const LINUX_FS_TYPE: Guid = Guid::parse("0FC63DAF-8483-4772-8E79-3D69D8477DE4");
/// GPT attribute bit 60: read-only (Discoverable Partitions Specification; honoured by
/// systemd-gpt-auto-generator, ignored by the kernel). Documents intent on keel-images.
pub const ATTR_READ_ONLY: u64 = 1 << 60;

/// One row of the layout table.
#[derive(Debug, Clone, Copy)]
pub struct PartSpec {
    /// What it holds.
    pub kind: PartKind,
    /// GPT partition name.
    pub name: &'static str,
    /// GPT partition type.
    pub type_guid: Guid,
    /// GPT attribute bits.
    pub attributes: u64,
}

/// The partitions of a keel disk, in disk order (partition numbers 1, 2, 3).
pub const TABLE: [PartSpec; 3] = [
    PartSpec { kind: PartKind::Esp, name: "keel-esp", type_guid: ESP_TYPE, attributes: 0 },
    PartSpec {
        kind: PartKind::Images,
        name: keel_plan::IMAGES_LABEL,
        type_guid: LINUX_FS_TYPE,
        attributes: ATTR_READ_ONLY,
    },
    PartSpec { kind: PartKind::Data, name: keel_plan::DATA_LABEL, type_guid: LINUX_FS_TYPE, attributes: 0 },
];

/// One placed partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// What it holds.
    pub kind: PartKind,
    /// GPT partition name.
    pub name: String,
    /// GPT partition type.
    pub type_guid: Guid,
    /// GPT unique partition GUID.
    pub unique_guid: Guid,
    /// First sector.
    pub first_lba: u64,
    /// Last sector (inclusive).
    pub last_lba: u64,
    /// GPT attribute bits.
    pub attributes: u64,
}

impl Part {
    /// Byte offset of the partition in the disk.
    pub fn offset(&self) -> u64 {
        self.first_lba * SECTOR
    }

    /// Size of the partition in bytes.
    pub fn size(&self) -> u64 {
        (self.last_lba + 1 - self.first_lba) * SECTOR
    }
}

/// A whole disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Size of the disk image in bytes.
    pub disk_size: u64,
    /// GPT disk GUID.
    pub disk_guid: Guid,
    /// Partitions in disk order.
    pub parts: Vec<Part>,
}

impl Layout {
    /// The partition of `kind`, if the layout has one.
    pub fn part(&self, kind: PartKind) -> Option<&Part> {
        self.parts.iter().find(|p| p.kind == kind)
    }
}

/// Place the [`TABLE`] partitions: the first at 1 MiB, each size rounded up to 1 MiB (at least
/// 1 MiB), back to back, and 1 MiB at the end for the backup GPT (33 sectors). GUIDs derive from
/// `disk_seed` and the partition names, so the same seed gives the same disk.
pub fn plan(disk_seed: &[u8], esp_size: u64, images_size: u64, data_size: u64) -> Layout {
    let mut lba = ALIGN_SECTORS;
    let mut parts = Vec::new();
    for (spec, size) in TABLE.iter().zip([esp_size, images_size, data_size]) {
        let sectors = size.max(1).div_ceil(MIB).saturating_mul(ALIGN_SECTORS);
        parts.push(Part {
            kind: spec.kind,
            name: spec.name.to_string(),
            type_guid: spec.type_guid,
            unique_guid: Guid::derive(&[b"keel-gpt-partition", disk_seed, spec.name.as_bytes()]),
            first_lba: lba,
            last_lba: lba.saturating_add(sectors - 1),
            attributes: spec.attributes,
        });
        lba = lba.saturating_add(sectors);
    }
    Layout {
        disk_size: lba.saturating_add(ALIGN_SECTORS).saturating_mul(SECTOR),
        disk_guid: Guid::derive(&[b"keel-gpt-disk", disk_seed]),
        parts,
    }
}

/// Problems writing the partition table.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// A disk size that is not whole sectors or has no room for the two GPTs.
    #[error("disk size of {0} bytes is not a whole number of sectors or too small for a GPT")]
    DiskSize(u64),
    /// More partitions than entries.
    #[error("{0} partitions, a GPT holds {ENTRY_COUNT}")]
    TooManyPartitions(usize),
    /// A partition outside the usable sectors.
    #[error("partition `{name}` (sectors {first}-{last}) is outside the usable sectors {first_usable}-{last_usable}")]
    OutOfRange {
        /// Partition name.
        name: String,
        /// Its first sector.
        first: u64,
        /// Its last sector.
        last: u64,
        /// First usable sector of the disk.
        first_usable: u64,
        /// Last usable sector of the disk.
        last_usable: u64,
    },
    /// Two partitions share sectors.
    #[error("partitions `{0}` and `{1}` overlap")]
    Overlap(String, String),
    /// A name longer than a GPT entry holds.
    #[error("partition name `{0}` is longer than {NAME_UNITS} UTF-16 units")]
    NameTooLong(String),
    /// The sink failed.
    #[error("writing the partition table")]
    Io(#[source] io::Error),
}

pub use keel_plan::crc32::crc32;

fn protective_mbr(total_sectors: u64) -> [u8; 512] {
    let mut m = [0u8; 512];
    let e = &mut m[446..462];
    e[1..4].copy_from_slice(&[0x00, 0x02, 0x00]); // CHS of LBA 1
    e[4] = 0xEE; // GPT protective
    e[5..8].copy_from_slice(&[0xFF, 0xFF, 0xFF]); // CHS not representable
    e[8..12].copy_from_slice(&1u32.to_le_bytes());
    let sectors = u32::try_from(total_sectors - 1).unwrap_or(u32::MAX);
    e[12..16].copy_from_slice(&sectors.to_le_bytes());
    m[510] = 0x55;
    m[511] = 0xAA;
    m
}

fn entry_array(layout: &Layout) -> Vec<u8> {
    let mut a = vec![0u8; ENTRY_COUNT * ENTRY_LEN];
    for (p, e) in layout.parts.iter().zip(a.chunks_mut(ENTRY_LEN)) {
        e[0..16].copy_from_slice(&p.type_guid.to_gpt_bytes());
        e[16..32].copy_from_slice(&p.unique_guid.to_gpt_bytes());
        e[32..40].copy_from_slice(&p.first_lba.to_le_bytes());
        e[40..48].copy_from_slice(&p.last_lba.to_le_bytes());
        e[48..56].copy_from_slice(&p.attributes.to_le_bytes());
        for (unit, slot) in p.name.encode_utf16().zip(e[56..128].chunks_mut(2)) {
            slot.copy_from_slice(&unit.to_le_bytes());
        }
    }
    a
}

/// One GPT header. `this` and `other` are the header sectors, `entries` the array's first sector.
fn header(layout: &Layout, this: u64, other: u64, entries: u64, array_crc: u32, last_lba: u64) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[0..8].copy_from_slice(b"EFI PART");
    h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes()); // revision 1.0
    h[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
    h[24..32].copy_from_slice(&this.to_le_bytes());
    h[32..40].copy_from_slice(&other.to_le_bytes());
    h[40..48].copy_from_slice(&(2 + ARRAY_SECTORS).to_le_bytes()); // first usable
    h[48..56].copy_from_slice(&(last_lba - 1 - ARRAY_SECTORS).to_le_bytes()); // last usable
    h[56..72].copy_from_slice(&layout.disk_guid.to_gpt_bytes());
    h[72..80].copy_from_slice(&entries.to_le_bytes());
    h[80..84].copy_from_slice(&(ENTRY_COUNT as u32).to_le_bytes());
    h[84..88].copy_from_slice(&(ENTRY_LEN as u32).to_le_bytes());
    h[88..92].copy_from_slice(&array_crc.to_le_bytes());
    let crc = crc32(&h[..HEADER_LEN]);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    h
}

fn check(layout: &Layout) -> Result<u64, DiskError> {
    let total = layout.disk_size / SECTOR;
    let first_usable = 2 + ARRAY_SECTORS;
    if !layout.disk_size.is_multiple_of(SECTOR) || total < 2 * first_usable + 1 {
        return Err(DiskError::DiskSize(layout.disk_size));
    }
    let last_usable = total - 2 - ARRAY_SECTORS;
    if layout.parts.len() > ENTRY_COUNT {
        return Err(DiskError::TooManyPartitions(layout.parts.len()));
    }
    for (i, p) in layout.parts.iter().enumerate() {
        if p.first_lba < first_usable || p.last_lba > last_usable || p.first_lba > p.last_lba {
            return Err(DiskError::OutOfRange {
                name: p.name.clone(),
                first: p.first_lba,
                last: p.last_lba,
                first_usable,
                last_usable,
            });
        }
        if p.name.encode_utf16().count() > NAME_UNITS {
            return Err(DiskError::NameTooLong(p.name.clone()));
        }
        if let Some(q) = layout.parts[..i].iter().find(|q| q.first_lba <= p.last_lba && p.first_lba <= q.last_lba) {
            return Err(DiskError::Overlap(q.name.clone(), p.name.clone()));
        }
    }
    Ok(total)
}

/// Write the protective MBR and both GPTs for `layout` into `sink` (a disk of
/// `layout.disk_size` bytes that reads as zeros where nothing is written).
pub fn write_gpt(sink: &mut dyn Sink, layout: &Layout) -> Result<(), DiskError> {
    let total = check(layout)?;
    let last = total - 1;
    let array = entry_array(layout);
    let array_crc = crc32(&array);
    let backup_array = last - ARRAY_SECTORS;
    let primary = header(layout, 1, last, 2, array_crc, last);
    let backup = header(layout, last, 1, backup_array, array_crc, last);
    let writes: [(u64, &[u8]); 5] =
        [(0, &protective_mbr(total)), (1, &primary), (2, &array), (backup_array, &array), (last, &backup)];
    for (lba, bytes) in writes {
        sink.write_at(lba * SECTOR, bytes).map_err(DiskError::Io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::VecSink;

    fn u64_at(b: &[u8], o: usize) -> u64 {
        u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
    }

    fn u32_at(b: &[u8], o: usize) -> u32 {
        u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
    }

    #[test]
    fn guids() {
        assert_eq!(ESP_TYPE.to_string(), "C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
        assert_eq!(&ESP_TYPE.to_gpt_bytes()[..4], &[0x28, 0x73, 0x2A, 0xC1]);
        assert_eq!(&ESP_TYPE.to_gpt_bytes()[8..], &ESP_TYPE.0[8..]);
        let g = Guid::derive(&[b"a", b"b"]);
        assert_eq!(g, Guid::derive(&[b"a", b"b"]));
        assert_ne!(g, Guid::derive(&[b"ab"]));
        let s = g.to_string();
        assert_eq!(&s[14..15], "4", "version 4: {s}");
        assert!(matches!(&s[19..20], "8" | "9" | "A" | "B"), "RFC 4122 variant: {s}");
        assert_eq!(Guid::parse(&s), g);
    }

    #[test]
    fn plan_aligns_and_rounds() {
        let l = plan(b"hello", 33 << 20, (5 << 20) + 1, 0);
        let p: Vec<_> = l.parts.iter().map(|p| (p.name.as_str(), p.first_lba, p.last_lba)).collect();
        assert_eq!(
            p,
            [
                ("keel-esp", 2048, 34 * 2048 - 1),
                ("keel-images", 34 * 2048, 40 * 2048 - 1),
                ("keel-data", 40 * 2048, 41 * 2048 - 1)
            ]
        );
        assert_eq!(l.disk_size, 42 << 20);
        assert_eq!(l.part(PartKind::Images).unwrap().size(), 6 << 20);
        assert_eq!(l.part(PartKind::Esp).unwrap().offset(), 1 << 20);
        assert_eq!(l, plan(b"hello", 33 << 20, (5 << 20) + 1, 0));
        let other = plan(b"world", 33 << 20, (5 << 20) + 1, 0);
        assert_ne!(other.disk_guid, l.disk_guid);
        assert_ne!(other.parts[0].unique_guid, l.parts[0].unique_guid);
        assert_ne!(l.parts[1].unique_guid, l.parts[2].unique_guid);
    }

    #[test]
    fn headers_and_arrays() {
        let l = plan(b"t", 1 << 20, 1 << 20, 1 << 20);
        let mut v = VecSink::default();
        write_gpt(&mut v, &l).unwrap();
        let b = &v.bytes;
        assert_eq!(b.len() as u64, l.disk_size);
        let total = l.disk_size / 512;
        assert_eq!(b[446 + 4], 0xEE);
        assert_eq!(u32_at(b, 446 + 12) as u64, total - 1);
        for (at, my, alt, entries) in [(512, 1, total - 1, 2), ((total - 1) as usize * 512, total - 1, 1, total - 33)] {
            let h = &b[at..at + 512];
            assert_eq!(&h[..8], b"EFI PART");
            let mut z = h[..92].to_vec();
            z[16..20].fill(0);
            assert_eq!(u32_at(h, 16), crc32(&z), "header CRC");
            assert_eq!((u64_at(h, 24), u64_at(h, 32), u64_at(h, 72)), (my, alt, entries));
            assert_eq!((u64_at(h, 40), u64_at(h, 48)), (34, total - 34));
            let array = &b[entries as usize * 512..entries as usize * 512 + 16384];
            assert_eq!(u32_at(h, 88), crc32(array), "array CRC");
            assert_eq!(u64_at(array, 128 + 48), ATTR_READ_ONLY);
            let name: Vec<u16> =
                array[128 + 56..128 + 78].chunks(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
            assert_eq!(String::from_utf16(&name).unwrap(), "keel-images");
        }
    }

    #[test]
    fn bad_layouts() {
        let good = plan(b"t", 1 << 20, 1 << 20, 1 << 20);
        let mut l = good.clone();
        l.parts[1].first_lba -= 1;
        assert!(
            matches!(write_gpt(&mut VecSink::default(), &l), Err(DiskError::Overlap(a, b)) if a == "keel-esp" && b == "keel-images")
        );
        let mut l = good.clone();
        l.disk_size -= 1 << 20;
        assert!(matches!(write_gpt(&mut VecSink::default(), &l), Err(DiskError::OutOfRange { .. })));
        let mut l = good.clone();
        l.disk_size += 1;
        assert!(matches!(write_gpt(&mut VecSink::default(), &l), Err(DiskError::DiskSize(_))));
        let mut l = good.clone();
        l.parts[0].name = "x".repeat(37);
        assert!(matches!(write_gpt(&mut VecSink::default(), &l), Err(DiskError::NameTooLong(_))));
        let mut l = good;
        l.parts[0].first_lba = 33;
        assert!(matches!(write_gpt(&mut VecSink::default(), &l), Err(DiskError::OutOfRange { .. })));
    }
}
