//! keel-data fills its disk: on a boot disk larger than its GPT says (the image was written to a
//! bigger disk, or `qemu-img resize`d), keel-data, the last partition, is extended to the disk's
//! end, and its ext4 with it. One image then serves any disk size.
//!
//! Two steps around the mounts:
//! 1. [`partition`], before anything is mounted: the GPT is rewritten ([`crate::gpt`] plans the
//!    sectors: the backup copy at the new end first, then the primary header and the changed
//!    entry sector, then the protective MBR, each flushed), and the kernel is told the
//!    partition's new size with BLKPG_RESIZE_PARTITION on the whole disk (BLKRRPART would fail
//!    once a partition is in use, and would drop and re-add every partition).
//! 2. [`filesystem`], once keel-data is mounted: ext4 is grown online (EXT4_IOC_RESIZE_FS) to
//!    the partition's size. This runs at every boot and does nothing when the filesystem already
//!    fills the partition, so a boot cut short between the steps finishes the job next time.
//!
//! Nothing here stops the boot: a failure is reported and keel-data keeps its old size.
//!
//! Why the backup is written first: until the primary header changes, the primary and the old
//! backup still describe the old table, so a power cut before that leaves the old disk (and the
//! next boot grows it again). The primary header and the sector holding keel-data's entry are
//! one 1 KiB write (sectors 1-2), the commit; if that write were torn, the primary's CRCs would
//! fail and firmware and partitioning tools would recover the new table from the backup already
//! at the disk's end (Linux itself reads the backup only with the `gpt` parameter).

use std::fs::{self, File, OpenOptions};
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use keel_plan::DATA_LABEL;

use crate::gpt::{self, Plan};
use crate::{console, disks, sys};

/// Partitions end on 1 MiB boundaries, as the builder places them.
pub const ALIGN_BYTES: u64 = 1 << 20;
/// sysfs counts a block device's `size` and `start` in 512-byte units, whatever its sectors.
const SYSFS_UNIT: u64 = 512;
/// The ext4 superblock's offset in the partition, and the bytes of it read.
const SUPERBLOCK_AT: u64 = 1024;
const SUPERBLOCK_LEN: usize = 1024;

/// What [`partition`] did: keel-data's size before and after, and how long it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grown {
    /// Bytes before.
    pub old_bytes: u64,
    /// Bytes after.
    pub new_bytes: u64,
    /// Time taken by the GPT and the kernel's resize.
    pub took: Duration,
}

/// A partition and the disk that holds it, as sysfs describes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The partition's number (1-based, as in the GPT).
    pub number: u32,
    /// Its first byte on the disk.
    pub start: u64,
    /// Its size in bytes.
    pub bytes: u64,
    /// The whole disk's node (`/dev/vda`).
    pub disk_node: PathBuf,
    /// The whole disk's size in bytes.
    pub disk_bytes: u64,
    /// The disk's logical sector size (the GPT's sector).
    pub sector: u64,
}

fn read_number(path: &Path) -> anyhow::Result<u64> {
    let text = fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    text.trim().parse().with_context(|| format!("{}: not a number: {:?}", path.display(), text.trim()))
}

/// Where the partition `node` (`/dev/vda3`) is, read from `sys_block` (`/sys/class/block`): its
/// entry links into its disk's directory (`.../block/vda/vda3`), which holds the disk's `size`,
/// `uevent` and `queue/logical_block_size`.
pub fn locate(sys_block: &Path, dev: &Path, node: &Path) -> anyhow::Result<Location> {
    let name = node.file_name().with_context(|| format!("{}: no device name", node.display()))?;
    let part = sys_block.join(name);
    let real = fs::canonicalize(&part).with_context(|| format!("resolve {}", part.display()))?;
    let disk = real.parent().with_context(|| format!("{}: no parent disk", real.display()))?;
    let uevent = fs::read_to_string(disk.join("uevent")).with_context(|| format!("read {}/uevent", disk.display()))?;
    let devname = disks::parse_uevent(&uevent).devname.with_context(|| format!("{}: no DEVNAME", disk.display()))?;
    let sector = read_number(&disk.join("queue/logical_block_size")).unwrap_or(512);
    if sector < 512 || !sector.is_power_of_two() {
        bail!("{}: logical sector size {sector}", disk.display());
    }
    Ok(Location {
        number: u32::try_from(read_number(&part.join("partition"))?).context("partition number")?,
        start: read_number(&part.join("start"))?.saturating_mul(SYSFS_UNIT),
        bytes: read_number(&part.join("size"))?.saturating_mul(SYSFS_UNIT),
        disk_node: dev.join(devname),
        disk_bytes: read_number(&disk.join("size"))?.saturating_mul(SYSFS_UNIT),
        sector,
    })
}

/// `n` bytes as whole MiB (rounded down), for the console.
fn mib(n: u64) -> u64 {
    n >> 20
}

/// Grow keel-data's partition (device `node`) to the end of its disk if the disk is larger than
/// its GPT says. Call before mounting. Says what it did, or why it failed; never fails the boot.
pub fn partition(node: &Path) -> Option<Grown> {
    let start = Instant::now();
    match grow_partition(Path::new(disks::SYS_BLOCK), Path::new(disks::DEV), node) {
        Ok(Some((old_bytes, new_bytes))) => Some(Grown { old_bytes, new_bytes, took: start.elapsed() }),
        Ok(None) => None,
        Err(e) => {
            console::say(format_args!("{DATA_LABEL} not grown: {e:#}"));
            None
        }
    }
}

fn read_sectors(disk: &File, lba: u64, sectors: u64, sector: u64) -> anyhow::Result<Vec<u8>> {
    let len = usize::try_from(sectors.saturating_mul(sector)).context("read size")?;
    let mut buf = vec![0u8; len];
    disk.read_exact_at(&mut buf, lba.saturating_mul(sector)).with_context(|| format!("read sector {lba}"))?;
    Ok(buf)
}

fn write_sectors(disk: &File, w: &gpt::Write, sector: u64) -> anyhow::Result<()> {
    disk.write_all_at(&w.bytes, w.lba.saturating_mul(sector)).with_context(|| format!("write sector {}", w.lba))
}

/// The partition step; `Some((old, new))` bytes when keel-data grew.
fn grow_partition(sys_block: &Path, dev: &Path, node: &Path) -> anyhow::Result<Option<(u64, u64)>> {
    let loc = locate(sys_block, dev, node)?;
    let disk_node = loc.disk_node.display().to_string();
    let disk =
        OpenOptions::new().read(true).write(true).open(&loc.disk_node).with_context(|| format!("open {disk_node}"))?;
    let sector = loc.sector;
    let sector_len = usize::try_from(sector).context("sector size")?;
    let head = read_sectors(&disk, 0, 2, sector)?;
    let (mbr, lba1) = head.split_at(sector_len);
    let header = gpt::Header::parse(lba1).with_context(|| format!("{disk_node}: primary GPT"))?;
    let array = read_sectors(&disk, header.entries_lba, header.array_sectors(sector_len), sector)?;
    let disk_sectors = loc.disk_bytes / sector;
    let plan = gpt::plan(mbr, &header, &array, sector_len, disk_sectors, DATA_LABEL, ALIGN_BYTES / sector)
        .with_context(|| format!("{disk_node}: GPT"))?;
    let growth = match plan {
        Plan::Fits => return Ok(None),
        Plan::Grow(g) => g,
    };
    if let Some(x) = &growth.extended {
        if x.number != loc.number || x.first_lba.saturating_mul(sector) != loc.start {
            bail!(
                "{disk_node}: the GPT's {DATA_LABEL} (partition {}, sector {}) is not the kernel's (partition {}, byte {})",
                x.number,
                x.first_lba,
                loc.number,
                loc.start
            );
        }
    }

    // Backup first, then the primary (the commit), then the protective MBR; each flushed to the
    // disk before the next.
    let flush = |what: &str| disk.sync_all().with_context(|| format!("flush {disk_node} after the {what}"));
    write_sectors(&disk, &growth.backup, sector)?;
    flush("backup GPT")?;
    for w in &growth.primary {
        write_sectors(&disk, w, sector)?;
    }
    flush("primary GPT")?;
    if let Some(w) = &growth.mbr {
        write_sectors(&disk, w, sector)?;
        flush("protective MBR")?;
    }
    sys::blkflsbuf(disk.as_fd()).with_context(|| format!("BLKFLSBUF {disk_node}"))?;

    let Some(x) = growth.extended else {
        console::say(format_args!(
            "{disk_node} grew from {} to {} MiB: GPT moved to its end; {DATA_LABEL} not extended (not the last \
             partition, or less than 1 MiB to gain)",
            mib(growth.old_sectors * sector),
            mib(growth.new_sectors * sector)
        ));
        return Ok(None);
    };
    let new_bytes = (x.new_last + 1 - x.first_lba) * sector;
    sys::blkpg_resize(disk.as_fd(), x.number, loc.start, new_bytes)
        .with_context(|| format!("the GPT is grown, but BLKPG_RESIZE_PARTITION {disk_node} {}", x.number))?;
    let size = sys_block.join(node.file_name().unwrap_or_default()).join("size");
    let seen = read_number(&size)?.saturating_mul(SYSFS_UNIT);
    if seen != new_bytes {
        bail!("after BLKPG_RESIZE_PARTITION, {} says {seen} bytes, not {new_bytes}", size.display());
    }
    Ok(Some((loc.bytes, new_bytes)))
}

/// The ext4 superblock fields growth needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Superblock {
    /// Bytes per block.
    pub block_size: u64,
    /// Blocks in the filesystem.
    pub blocks: u64,
}

/// Parse the ext4 superblock (the 1024 bytes at byte 1024 of the partition).
pub fn parse_superblock(sb: &[u8]) -> Option<Superblock> {
    let u16_at = |at: usize| sb.get(at..at + 2).and_then(|b| b.try_into().ok()).map(u16::from_le_bytes);
    let u32_at = |at: usize| sb.get(at..at + 4).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes);
    if u16_at(0x38)? != 0xEF53 {
        return None;
    }
    let log = u32_at(0x18)?;
    if log > 6 {
        return None;
    }
    let is_64bit = u32_at(0x60)? & 0x80 != 0;
    let hi = if is_64bit { u64::from(u32_at(0x150)?) } else { 0 };
    Some(Superblock { block_size: 1024 << log, blocks: hi << 32 | u64::from(u32_at(0x04)?) })
}

fn read_superblock(node: &Path) -> anyhow::Result<Superblock> {
    let f = File::open(node).with_context(|| format!("open {}", node.display()))?;
    let mut b = [0u8; SUPERBLOCK_LEN];
    f.read_exact_at(&mut b, SUPERBLOCK_AT).with_context(|| format!("read {}'s superblock", node.display()))?;
    parse_superblock(&b).with_context(|| format!("{}: no ext4 superblock", node.display()))
}

/// Blocks of `block_size` that fit in `bytes`.
pub fn blocks_for(bytes: u64, block_size: u64) -> u64 {
    bytes / block_size.max(1)
}

/// Grow the ext4 filesystem mounted at `mount` from `node` (keel-data) to fill its partition, if
/// it does not; then report the growth, `grown` being what [`partition`] did. Never fails the boot.
pub fn filesystem(node: &Path, mount: &Path, grown: Option<Grown>) {
    let start = Instant::now();
    match grow_filesystem(node, mount) {
        Ok(fs_grew) => {
            let fs_took = start.elapsed().as_secs_f64();
            match (grown, fs_grew) {
                (Some(g), _) => console::say(format_args!(
                    "{DATA_LABEL} grown from {} MiB to {} MiB in {:.2} s (partition {:.2} s, ext4 {fs_took:.2} s)",
                    mib(g.old_bytes),
                    mib(g.new_bytes),
                    g.took.as_secs_f64() + fs_took,
                    g.took.as_secs_f64()
                )),
                // A boot cut short after the partition grew: the filesystem catches up now.
                (None, Some((old, new))) => console::say(format_args!(
                    "{DATA_LABEL}'s filesystem grown from {} MiB to {} MiB to fill its partition in {fs_took:.2} s",
                    mib(old),
                    mib(new)
                )),
                (None, None) => {}
            }
        }
        Err(e) => match grown {
            Some(g) => console::say(format_args!(
                "{DATA_LABEL}'s partition grown from {} MiB to {} MiB, but not its filesystem: {e:#}",
                mib(g.old_bytes),
                mib(g.new_bytes)
            )),
            None => console::say(format_args!("{DATA_LABEL}'s filesystem not grown: {e:#}")),
        },
    }
}

/// `Some((old, new))` filesystem bytes when it grew.
fn grow_filesystem(node: &Path, mount: &Path) -> anyhow::Result<Option<(u64, u64)>> {
    let size = Path::new(disks::SYS_BLOCK).join(node.file_name().unwrap_or_default()).join("size");
    let part_bytes = read_number(&size)?.saturating_mul(SYSFS_UNIT);
    let before = read_superblock(node)?;
    let want = blocks_for(part_bytes, before.block_size);
    if want <= before.blocks {
        return Ok(None);
    }
    let dir = File::open(mount).with_context(|| format!("open {}", mount.display()))?;
    sys::ext4_resize_fs(dir.as_fd(), want)
        .with_context(|| format!("EXT4_IOC_RESIZE_FS {} to {want} blocks", mount.display()))?;
    // The superblock read through the device shares the page cache the filesystem updates.
    let after = read_superblock(node)?;
    Ok(Some((before.blocks * before.block_size, after.blocks * after.block_size)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn superblock(log: u32, lo: u32, hi: u32, is_64bit: bool) -> Vec<u8> {
        let mut b = vec![0u8; 1024];
        b[0x38..0x3a].copy_from_slice(&0xEF53u16.to_le_bytes());
        b[0x18..0x1c].copy_from_slice(&log.to_le_bytes());
        b[0x04..0x08].copy_from_slice(&lo.to_le_bytes());
        b[0x150..0x154].copy_from_slice(&hi.to_le_bytes());
        if is_64bit {
            b[0x60..0x64].copy_from_slice(&0x80u32.to_le_bytes());
        }
        b
    }

    #[test]
    fn parses_superblocks() {
        assert_eq!(
            parse_superblock(&superblock(2, 16384, 7, false)),
            Some(Superblock { block_size: 4096, blocks: 16384 })
        );
        assert_eq!(
            parse_superblock(&superblock(0, 5, 1, true)),
            Some(Superblock { block_size: 1024, blocks: (1 << 32) + 5 })
        );
        let mut bad = superblock(2, 1, 0, false);
        bad[0x38] = 0;
        assert_eq!(parse_superblock(&bad), None);
        assert_eq!(parse_superblock(&superblock(9, 1, 0, false)), None);
        assert_eq!(parse_superblock(&[0u8; 100]), None);
    }

    #[test]
    fn a_mkfs_superblock_parses() {
        let t = tempfile::tempdir().unwrap();
        let img = t.path().join("fs");
        File::create(&img).unwrap().set_len(64 << 20).unwrap();
        let o = std::process::Command::new("mkfs.ext4").args(["-q", "-F", "-b", "4096"]).arg(&img).output().unwrap();
        assert!(o.status.success(), "{o:?}");
        assert_eq!(read_superblock(&img).unwrap(), Superblock { block_size: 4096, blocks: 16384 });
        assert_eq!(blocks_for(973 << 20, 4096), 249_088);
    }

    /// A fake /sys/class/block with vda (disk) and vda3 (partition), entries linking into a
    /// devices tree as the kernel's do.
    #[test]
    fn locates_a_partition_and_its_disk() {
        let t = tempfile::tempdir().unwrap();
        let disk = t.path().join("devices/pci0000:00/virtio2/block/vda");
        fs::create_dir_all(disk.join("vda3")).unwrap();
        fs::create_dir_all(disk.join("queue")).unwrap();
        fs::write(disk.join("uevent"), "MAJOR=254\nMINOR=0\nDEVNAME=vda\nDEVTYPE=disk\n").unwrap();
        fs::write(disk.join("size"), "2097152\n").unwrap();
        fs::write(disk.join("queue/logical_block_size"), "512\n").unwrap();
        fs::write(disk.join("vda3/partition"), "3\n").unwrap();
        fs::write(disk.join("vda3/start"), "102400\n").unwrap();
        fs::write(disk.join("vda3/size"), "131072\n").unwrap();
        let class = t.path().join("class/block");
        fs::create_dir_all(&class).unwrap();
        std::os::unix::fs::symlink(disk.join("vda3"), class.join("vda3")).unwrap();
        let loc = locate(&class, Path::new("/dev"), Path::new("/dev/vda3")).unwrap();
        assert_eq!(
            loc,
            Location {
                number: 3,
                start: 102400 * 512,
                bytes: 64 << 20,
                disk_node: "/dev/vda".into(),
                disk_bytes: 1 << 30,
                sector: 512
            }
        );
        let e = locate(&class, Path::new("/dev"), Path::new("/dev/vda9")).unwrap_err();
        assert!(format!("{e:#}").contains("vda9"), "{e:#}");
    }
}
