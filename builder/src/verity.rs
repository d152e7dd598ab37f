//! dm-verity over keel-images: the hash tree and superblock `veritysetup format` writes, made
//! here (no crate makes them; see docs/architecture.md). keel-init maps the partition with the
//! table `verity 1 DEV DEV 4096 4096 N N+1 sha256 ROOT SALT` (init/src/verity.rs), so the
//! partition is laid out as:
//!
//! ```text
//! blocks 0 .. N      the ext4 filesystem (the data)
//! block  N           the verity superblock (512 bytes, zero-padded to 4 KiB)
//! blocks N+1 ..      the hash tree, top level first
//! ```
//!
//! Each data block is hashed as sha256(salt ‖ block); a hash block holds 128 such digests,
//! zero-padded; each level hashes the one below until one block remains, whose digest is the
//! root hash. The salt is derived from the data (sha256 of "keel-verity-salt" and the data's
//! sha256) and the UUID from the salt, so the same filesystem gives the same bytes.

use std::io;

use sha2::{Digest, Sha256};

/// Data and hash block size.
pub const BLOCK: u64 = 4096;
/// Bytes of a sha256 digest.
const DIGEST: usize = 32;
/// Digests per hash block.
const PER_BLOCK: usize = BLOCK as usize / DIGEST;
/// Bytes of the superblock proper (`struct verity_sb` in cryptsetup's lib/verity/verity.c).
const SUPERBLOCK: usize = 512;
/// What the salt is derived from, besides the data.
const SALT_DOMAIN: &[u8] = b"keel-verity-salt";
/// What the UUID is derived from, besides the salt.
const UUID_DOMAIN: &[u8] = b"keel-verity-uuid";
/// Bytes read at a time.
const CHUNK: usize = 256 * BLOCK as usize;

/// Problems computing the tree.
#[derive(Debug, thiserror::Error)]
pub enum VerityError {
    /// The data is not a whole, positive number of blocks.
    #[error("dm-verity: keel-images is {0} bytes, not a positive whole number of 4 KiB blocks")]
    Size(u64),
    /// Reading the data back failed.
    #[error("dm-verity: reading keel-images back")]
    Read(#[source] io::Error),
}

/// The dm-verity metadata of one keel-images partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verity {
    /// The root hash.
    pub root: [u8; DIGEST],
    /// The salt.
    pub salt: [u8; DIGEST],
    /// The superblock's UUID.
    pub uuid: [u8; 16],
    /// Data blocks (N).
    pub data_blocks: u64,
    /// What follows the data: the superblock's block, then the tree, top level first.
    pub hash_area: Vec<u8>,
}

/// Bytes the superblock and tree over `data_blocks` blocks take.
pub fn hash_size(data_blocks: u64) -> u64 {
    let (mut blocks, mut n) = (1, data_blocks);
    while n > 1 {
        n = n.div_ceil(PER_BLOCK as u64);
        blocks += n;
    }
    blocks * BLOCK
}

/// The tree over `len` bytes of data, read with `read_at(offset, buf)` (which fills `buf`).
/// The data is read twice: once for the salt, once for the tree.
pub fn compute(len: u64, read_at: impl Fn(u64, &mut [u8]) -> io::Result<()>) -> Result<Verity, VerityError> {
    if len == 0 || !len.is_multiple_of(BLOCK) {
        return Err(VerityError::Size(len));
    }
    let data_blocks = len / BLOCK;
    let mut buf = vec![0u8; CHUNK];
    let mut whole = Sha256::new();
    each_chunk(len, &mut buf, &read_at, |c| whole.update(c))?;
    let salt: [u8; DIGEST] = Sha256::new().chain_update(SALT_DOMAIN).chain_update(whole.finalize()).finalize().into();
    let seeded = Sha256::new_with_prefix(salt);
    let hash = |block: &[u8]| -> [u8; DIGEST] { seeded.clone().chain_update(block).finalize().into() };

    let mut digests = Vec::with_capacity(usize::try_from(data_blocks).unwrap_or(0));
    each_chunk(len, &mut buf, &read_at, |c| digests.extend(c.chunks(BLOCK as usize).map(hash)))?;
    // Bottom level first; stored top level first.
    let mut levels: Vec<Vec<u8>> = Vec::new();
    while digests.len() > 1 {
        let mut level = vec![0u8; digests.len().div_ceil(PER_BLOCK) * BLOCK as usize];
        for (i, d) in digests.iter().enumerate() {
            let at = (i / PER_BLOCK) * BLOCK as usize + (i % PER_BLOCK) * DIGEST;
            level[at..at + DIGEST].copy_from_slice(d);
        }
        digests = level.chunks(BLOCK as usize).map(hash).collect();
        levels.push(level);
    }
    let root = digests[0];
    let uuid = uuid_for(&salt);
    let mut hash_area = superblock(&uuid, data_blocks, &salt);
    hash_area.resize(BLOCK as usize, 0);
    for level in levels.iter().rev() {
        hash_area.extend_from_slice(level);
    }
    debug_assert_eq!(hash_area.len() as u64, hash_size(data_blocks));
    Ok(Verity { root, salt, uuid, data_blocks, hash_area })
}

/// Call `f` on the data, `buf.len()` bytes at a time.
fn each_chunk(
    len: u64,
    buf: &mut [u8],
    read_at: &impl Fn(u64, &mut [u8]) -> io::Result<()>,
    mut f: impl FnMut(&[u8]),
) -> Result<(), VerityError> {
    let mut at = 0u64;
    while at < len {
        let n = usize::try_from(len - at).unwrap_or(usize::MAX).min(buf.len());
        read_at(at, &mut buf[..n]).map_err(VerityError::Read)?;
        f(&buf[..n]);
        at += n as u64;
    }
    Ok(())
}

/// A UUID (version 4 in form) derived from the salt.
fn uuid_for(salt: &[u8; DIGEST]) -> [u8; 16] {
    let h = Sha256::new().chain_update(UUID_DOMAIN).chain_update(salt).finalize();
    let mut u = [0u8; 16];
    u.copy_from_slice(&h[..16]);
    u[6] = (u[6] & 0x0f) | 0x40;
    u[8] = (u[8] & 0x3f) | 0x80;
    u
}

/// `struct verity_sb`, little-endian: "verity", version 1, hash type 1 (normal), the UUID,
/// "sha256", both block sizes, the data blocks, and the salt.
fn superblock(uuid: &[u8; 16], data_blocks: u64, salt: &[u8; DIGEST]) -> Vec<u8> {
    let mut sb = vec![0u8; SUPERBLOCK];
    sb[0..6].copy_from_slice(b"verity");
    sb[8..12].copy_from_slice(&1u32.to_le_bytes());
    sb[12..16].copy_from_slice(&1u32.to_le_bytes());
    sb[16..32].copy_from_slice(uuid);
    sb[32..38].copy_from_slice(b"sha256");
    sb[64..68].copy_from_slice(&(BLOCK as u32).to_le_bytes());
    sb[68..72].copy_from_slice(&(BLOCK as u32).to_le_bytes());
    sb[72..80].copy_from_slice(&data_blocks.to_le_bytes());
    sb[80..82].copy_from_slice(&(DIGEST as u16).to_le_bytes());
    sb[88..88 + DIGEST].copy_from_slice(salt);
    sb
}

impl Verity {
    /// The root hash in hex.
    pub fn root_hex(&self) -> String {
        hex::encode(self.root)
    }

    /// The salt in hex.
    pub fn salt_hex(&self) -> String {
        hex::encode(self.salt)
    }

    /// The UUID as veritysetup prints it.
    pub fn uuid_text(&self) -> String {
        let h = hex::encode(self.uuid);
        format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
    }

    /// Where the superblock starts in the partition (veritysetup's `--hash-offset`).
    pub fn hash_offset(&self) -> u64 {
        self.data_blocks * BLOCK
    }

    /// The kernel command-line parameter keel-init reads.
    pub fn param(&self) -> String {
        format!("keel.verity={}:{}:{}", self.root_hex(), self.salt_hex(), self.data_blocks)
    }

    /// The parameter's text for a tree over `data_blocks` blocks, with zeros for the hashes:
    /// as long as [`Verity::param`] will be, for sizing the UKI before the data exists.
    pub fn placeholder(data_blocks: u64) -> String {
        format!("keel.verity={0}:{0}:{data_blocks}", "0".repeat(2 * DIGEST))
    }

    /// The record for `--json` and the provenance.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "root_hash": self.root_hex(),
            "salt": self.salt_hex(),
            "uuid": self.uuid_text(),
            "data_blocks": self.data_blocks,
            "hash_offset": self.hash_offset(),
            "hash_size": self.hash_area.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(data: &[u8]) -> Verity {
        compute(data.len() as u64, |at, buf| {
            buf.copy_from_slice(&data[at as usize..at as usize + buf.len()]);
            Ok(())
        })
        .unwrap()
    }

    fn sha(parts: &[&[u8]]) -> [u8; 32] {
        let mut h = Sha256::new();
        for p in parts {
            h.update(p);
        }
        h.finalize().into()
    }

    #[test]
    fn one_level_by_hand() {
        let data: Vec<u8> = (0..3 * BLOCK as usize).map(|i| (i % 251) as u8).collect();
        let v = of(&data);
        assert_eq!(v.salt, sha(&[SALT_DOMAIN, &sha(&[&data])]));
        let mut level = vec![0u8; BLOCK as usize];
        for (i, block) in data.chunks(BLOCK as usize).enumerate() {
            level[i * 32..i * 32 + 32].copy_from_slice(&sha(&[&v.salt, block]));
        }
        assert_eq!(v.root, sha(&[&v.salt, &level]));
        assert_eq!(&v.hash_area[BLOCK as usize..], &level[..]);
        assert_eq!(v.hash_area.len() as u64, hash_size(3));
        assert_eq!(v.uuid[6] >> 4, 4);
    }

    #[test]
    fn levels_are_stored_top_down() {
        // 129 blocks: two bottom blocks (128 + 1 digests), one top block over them.
        let data = vec![7u8; 129 * BLOCK as usize];
        let v = of(&data);
        assert_eq!(v.hash_area.len(), 4 * BLOCK as usize);
        let top = &v.hash_area[BLOCK as usize..2 * BLOCK as usize];
        assert_eq!(v.root, sha(&[&v.salt, top]));
        let bottom = &v.hash_area[2 * BLOCK as usize..];
        for (i, b) in bottom.chunks(BLOCK as usize).enumerate() {
            assert_eq!(&top[i * 32..i * 32 + 32], sha(&[&v.salt, b]));
        }
        assert!(bottom[BLOCK as usize + 32..].iter().all(|&b| b == 0), "the last hash block is zero-padded");
    }

    #[test]
    fn one_block_is_its_own_root() {
        let data = vec![1u8; BLOCK as usize];
        let v = of(&data);
        assert_eq!(v.root, sha(&[&v.salt, &data]));
        assert_eq!(v.hash_area.len(), BLOCK as usize);
    }

    #[test]
    fn superblock_fields() {
        let v = of(&vec![0u8; 4 * BLOCK as usize]);
        let sb = &v.hash_area[..SUPERBLOCK];
        assert_eq!(&sb[..8], b"verity\0\0");
        assert_eq!(sb[8..16], [1, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(&sb[16..32], &v.uuid);
        assert_eq!(&sb[32..40], b"sha256\0\0");
        assert_eq!(u64::from_le_bytes(sb[72..80].try_into().unwrap()), 4);
        assert_eq!(sb[80..82], [32, 0]);
        assert_eq!(&sb[88..120], &v.salt);
        assert_eq!(v.hash_offset(), 4 * BLOCK);
    }

    #[test]
    fn the_parameter_and_its_placeholder_are_as_long() {
        let v = of(&vec![3u8; 2 * BLOCK as usize]);
        assert_eq!(v.param().len(), Verity::placeholder(2).len());
        assert!(v.param().starts_with(&format!("keel.verity={}:{}:2", v.root_hex(), v.salt_hex())));
    }

    #[test]
    fn refuses_partial_blocks() {
        let r = compute(BLOCK + 1, |_, _| Ok(()));
        assert!(matches!(r, Err(VerityError::Size(4097))), "{r:?}");
        assert!(matches!(compute(0, |_, _| Ok(())), Err(VerityError::Size(0))));
    }

    #[test]
    fn sizes() {
        assert_eq!(hash_size(1), BLOCK);
        assert_eq!(hash_size(128), 2 * BLOCK);
        assert_eq!(hash_size(4096), (1 + 32 + 1) * BLOCK);
        assert_eq!(hash_size(129), 4 * BLOCK);
    }
}
