//! dm-verity on keel-images. The signed command line carries `keel.verity=ROOT:SALT:BLOCKS`
//! (written by the builder's `verity` module): the root hash, the salt, and how many 4 KiB data
//! blocks precede the superblock and hash tree in the same partition. keel-init maps the partition
//! through device-mapper's ioctls (no veritysetup, no udev) and mounts the mapped device instead,
//! so every block read from keel-images is checked against the root hash; a block that does not
//! match reads as EIO.
//!
//! Without the parameter (`[disk] verity = false`) the partition is mounted as it is, and keel
//! says so. With it, a failure to map is fatal: keel-images is never mounted unchecked.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::disks::PARTITIONS;
use crate::{console, sys};

/// Map keel-images through dm-verity when the command line asks for it, and put the mapped
/// device in its place among `nodes` (from `disks::find`, in [`PARTITIONS`] order).
pub fn setup(nodes: &mut [PathBuf]) -> anyhow::Result<Option<Mapped>> {
    let cmdline = std::fs::read_to_string("/proc/cmdline").context("read /proc/cmdline")?;
    let Some(table) = Table::from_cmdline(&cmdline).map_err(anyhow::Error::msg)? else {
        console::say("images: not verified (no keel.verity= on the command line)");
        return Ok(None);
    };
    // Fail closed: with the parameter present, keel-images is never mounted unchecked.
    let node = PARTITIONS
        .iter()
        .position(|p| p.label == keel_plan::IMAGES_LABEL)
        .and_then(|i| nodes.get_mut(i))
        .ok_or_else(|| anyhow::anyhow!("dm-verity: no {} partition to map", keel_plan::IMAGES_LABEL))?;
    let mapped = Mapped::new(node, &table).with_context(|| format!("dm-verity on {}", node.display()))?;
    console::say(format_args!("images: dm-verity on {}, root hash {}...", node.display(), table.short_root()));
    node.clone_from(&mapped.node);
    Ok(Some(mapped))
}

/// The command-line parameter.
pub const PARAM: &str = "keel.verity=";
/// device-mapper's control node, made by devtmpfs when dm-mod loads.
const CONTROL: &str = "/dev/mapper/control";
/// The mapped device's name, and the node keel-init makes for it.
const NAME: &str = "keel-images";
const NODE: &str = "/dev/keel-images-verified";
/// `struct dm_ioctl` (include/uapi/linux/dm-ioctl.h): 312 bytes, then the payload.
const HEADER: usize = 312;
/// `struct dm_target_spec`: 40 bytes, then the target's parameters.
const SPEC: usize = 40;
/// The ioctl commands' numbers.
const DEV_CREATE: u8 = 3;
const DEV_SUSPEND: u8 = 6;
const TABLE_LOAD: u8 = 9;
const TABLE_STATUS: u8 = 12;
const READONLY_FLAG: u32 = 1;

/// What the command line says keel-images holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    root: String,
    salt: String,
    blocks: u64,
}

impl Table {
    /// The parameter among `cmdline`'s words; `Ok(None)` when it is absent.
    pub fn from_cmdline(cmdline: &str) -> Result<Option<Table>, String> {
        let Some(value) = cmdline.split_whitespace().find_map(|w| w.strip_prefix(PARAM)) else { return Ok(None) };
        let hex = |s: &str, max: usize| {
            s.len().is_multiple_of(2) && s.len() <= max && s.bytes().all(|b| b.is_ascii_hexdigit())
        };
        match value.split(':').collect::<Vec<_>>()[..] {
            [root, salt, blocks] if root.len() == 64 && hex(root, 64) && !salt.is_empty() && hex(salt, 512) => {
                match blocks.parse::<u64>() {
                    // The target's length is blocks * 8 sectors, and the tree starts at block blocks + 1.
                    Ok(blocks) if blocks > 0 && blocks < u64::MAX / 8 => {
                        Ok(Some(Table { root: root.to_ascii_lowercase(), salt: salt.to_ascii_lowercase(), blocks }))
                    }
                    _ => Err(format!("{PARAM}{value}: the block count is not a positive number")),
                }
            }
            _ => Err(format!("{PARAM}{value}: want ROOT:SALT:BLOCKS (a sha256 in hex, a hex salt, a count)")),
        }
    }

    /// The verity target's parameters for `dev`: data and hash on the same device, the
    /// superblock in block `blocks` and the tree from the block after it.
    fn params(&self, dev: &str) -> String {
        let Table { root, salt, blocks } = self;
        format!("1 {dev} {dev} 4096 4096 {blocks} {} sha256 {root} {salt}", blocks.saturating_add(1))
    }

    /// The root hash, shortened for the console.
    pub fn short_root(&self) -> &str {
        &self.root[..16]
    }
}

/// Copy `bytes` into `buf` at `at` (the buffers here are made large enough for what goes in).
fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(d) = buf.get_mut(at..at + bytes.len()) {
        d.copy_from_slice(bytes);
    }
}

/// The native-endian integer of `N` bytes at `at` in `buf` (zeros past its end).
fn get<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    buf.get(at..at + N).and_then(|b| b.try_into().ok()).unwrap_or([0; N])
}

/// A `struct dm_ioctl` for the device [`NAME`] with `targets` targets, then `payload`.
fn request(flags: u32, targets: u32, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; HEADER + payload.len().max(4096)];
    put(&mut b, 0, &4u32.to_ne_bytes()); // interface version 4.0.0
    put(&mut b, 16, &(HEADER as u32).to_ne_bytes()); // data_start
    put(&mut b, 20, &targets.to_ne_bytes());
    put(&mut b, 28, &flags.to_ne_bytes());
    put(&mut b, 48, NAME.as_bytes());
    put(&mut b, HEADER, payload);
    b
}

/// One verity target over `sectors` 512-byte sectors.
fn target(sectors: u64, params: &str) -> Vec<u8> {
    let mut t = vec![0u8; SPEC];
    put(&mut t, 8, &sectors.to_ne_bytes());
    put(&mut t, 24, b"verity");
    t.extend_from_slice(params.as_bytes());
    t.push(0);
    t
}

/// The major and minor of a `dev` field (the kernel's `huge_encode_dev`).
fn decode_dev(dev: u64) -> (u32, u32) {
    (((dev >> 8) & 0xfff) as u32, ((dev & 0xff) | ((dev >> 12) & 0xfff00)) as u32)
}

/// The target status a `TABLE_STATUS` reply carries ("V" verified, "C" corruption seen).
fn status(reply: &[u8]) -> &[u8] {
    let start = u32::from_ne_bytes(get(reply, 16)) as usize + SPEC;
    let text = reply.get(start..).unwrap_or_default();
    text.split(|&b| b == 0).next().unwrap_or_default()
}

/// keel-images, mapped through dm-verity.
#[derive(Debug)]
pub struct Mapped {
    control: File,
    /// The node to mount.
    pub node: PathBuf,
}

impl Mapped {
    /// Map `partition` as `table` says.
    pub fn new(partition: &Path, table: &Table) -> anyhow::Result<Mapped> {
        let control =
            File::options().read(true).write(true).open(CONTROL).with_context(|| format!("open {CONTROL}"))?;
        let fd = control.as_fd();
        let mut create = request(0, 0, &[]);
        sys::dm_ioctl(fd, DEV_CREATE, &mut create).context("create the device-mapper device")?;
        let dev = u64::from_ne_bytes(get(&create, 40));
        let mut load = request(
            READONLY_FLAG,
            1,
            &target(table.blocks.saturating_mul(8), &table.params(&partition.to_string_lossy())),
        );
        sys::dm_ioctl(fd, TABLE_LOAD, &mut load).context("load the verity table")?;
        sys::dm_ioctl(fd, DEV_SUSPEND, &mut request(0, 0, &[])).context("activate the verity device")?;
        let (major, minor) = decode_dev(dev);
        sys::mknod_block(Path::new(NODE), major, minor).with_context(|| format!("make {NODE}"))?;
        Ok(Mapped { control, node: PathBuf::from(NODE) })
    }

    /// Whether dm-verity has found a block that does not match the root hash.
    pub fn corrupted(&self) -> bool {
        let mut reply = request(0, 0, &[]);
        sys::dm_ioctl(self.control.as_fd(), TABLE_STATUS, &mut reply).is_ok() && status(&reply).starts_with(b"C")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = "4f1cbc2a8a0e4e1d0a8bd03d7e55c5a1b1b2c3d4e5f60718293a4b5c6d7e8f90";

    #[test]
    fn reads_the_parameter() {
        let line = format!("console=ttyS0 keel.verity={ROOT}:00ff:1234 panic=-1");
        let t = Table::from_cmdline(&line).unwrap().unwrap();
        assert_eq!(t, Table { root: ROOT.into(), salt: "00ff".into(), blocks: 1234 });
        assert_eq!(t.params("/dev/vda2"), format!("1 /dev/vda2 /dev/vda2 4096 4096 1234 1235 sha256 {ROOT} 00ff"));
        assert_eq!(Table::from_cmdline("console=ttyS0 quiet").unwrap(), None);
    }

    #[test]
    fn refuses_a_malformed_parameter() {
        for bad in [
            format!("keel.verity={ROOT}:00ff"),
            format!("keel.verity={ROOT}:0g:12"),
            format!("keel.verity={ROOT}:0:12"),
            format!("keel.verity={ROOT}:00:0"),
            format!("keel.verity={ROOT}:00:-1"),
            format!("keel.verity={ROOT}::12"),
            format!("keel.verity={ROOT}:00:{}", u64::MAX / 8),
            format!("keel.verity={}:00:12", &ROOT[1..]),
            "keel.verity=".to_string(),
        ] {
            let r = Table::from_cmdline(&bad);
            assert!(r.as_ref().is_err_and(|e| e.contains("keel.verity=")), "{bad}: {r:?}");
        }
    }

    #[test]
    fn builds_the_requests() {
        let r = request(READONLY_FLAG, 1, &target(16, "1 a a"));
        assert_eq!(u32::from_ne_bytes(get(&r, 16)), 312);
        assert_eq!(u32::from_ne_bytes(get(&r, 20)), 1);
        assert_eq!(u32::from_ne_bytes(get(&r, 28)), READONLY_FLAG);
        assert_eq!(get::<12>(&r, 48), *b"keel-images\0");
        assert_eq!(u64::from_ne_bytes(get(&r, 320)), 16);
        assert_eq!(get::<6>(&r, 336), *b"verity");
        assert_eq!(get::<6>(&r, 352), *b"1 a a\0");
    }

    #[test]
    fn decodes_devices_and_status() {
        assert_eq!(decode_dev(254 << 8), (254, 0));
        assert_eq!(decode_dev((253 << 8) | 0x12 | (0x3 << 20)), (253, 0x312));
        let mut reply = request(0, 0, &[]);
        put(&mut reply, HEADER + SPEC, b"C");
        assert_eq!(status(&reply), b"C");
        put(&mut reply, 16, &9999u32.to_ne_bytes());
        assert_eq!(status(&reply), b"");
    }
}
