//! The GUID partition table, read and grown as pure functions over its bytes. No I/O here: the
//! boot step (`grow`) reads the sectors, asks [`plan`] what to write, and writes it.
//!
//! Growing a table for a disk that became larger (an image written to a bigger disk, a
//! `qemu-img resize`, a grown cloud volume) moves the backup entry array and header to the
//! disk's new last sectors, raises the last usable sector, extends one named partition to the
//! new last usable sector (aligned down) when nothing follows it, and recomputes the entry-array
//! and header CRCs of both copies.

use std::fmt;

/// Header signature.
pub const SIGNATURE: &[u8; 8] = b"EFI PART";
/// Smallest header (UEFI revision 1.0).
const HEADER_MIN: usize = 92;
/// Smallest partition entry.
const ENTRY_MIN: u32 = 128;
/// Largest entry array accepted (the usual one is 128 × 128 bytes = 16 KiB).
const ARRAY_MAX: u64 = 1 << 20;

// Header fields (byte offsets).
const H_SIZE: usize = 12;
const H_CRC: usize = 16;
const H_MY_LBA: usize = 24;
const H_ALTERNATE_LBA: usize = 32;
const H_FIRST_USABLE: usize = 40;
const H_LAST_USABLE: usize = 48;
const H_ENTRIES_LBA: usize = 72;
const H_ENTRY_COUNT: usize = 80;
const H_ENTRY_SIZE: usize = 84;
const H_ENTRIES_CRC: usize = 88;

// Entry fields (byte offsets).
const E_TYPE: usize = 0;
const E_FIRST_LBA: usize = 32;
const E_LAST_LBA: usize = 40;
const E_NAME: usize = 56;
const E_NAME_LEN: usize = 72;

// Protective MBR.
const MBR_RECORDS: usize = 446;
const MBR_RECORD_LEN: usize = 16;
const MBR_PROTECTIVE: u8 = 0xEE;

/// Why a table cannot be read or grown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GptError {
    /// No `EFI PART` signature at sector 1.
    NoSignature,
    /// A header field out of range (which one).
    BadHeader(&'static str),
    /// The header's CRC does not match.
    HeaderCrc,
    /// The entry array's CRC does not match the header's.
    ArrayCrc,
    /// Fewer bytes than the table needs (what was short).
    Short(&'static str),
    /// No partition of that name.
    NoPartition(String),
    /// The disk is smaller than the table says (sectors).
    DiskSmaller {
        /// Sectors the table describes.
        table: u64,
        /// Sectors the disk has.
        disk: u64,
    },
}

impl fmt::Display for GptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GptError::NoSignature => f.write_str("no GPT header at sector 1"),
            GptError::BadHeader(what) => write!(f, "GPT header: bad {what}"),
            GptError::HeaderCrc => f.write_str("GPT header CRC mismatch"),
            GptError::ArrayCrc => f.write_str("GPT entry array CRC mismatch"),
            GptError::Short(what) => write!(f, "{what} too short"),
            GptError::NoPartition(name) => write!(f, "no partition named {name} in the GPT"),
            GptError::DiskSmaller { table, disk } => {
                write!(f, "the disk has {disk} sectors, fewer than the {table} its GPT describes")
            }
        }
    }
}

impl std::error::Error for GptError {}

pub use keel_plan::crc32::crc32;

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at.checked_add(4)?)?.try_into().ok().map(u32::from_le_bytes)
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at.checked_add(8)?)?.try_into().ok().map(u64::from_le_bytes)
}

fn put(b: &mut [u8], at: usize, v: &[u8]) -> Option<()> {
    b.get_mut(at..at.checked_add(v.len())?)?.copy_from_slice(v);
    Some(())
}

const SHORT_HEADER: GptError = GptError::Short("GPT header sector");

/// One GPT header: the fields keel reads or changes, and the sector it came from (every other
/// byte is kept as it was).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    sector: Vec<u8>,
    size: usize,
    /// This header's sector.
    pub my_lba: u64,
    /// The other header's sector.
    pub alternate_lba: u64,
    /// First sector a partition may use.
    pub first_usable: u64,
    /// Last sector a partition may use.
    pub last_usable: u64,
    /// First sector of this copy's entry array.
    pub entries_lba: u64,
    /// Entries in the array.
    pub entry_count: u32,
    /// Bytes per entry.
    pub entry_size: u32,
    /// CRC-32 of the array's `entry_count × entry_size` bytes.
    pub entries_crc: u32,
}

impl Header {
    /// Parse and check a header sector: signature, size, CRC, entry geometry, usable range.
    pub fn parse(sector: &[u8]) -> Result<Header, GptError> {
        if sector.get(..SIGNATURE.len()) != Some(SIGNATURE.as_slice()) {
            return Err(GptError::NoSignature);
        }
        let size = u32_at(sector, H_SIZE).ok_or(SHORT_HEADER)? as usize;
        if size < HEADER_MIN || size > sector.len() {
            return Err(GptError::BadHeader("header size"));
        }
        let mut zeroed = sector.get(..size).ok_or(SHORT_HEADER)?.to_vec();
        put(&mut zeroed, H_CRC, &[0; 4]).ok_or(SHORT_HEADER)?;
        if crc32(&zeroed) != u32_at(sector, H_CRC).ok_or(SHORT_HEADER)? {
            return Err(GptError::HeaderCrc);
        }
        let field = |at| u64_at(sector, at).ok_or(SHORT_HEADER);
        let h = Header {
            sector: sector.to_vec(),
            size,
            my_lba: field(H_MY_LBA)?,
            alternate_lba: field(H_ALTERNATE_LBA)?,
            first_usable: field(H_FIRST_USABLE)?,
            last_usable: field(H_LAST_USABLE)?,
            entries_lba: field(H_ENTRIES_LBA)?,
            entry_count: u32_at(sector, H_ENTRY_COUNT).ok_or(SHORT_HEADER)?,
            entry_size: u32_at(sector, H_ENTRY_SIZE).ok_or(SHORT_HEADER)?,
            entries_crc: u32_at(sector, H_ENTRIES_CRC).ok_or(SHORT_HEADER)?,
        };
        if h.entry_size < ENTRY_MIN || !h.entry_size.is_multiple_of(8) {
            return Err(GptError::BadHeader("entry size"));
        }
        if h.array_len() as u64 > ARRAY_MAX {
            return Err(GptError::BadHeader("entry array size"));
        }
        if h.first_usable > h.last_usable {
            return Err(GptError::BadHeader("usable sectors"));
        }
        Ok(h)
    }

    /// Bytes of the entry array that the CRC covers.
    pub fn array_len(&self) -> usize {
        self.entry_count as usize * self.entry_size as usize
    }

    /// Sectors the entry array occupies on a disk of `sector`-byte sectors.
    pub fn array_sectors(&self, sector: usize) -> u64 {
        self.array_len().div_ceil(sector.max(1)) as u64
    }

    /// The sector with the fields written back and the header CRC recomputed.
    fn encode(&self) -> Option<Vec<u8>> {
        let mut s = self.sector.clone();
        put(&mut s, H_MY_LBA, &self.my_lba.to_le_bytes())?;
        put(&mut s, H_ALTERNATE_LBA, &self.alternate_lba.to_le_bytes())?;
        put(&mut s, H_FIRST_USABLE, &self.first_usable.to_le_bytes())?;
        put(&mut s, H_LAST_USABLE, &self.last_usable.to_le_bytes())?;
        put(&mut s, H_ENTRIES_LBA, &self.entries_lba.to_le_bytes())?;
        put(&mut s, H_ENTRIES_CRC, &self.entries_crc.to_le_bytes())?;
        put(&mut s, H_CRC, &[0; 4])?;
        let crc = crc32(s.get(..self.size)?);
        put(&mut s, H_CRC, &crc.to_le_bytes())?;
        Some(s)
    }
}

/// One used partition entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// 0-based slot in the array (the partition number is `index + 1`).
    pub index: usize,
    /// First sector.
    pub first_lba: u64,
    /// Last sector (inclusive).
    pub last_lba: u64,
    /// Partition name.
    pub name: String,
}

/// The used entries of `array` (the bytes at `header.entries_lba`), after checking its CRC.
pub fn entries(header: &Header, array: &[u8]) -> Result<Vec<Entry>, GptError> {
    let bytes = array.get(..header.array_len()).ok_or(GptError::Short("GPT entry array"))?;
    if crc32(bytes) != header.entries_crc {
        return Err(GptError::ArrayCrc);
    }
    let mut out = Vec::new();
    for (index, e) in bytes.chunks_exact(header.entry_size as usize).enumerate() {
        if e.get(E_TYPE..E_TYPE + 16).is_none_or(|t| t.iter().all(|&b| b == 0)) {
            continue;
        }
        let units: Vec<u16> = e
            .get(E_NAME..E_NAME + E_NAME_LEN)
            .unwrap_or_default()
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c.first().copied().unwrap_or(0), c.get(1).copied().unwrap_or(0)]))
            .take_while(|&u| u != 0)
            .collect();
        out.push(Entry {
            index,
            first_lba: u64_at(e, E_FIRST_LBA).unwrap_or(0),
            last_lba: u64_at(e, E_LAST_LBA).unwrap_or(0),
            name: String::from_utf16_lossy(&units),
        });
    }
    Ok(out)
}

/// Sectors to write at `lba`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// First sector.
    pub lba: u64,
    /// Whole sectors.
    pub bytes: Vec<u8>,
}

/// A partition's new end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extended {
    /// Partition number (1-based, as the kernel counts).
    pub number: u32,
    /// Its first sector.
    pub first_lba: u64,
    /// Its last sector before.
    pub old_last: u64,
    /// Its last sector after.
    pub new_last: u64,
}

/// What growing a table takes, in the order to write it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Growth {
    /// Sectors the table described (its backup header's sector + 1).
    pub old_sectors: u64,
    /// Sectors the disk has.
    pub new_sectors: u64,
    /// The backup entry array and header, one write ending at the disk's last sector. Write it
    /// first: nothing refers to it until the primary header does.
    pub backup: Write,
    /// The changed entry-array sectors of the primary copy, then its header (one write when they
    /// are adjacent, as on every keel disk): the commit. Write it second.
    pub primary: Vec<Write>,
    /// The protective MBR with its size field updated, when it is a plain protective MBR whose
    /// size described the old disk. Cosmetic: the kernel and firmware do not rely on it.
    pub mbr: Option<Write>,
    /// The partition extended, if it was the last one and gained at least one alignment unit.
    pub extended: Option<Extended>,
}

/// What [`plan`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The table already spans the disk.
    Fits,
    /// The disk is larger than the table: write this.
    Grow(Growth),
}

/// The new protective MBR for a disk of `new_sectors`, if `mbr` is a plain protective MBR
/// covering the old `old_sectors`.
fn protective_mbr(mbr: &[u8], old_sectors: u64, new_sectors: u64) -> Option<Vec<u8>> {
    if mbr.get(510..512) != Some([0x55, 0xAA].as_slice()) {
        return None;
    }
    let size = |total: u64| u32::try_from(total.saturating_sub(1)).unwrap_or(u32::MAX);
    let mut out = mbr.to_vec();
    for i in 0..4 {
        let r = MBR_RECORDS + i * MBR_RECORD_LEN;
        let protective = mbr.get(r + 4) == Some(&MBR_PROTECTIVE) && u32_at(mbr, r + 8) == Some(1);
        if protective && u32_at(mbr, r + 12) == Some(size(old_sectors)) && size(old_sectors) != size(new_sectors) {
            put(&mut out, r + 12, &size(new_sectors).to_le_bytes())?;
            return Some(out);
        }
    }
    None
}

/// Plan the growth of the table whose primary header is `header` (read from sector 1, checked
/// by [`Header::parse`]) and whose entry array is `array` (read from `header.entries_lba`, at
/// least `header.array_sectors(sector)` sectors), on a disk of `disk_sectors` sectors of `sector`
/// bytes whose first sector (the protective MBR) is `mbr`. The partition named `name` is
/// extended to the new last usable sector, aligned down to `align` sectors, when no partition
/// lies after it.
pub fn plan(
    mbr: &[u8],
    header: &Header,
    array: &[u8],
    sector: usize,
    disk_sectors: u64,
    name: &str,
    align: u64,
) -> Result<Plan, GptError> {
    if header.my_lba != 1 {
        return Err(GptError::BadHeader("primary header sector"));
    }
    if header.sector.len() != sector {
        return Err(GptError::BadHeader("header sector length"));
    }
    let parts = entries(header, array)?;
    let disk_last = disk_sectors.checked_sub(1).ok_or(GptError::DiskSmaller { table: 0, disk: 0 })?;
    let old_sectors = header.alternate_lba.saturating_add(1);
    if header.alternate_lba == disk_last {
        return Ok(Plan::Fits);
    }
    if header.alternate_lba > disk_last {
        return Err(GptError::DiskSmaller { table: old_sectors, disk: disk_sectors });
    }
    let target = parts.iter().find(|p| p.name == name).ok_or_else(|| GptError::NoPartition(name.to_string()))?;
    let array_sectors = header.array_sectors(sector);
    let backup_array = disk_last.checked_sub(array_sectors).ok_or(GptError::BadHeader("entry array size"))?;
    let last_usable = backup_array.saturating_sub(1);
    if last_usable < header.last_usable || header.alternate_lba <= header.last_usable {
        return Err(GptError::BadHeader("last usable sector"));
    }

    // The partition's new end: the new last usable sector, aligned down; only if nothing follows.
    let is_last = parts.iter().all(|p| p.index == target.index || p.last_lba < target.first_lba);
    let align = align.max(1);
    let end = (last_usable + 1) / align * align;
    let extended = (is_last && end > target.last_lba.saturating_add(1)).then(|| Extended {
        number: target.index as u32 + 1,
        first_lba: target.first_lba,
        old_last: target.last_lba,
        new_last: end - 1,
    });

    // The entry array, padded to whole sectors, with the new end.
    let array_bytes = array_sectors as usize * sector;
    let mut new_array = array.get(..header.array_len()).ok_or(GptError::Short("GPT entry array"))?.to_vec();
    new_array.resize(array_bytes, 0);
    let short = GptError::Short("GPT entry array");
    let mut changed_sector = None;
    if let Some(x) = &extended {
        let at = target.index * header.entry_size as usize + E_LAST_LBA;
        put(&mut new_array, at, &x.new_last.to_le_bytes()).ok_or(short.clone())?;
        changed_sector = Some(at / sector);
    }
    let entries_crc = crc32(new_array.get(..header.array_len()).ok_or(short.clone())?);

    let primary = Header { alternate_lba: disk_last, last_usable, entries_crc, ..header.clone() };
    let backup = Header { my_lba: disk_last, alternate_lba: 1, entries_lba: backup_array, ..primary.clone() };
    let bad = GptError::BadHeader("header size");
    let primary_sector = primary.encode().ok_or(bad.clone())?;
    let mut backup_bytes = new_array.clone();
    backup_bytes.extend(backup.encode().ok_or(bad)?);

    let mut primary_writes = Vec::new();
    match changed_sector {
        // Adjacent to the header (entries at sector 2): header and that sector in one write.
        Some(s) if header.entries_lba + s as u64 == header.my_lba + 1 => {
            let mut bytes = primary_sector;
            bytes.extend(new_array.get(s * sector..(s + 1) * sector).ok_or(short)?);
            primary_writes.push(Write { lba: header.my_lba, bytes });
        }
        Some(s) => {
            let bytes = new_array.get(s * sector..(s + 1) * sector).ok_or(short)?.to_vec();
            primary_writes.push(Write { lba: header.entries_lba + s as u64, bytes });
            primary_writes.push(Write { lba: header.my_lba, bytes: primary_sector });
        }
        None => primary_writes.push(Write { lba: header.my_lba, bytes: primary_sector }),
    }

    Ok(Plan::Grow(Growth {
        old_sectors,
        new_sectors: disk_sectors,
        backup: Write { lba: backup_array, bytes: backup_bytes },
        primary: primary_writes,
        mbr: protective_mbr(mbr, old_sectors, disk_sectors).map(|bytes| Write { lba: 0, bytes }),
        extended,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::FileExt;
    use std::path::Path;
    use std::process::Command;

    const MIB: u64 = 1 << 20;

    fn sgdisk(args: &[&str], img: &Path) -> (bool, String) {
        let o = Command::new("sgdisk").args(args).arg(img).output().expect("run sgdisk (apt install gdisk)");
        (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
    }

    /// A keel-like disk made by sgdisk: esp 33 MiB, images 16 MiB, data 64 MiB, 1 MiB free at
    /// the end, with `extra` partitions (name, size in MiB) after data.
    fn disk(dir: &Path, extra: &[(&str, u64)]) -> std::path::PathBuf {
        let img = dir.join("disk.img");
        let total = 1 + 33 + 16 + 64 + extra.iter().map(|e| e.1).sum::<u64>() + 1;
        fs::File::create(&img).unwrap().set_len(total * MIB).unwrap();
        let mut args: Vec<String> = vec!["-o".into()];
        for (i, (n, size)) in [("keel-esp", 33), ("keel-images", 16), ("keel-data", 64)]
            .iter()
            .copied()
            .chain(extra.iter().copied())
            .enumerate()
        {
            let t = if i == 0 { "ef00" } else { "8300" };
            args.extend([format!("-n{}:0:+{size}M", i + 1), format!("-t{}:{t}", i + 1), format!("-c{}:{n}", i + 1)]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, out) = sgdisk(&args, &img);
        assert!(ok, "sgdisk: {out}");
        img
    }

    fn read(img: &Path, lba: u64, sectors: u64) -> Vec<u8> {
        let mut b = vec![0u8; (sectors * 512) as usize];
        fs::File::open(img).unwrap().read_exact_at(&mut b, lba * 512).unwrap();
        b
    }

    fn plan_for(img: &Path) -> Result<Plan, GptError> {
        let sectors = fs::metadata(img).unwrap().len() / 512;
        let h = Header::parse(&read(img, 1, 1)).unwrap();
        let array = read(img, h.entries_lba, h.array_sectors(512));
        plan(&read(img, 0, 1), &h, &array, 512, sectors, "keel-data", 2048)
    }

    fn apply(img: &Path, g: &Growth) {
        let f = fs::OpenOptions::new().write(true).open(img).unwrap();
        for w in std::iter::once(&g.backup).chain(&g.primary).chain(&g.mbr) {
            assert_eq!(w.bytes.len() % 512, 0);
            f.write_all_at(&w.bytes, w.lba * 512).unwrap();
        }
    }

    fn last_sector(img: &Path, n: u32) -> u64 {
        let (_, out) = sgdisk(&["-i", &n.to_string()], img);
        let line = out.lines().find_map(|l| l.strip_prefix("Last sector:")).unwrap_or_else(|| panic!("{out}"));
        line.split_whitespace().next().unwrap().parse().unwrap()
    }

    #[test]
    fn grows_an_sgdisk_table_that_sgdisk_then_verifies() {
        let t = tempfile::tempdir().unwrap();
        let img = disk(t.path(), &[]);
        assert_eq!(plan_for(&img).unwrap(), Plan::Fits);
        let old_last = last_sector(&img, 3);
        // The disk grows to 1 GiB; sgdisk sees the problem.
        fs::OpenOptions::new().write(true).open(&img).unwrap().set_len(1 << 30).unwrap();
        let (_, before) = sgdisk(&["-v"], &img);
        assert!(before.contains("doesn't reside\nat the end of the disk"), "{before}");

        let Plan::Grow(g) = plan_for(&img).unwrap() else { panic!("no growth planned") };
        let total = (1u64 << 30) / 512;
        assert_eq!((g.old_sectors, g.new_sectors), ((1 + 33 + 16 + 64 + 1) * 2048, total));
        assert_eq!(g.backup.lba, total - 33);
        assert_eq!(g.backup.bytes.len(), 33 * 512);
        // keel-data's entry is in the first array sector: one 1 KiB write of header + that sector.
        assert_eq!(g.primary.len(), 1);
        assert_eq!((g.primary[0].lba, g.primary[0].bytes.len()), (1, 1024));
        let x = g.extended.unwrap();
        assert_eq!((x.number, x.old_last), (3, old_last));
        // The new end: the last usable sector (total - 34) + 1, aligned down to 1 MiB.
        assert_eq!(x.new_last, (total - 33) / 2048 * 2048 - 1);
        assert!(g.mbr.is_some());

        apply(&img, &g);
        let (ok, after) = sgdisk(&["-v"], &img);
        assert!(ok && after.contains("No problems found"), "{after}");
        assert_eq!(last_sector(&img, 3), x.new_last);
        assert_eq!(last_sector(&img, 2), 50 * 2048 - 1, "keel-images unchanged");
        let (_, p) = sgdisk(&["-p"], &img);
        assert!(p.contains("last usable sector is 2097118"), "{p}");
        // Both copies agree, and a second pass has nothing to do.
        let (ok, _) = sgdisk(&["-b", &t.path().join("backup").to_string_lossy()], &img);
        assert!(ok);
        assert_eq!(plan_for(&img).unwrap(), Plan::Fits);
        let mbr = read(&img, 0, 1);
        assert_eq!(u32_at(&mbr, 446 + 12), Some((total - 1) as u32));
    }

    #[test]
    fn a_partition_with_another_after_it_keeps_its_size() {
        let t = tempfile::tempdir().unwrap();
        let img = disk(t.path(), &[("after", 8)]);
        let old_last = last_sector(&img, 3);
        fs::OpenOptions::new().write(true).open(&img).unwrap().set_len(512 * MIB).unwrap();
        let Plan::Grow(g) = plan_for(&img).unwrap() else { panic!("no growth planned") };
        assert_eq!(g.extended, None);
        assert_eq!(g.primary.len(), 1);
        assert_eq!(g.primary[0].bytes.len(), 512, "only the header changes");
        apply(&img, &g);
        let (ok, after) = sgdisk(&["-v"], &img);
        assert!(ok && after.contains("No problems found"), "{after}");
        assert_eq!(last_sector(&img, 3), old_last);
    }

    #[test]
    fn less_than_one_alignment_unit_moves_only_the_backup() {
        let t = tempfile::tempdir().unwrap();
        let img = disk(t.path(), &[]);
        fs::OpenOptions::new().write(true).open(&img).unwrap().set_len(1 << 30).unwrap();
        let Plan::Grow(g) = plan_for(&img).unwrap() else { panic!("no growth planned") };
        apply(&img, &g);
        let data_last = last_sector(&img, 3);
        // After a growth, 2048 - 33 sectors follow keel-data: 8 KiB more do not make a MiB.
        fs::OpenOptions::new().write(true).open(&img).unwrap().set_len((1 << 30) + 8192).unwrap();
        let Plan::Grow(g) = plan_for(&img).unwrap() else { panic!("no growth planned") };
        assert_eq!(g.extended, None);
        assert_eq!(g.backup.lba, (1 << 30) / 512 + 16 - 33);
        apply(&img, &g);
        let (ok, after) = sgdisk(&["-v"], &img);
        assert!(ok && after.contains("No problems found"), "{after}");
        assert_eq!(last_sector(&img, 3), data_last);
    }

    #[test]
    fn refuses_damaged_tables_and_smaller_disks() {
        let t = tempfile::tempdir().unwrap();
        let img = disk(t.path(), &[]);
        let sector = read(&img, 1, 1);
        let h = Header::parse(&sector).unwrap();
        let array = read(&img, 2, 32);
        let sectors = fs::metadata(&img).unwrap().len() / 512;
        let mbr = read(&img, 0, 1);

        let mut bad = sector.clone();
        bad[H_LAST_USABLE] ^= 1;
        assert_eq!(Header::parse(&bad), Err(GptError::HeaderCrc));
        assert_eq!(Header::parse(&[0u8; 512]), Err(GptError::NoSignature));
        assert_eq!(Header::parse(&sector[..40]), Err(GptError::BadHeader("header size")));
        let mut flipped = array.clone();
        flipped[128 * 2 + E_LAST_LBA] ^= 1;
        assert_eq!(plan(&mbr, &h, &flipped, 512, sectors * 2, "keel-data", 2048), Err(GptError::ArrayCrc));
        assert_eq!(
            plan(&mbr, &h, &array, 512, sectors - 1, "keel-data", 2048),
            Err(GptError::DiskSmaller { table: sectors, disk: sectors - 1 })
        );
        assert_eq!(plan(&mbr, &h, &array, 512, sectors * 2, "nope", 2048), Err(GptError::NoPartition("nope".into())));
        assert_eq!(
            plan(&mbr, &h, &array[..100], 512, sectors * 2, "keel-data", 2048),
            Err(GptError::Short("GPT entry array"))
        );
        let backup = Header::parse(&read(&img, sectors - 1, 1)).unwrap();
        assert_eq!(
            plan(&mbr, &backup, &array, 512, sectors * 2, "keel-data", 2048),
            Err(GptError::BadHeader("primary header sector"))
        );
    }

    #[test]
    fn reads_names_and_ranges() {
        let t = tempfile::tempdir().unwrap();
        let img = disk(t.path(), &[]);
        let h = Header::parse(&read(&img, 1, 1)).unwrap();
        let e = entries(&h, &read(&img, 2, 32)).unwrap();
        let got: Vec<_> = e.iter().map(|e| (e.index, e.name.as_str(), e.first_lba)).collect();
        assert_eq!(got, [(0, "keel-esp", 2048), (1, "keel-images", 34 * 2048), (2, "keel-data", 50 * 2048)]);
        assert_eq!(e[2].last_lba, 114 * 2048 - 1);
    }
}
