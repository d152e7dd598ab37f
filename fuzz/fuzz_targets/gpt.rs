//! keel-init's GPT reader (init/src/gpt.rs, pure functions over the table's bytes, included
//! as it is): `Header::parse`, then `gpt::plan` for growing the table to a larger disk, as
//! keel-init's grow step calls them.
//!
//! Input: the disk's size in sectors (8 bytes, little-endian; when its top bit is set the
//! harness fixes both CRCs so the input gets past them), the protective MBR (512 bytes), the
//! primary header (512 bytes), then the entry array.
#![no_main]

#[allow(dead_code)]
#[path = "../../init/src/gpt.rs"]
mod gpt;

use libfuzzer_sys::fuzz_target;

const SECTOR: usize = 512;
/// keel-init's alignment: 1 MiB in sectors.
const ALIGN: u64 = (1 << 20) / SECTOR as u64;

fuzz_target!(|data: &[u8]| {
    let Some((size, rest)) = data.split_first_chunk::<8>() else { return };
    let Some((mbr, rest)) = rest.split_at_checked(SECTOR) else { return };
    let Some((header, array)) = rest.split_at_checked(SECTOR) else { return };
    let size = u64::from_le_bytes(*size);
    let fix = size >> 63 == 1;
    let disk_sectors = size & !(1 << 63);
    let mut header = header.to_vec();
    if fix {
        fix_crcs(&mut header, array);
    }
    let Ok(h) = gpt::Header::parse(&header) else { return };
    let _ = gpt::entries(&h, array);
    let _ = gpt::plan(mbr, &h, array, SECTOR, disk_sectors, keel_plan::DATA_LABEL, ALIGN);
});

/// Set the entry-array CRC (field at 88, over entry count × entry size bytes) and the header
/// CRC (field at 16, over the header's own size with the field zeroed).
fn fix_crcs(header: &mut [u8], array: &[u8]) {
    let u32_at = |h: &[u8], at: usize| u32::from_le_bytes(h[at..at + 4].try_into().unwrap()) as usize;
    let array_len = u32_at(header, 80).saturating_mul(u32_at(header, 84));
    if let Some(covered) = array.get(..array_len) {
        header[88..92].copy_from_slice(&gpt::crc32(covered).to_le_bytes());
    }
    let size = u32_at(header, 12);
    if (92..=SECTOR).contains(&size) {
        header[16..20].fill(0);
        let crc = gpt::crc32(&header[..size]);
        header[16..20].copy_from_slice(&crc.to_le_bytes());
    }
}
