//! Unified kernel image: systemd-stub with the kernel, initramfs, command line, os-release and
//! kernel release appended as PE sections. This is what `ukify` (systemd ≥ 253) does with
//! Python's `pefile`, done here on bytes: no objcopy, no Python.
//!
//! The layout follows ukify's `pe_add_sections` (facts checked against systemd v252's
//! `src/boot/efi/{stub,pe,linux}.c` and v254's `src/ukify/ukify.py`):
//!
//! - Sections go in ukify's order, `.linux` last ("to leave breathing room for decompression"
//!   for old kernels run in place through the EFI handover protocol). Empty optional parts get
//!   no section, as in ukify; systemd-stub treats a missing section and an empty one alike.
//! - Each new section starts at the next free virtual address, aligned to the page size (a
//!   multiple of any SectionAlignment up to 4 KiB; the x86_64 stub has 512), and at the next
//!   FileAlignment boundary of the file. VirtualSize is the exact payload length (the stub reads
//!   that many bytes), SizeOfRawData is it rounded up to FileAlignment.
//! - Characteristics are `CNT_INITIALIZED_DATA | MEM_READ`, except `.linux`, which ukify marks
//!   `CNT_CODE | MEM_READ` because old kernels booted through the handover protocol execute in
//!   place. (stub 252 with a 6.1 kernel copies the kernel out with `LoadImage` instead.)
//! - The stub 252 finds sections in its own loaded image (`pe_memory_locate_sections`), so they
//!   must be inside SizeOfImage, which is recomputed. NumberOfSections, SizeOfCode and
//!   SizeOfInitializedData are updated, and the PE checksum is recomputed (ukify zeroes it).
//! - New section headers go right after the stub's section table, which needs room before
//!   SizeOfHeaders and the first section's data (x86_64 stub: 7 free slots; aarch64: ~90). That
//!   area must be zeros or AArch64 NOPs (gnu-efi pads the aarch64 stub's headers with them).
//! - An unstripped COFF symbol table at the end of the stub (Debian's x86_64 stub has one) is
//!   dropped, as ukify does; a signed stub is refused.
//!
//! The kernel's own PE header is checked against the stub's machine, which catches a kernel of
//! the wrong architecture and a still-compressed arm64 `Image`.

use std::fmt;

/// What goes into a UKI besides the stub. Empty parts other than `linux` are left out.
#[derive(Debug, Clone, Copy)]
pub struct UkiParts<'a> {
    /// `/etc/os-release` contents (`.osrel`).
    pub osrel: &'a [u8],
    /// Kernel command line (`.cmdline`).
    pub cmdline: &'a [u8],
    /// Kernel release, `uname -r` (`.uname`).
    pub uname: &'a [u8],
    /// The kernel as an EFI PE image: x86 `bzImage` or an uncompressed arm64 `Image` (`.linux`).
    pub linux: &'a [u8],
    /// The initramfs (`.initrd`).
    pub initrd: &'a [u8],
}

/// A PE machine keel builds for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Machine {
    /// `IMAGE_FILE_MACHINE_AMD64`, 0x8664.
    X86_64,
    /// `IMAGE_FILE_MACHINE_ARM64`, 0xAA64.
    Aarch64,
}

impl Machine {
    /// The PE `Machine` field value.
    pub fn pe_machine(self) -> u16 {
        match self {
            Machine::X86_64 => 0x8664,
            Machine::Aarch64 => 0xAA64,
        }
    }

    fn from_pe_machine(m: u16) -> Option<Machine> {
        match m {
            0x8664 => Some(Machine::X86_64),
            0xAA64 => Some(Machine::Aarch64),
            _ => None,
        }
    }
}

impl fmt::Display for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Machine::X86_64 => "x86_64",
            Machine::Aarch64 => "aarch64",
        })
    }
}

/// One entry of a PE section table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionInfo {
    /// Name, NUL padding removed.
    pub name: String,
    /// RVA of the section once loaded.
    pub virtual_address: u32,
    /// Bytes of the section once loaded.
    pub virtual_size: u32,
    /// File offset of the section's data.
    pub raw_offset: u32,
    /// Bytes of data in the file (FileAlignment multiple).
    pub raw_size: u32,
    /// `IMAGE_SCN_*` flags.
    pub characteristics: u32,
}

/// Problems building a UKI or reading a PE image.
#[derive(Debug, thiserror::Error)]
pub enum UkiError {
    /// The bytes are not a well-formed PE image.
    #[error("{what} is not a PE image: {reason}")]
    NotPe {
        /// `stub` or `kernel`.
        what: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// A PE32 (32-bit) or other non-PE32+ optional header.
    #[error("{what} is not PE32+ (optional header magic {magic:#x})")]
    NotPe32Plus {
        /// `stub` or `kernel`.
        what: &'static str,
        /// The optional header's magic.
        magic: u16,
    },
    /// A machine keel does not build for.
    #[error("{what} is for PE machine {machine:#06x}, not x86_64 or aarch64")]
    UnsupportedMachine {
        /// `stub` or `kernel`.
        what: &'static str,
        /// The PE `Machine` field.
        machine: u16,
    },
    /// Stub and kernel are for different architectures.
    #[error("kernel is for {kernel} but the stub for {stub}")]
    MachineMismatch {
        /// The stub's machine.
        stub: Machine,
        /// The kernel's machine.
        kernel: Machine,
    },
    /// The stub carries an Authenticode signature, which appending sections would break.
    #[error("stub is signed; sign the UKI instead")]
    Signed,
    /// The stub already has a section the UKI adds.
    #[error("stub already has a {0} section")]
    SectionExists(&'static str),
    /// No room in the stub's headers for the new section headers.
    #[error("stub headers have room for {room} more section header(s), {needed} needed")]
    NoHeaderRoom {
        /// Section headers that fit.
        room: usize,
        /// Section headers to add.
        needed: usize,
    },
    /// Something other than padding in the header area where new section headers go.
    #[error("stub header area after the section table is not empty")]
    HeaderAreaInUse,
    /// The UKI would not fit PE's 32-bit sizes.
    #[error("UKI would be larger than 4 GiB")]
    TooLarge,
}

// PE32+ layout: offsets from the COFF header (just after "PE\0\0") and from the optional header.
const COFF_MACHINE: usize = 0;
const COFF_NSECTIONS: usize = 2;
const COFF_SYMTAB: usize = 8;
const COFF_NSYMS: usize = 12;
const COFF_OPT_SIZE: usize = 16;
const COFF_CHARACTERISTICS: usize = 18;
const COFF_LEN: usize = 20;
const OPT_MAGIC: usize = 0;
const OPT_SIZE_OF_CODE: usize = 4;
const OPT_SIZE_OF_INIT_DATA: usize = 8;
const OPT_SECTION_ALIGN: usize = 32;
const OPT_FILE_ALIGN: usize = 36;
const OPT_SIZE_OF_IMAGE: usize = 56;
const OPT_SIZE_OF_HEADERS: usize = 60;
const OPT_CHECKSUM: usize = 64;
const OPT_NUM_DIRS: usize = 108;
const OPT_DIRS: usize = 112;
const DIR_SECURITY: usize = 4;
const PE32_PLUS: u16 = 0x20b;
const SECTION_HEADER_LEN: usize = 40;
const SYMBOL_LEN: u64 = 18;

const IMAGE_FILE_LOCAL_SYMS_STRIPPED: u16 = 0x0008;
const IMAGE_SCN_CNT_CODE: u32 = 0x0000_0020;
const IMAGE_SCN_CNT_INITIALIZED_DATA: u32 = 0x0000_0040;
const IMAGE_SCN_MEM_READ: u32 = 0x4000_0000;

/// New sections start on a page boundary even when the stub's SectionAlignment is smaller.
const PAGE: u64 = 4096;

/// The sections a UKI adds, in ukify's order.
const UKI_SECTIONS: [&str; 5] = [".osrel", ".cmdline", ".uname", ".initrd", ".linux"];

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(off..off.checked_add(2)?)?.try_into().ok()?))
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off.checked_add(4)?)?.try_into().ok()?))
}

fn put_u16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}

fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

fn round_up(v: u64, align: u64) -> u64 {
    v.div_ceil(align) * align
}

/// Where the parts of a PE image's headers are.
struct Headers {
    /// Offset of the COFF file header.
    coff: usize,
    /// Offset of the optional header.
    opt: usize,
    /// Offset of the section table.
    sections: usize,
    /// Number of sections.
    count: usize,
    machine: u16,
}

fn headers(pe: &[u8], what: &'static str) -> Result<Headers, UkiError> {
    let bad = |reason| UkiError::NotPe { what, reason };
    if !pe.starts_with(b"MZ") {
        return Err(bad("no MZ signature"));
    }
    let lfanew = u32_at(pe, 0x3c).ok_or(bad("truncated DOS header"))? as usize;
    if pe.get(lfanew..lfanew.saturating_add(4)) != Some(b"PE\0\0".as_slice()) {
        return Err(bad("no PE signature"));
    }
    let coff = lfanew + 4;
    let opt = coff + COFF_LEN;
    let machine = u16_at(pe, coff + COFF_MACHINE).ok_or(bad("truncated COFF header"))?;
    let count = usize::from(u16_at(pe, coff + COFF_NSECTIONS).ok_or(bad("truncated COFF header"))?);
    let opt_size = usize::from(u16_at(pe, coff + COFF_OPT_SIZE).ok_or(bad("truncated COFF header"))?);
    let magic = u16_at(pe, opt + OPT_MAGIC).ok_or(bad("truncated optional header"))?;
    if magic != PE32_PLUS {
        return Err(UkiError::NotPe32Plus { what, magic });
    }
    if opt_size < OPT_DIRS || pe.len() < opt + opt_size {
        return Err(bad("truncated optional header"));
    }
    let sections = opt + opt_size;
    if pe.len() < sections + count * SECTION_HEADER_LEN {
        return Err(bad("truncated section table"));
    }
    Ok(Headers { coff, opt, sections, count, machine })
}

fn machine_of(pe: &[u8], what: &'static str) -> Result<Machine, UkiError> {
    let h = headers(pe, what)?;
    Machine::from_pe_machine(h.machine).ok_or(UkiError::UnsupportedMachine { what, machine: h.machine })
}

/// The machine a PE32+ image is for (x86_64 or aarch64; anything else is an error).
pub fn machine(pe: &[u8]) -> Result<Machine, UkiError> {
    machine_of(pe, "image")
}

fn sections_of(pe: &[u8], h: &Headers) -> Vec<SectionInfo> {
    (0..h.count)
        .map(|i| {
            let s = &pe[h.sections + i * SECTION_HEADER_LEN..][..SECTION_HEADER_LEN];
            let name_len = s[..8].iter().position(|&c| c == 0).unwrap_or(8);
            let at = |o| u32::from_le_bytes([s[o], s[o + 1], s[o + 2], s[o + 3]]);
            SectionInfo {
                name: String::from_utf8_lossy(&s[..name_len]).into_owned(),
                virtual_size: at(8),
                virtual_address: at(12),
                raw_size: at(16),
                raw_offset: at(20),
                characteristics: at(36),
            }
        })
        .collect()
}

/// Where the fields a signature touches are in a PE32+ image (see `sign::pe`).
#[derive(Debug, Clone)]
pub struct SignLayout {
    /// File offset of the optional header's CheckSum.
    pub checksum: usize,
    /// File offset of data directory 4 (security), if the optional header has one.
    pub security_dir: Option<usize>,
    /// SizeOfHeaders.
    pub size_of_headers: u32,
    /// The section table.
    pub sections: Vec<SectionInfo>,
}

/// The [`SignLayout`] of a PE32+ image.
pub fn sign_layout(pe: &[u8]) -> Result<SignLayout, UkiError> {
    let h = headers(pe, "image")?;
    let num_dirs = u32_at(pe, h.opt + OPT_NUM_DIRS).unwrap_or(0) as usize;
    let dir = h.opt + OPT_DIRS + DIR_SECURITY * 8;
    let security_dir = (num_dirs > DIR_SECURITY && dir + 8 <= h.sections).then_some(dir);
    let size_of_headers = u32_at(pe, h.opt + OPT_SIZE_OF_HEADERS).unwrap_or(0);
    Ok(SignLayout { checksum: h.opt + OPT_CHECKSUM, security_dir, size_of_headers, sections: sections_of(pe, &h) })
}

/// The section table of a PE32+ image.
pub fn section_table(pe: &[u8]) -> Result<Vec<SectionInfo>, UkiError> {
    let h = headers(pe, "image")?;
    Ok(sections_of(pe, &h))
}

/// The bytes of section `name` as the loader sees them (VirtualSize bytes, or fewer if the
/// file holds less), or `None` if there is no such section or it lies outside the file.
pub fn section_data<'a>(pe: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let s = section_table(pe).ok()?.into_iter().find(|s| s.name == name)?;
    let len = s.virtual_size.min(s.raw_size) as usize;
    pe.get(s.raw_offset as usize..(s.raw_offset as usize).checked_add(len)?)
}

/// The PE image checksum (as `imagehlp`'s `CheckSumMappedFile`): the 16-bit one's-complement
/// style sum of the file with the checksum field taken as zero, plus the file length.
pub fn pe_checksum(pe: &[u8], checksum_offset: usize) -> u32 {
    let mut sum: u64 = 0;
    for (i, pair) in pe.chunks(2).enumerate() {
        let off = i * 2;
        if off == checksum_offset || off == checksum_offset + 2 {
            continue;
        }
        let word = u16::from_le_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        sum += u64::from(word);
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum = (sum & 0xffff) + (sum >> 16);
    // The length term wraps like the reference implementation's 32-bit arithmetic.
    (sum as u32).wrapping_add(pe.len() as u32)
}

/// Whether `area` (at file offset `offset`) is padding that new section headers may replace:
/// zeros, or AArch64 NOPs, which gnu-efi's hand-made arm64 PE header (Debian's aarch64 stub)
/// is padded with up to SizeOfHeaders.
fn is_padding(area: &[u8], offset: usize) -> bool {
    const NOP: [u8; 4] = 0xd503_201f_u32.to_le_bytes();
    area.iter().enumerate().all(|(i, &b)| b == 0 || b == NOP[(offset + i) % 4])
}

/// Build a UKI: `stub` (a systemd-stub PE32+ image for x86_64 or aarch64) with `parts` appended
/// as sections. Same input, same bytes out.
pub fn build_uki(stub: &[u8], parts: &UkiParts) -> Result<Vec<u8>, UkiError> {
    let h = headers(stub, "stub")?;
    let stub_machine =
        Machine::from_pe_machine(h.machine).ok_or(UkiError::UnsupportedMachine { what: "stub", machine: h.machine })?;
    let kernel_machine = machine_of(parts.linux, "kernel")?;
    if kernel_machine != stub_machine {
        return Err(UkiError::MachineMismatch { stub: stub_machine, kernel: kernel_machine });
    }
    let existing = sections_of(stub, &h);
    for name in UKI_SECTIONS {
        if existing.iter().any(|s| s.name == name) {
            return Err(UkiError::SectionExists(name));
        }
    }
    let num_dirs = u32_at(stub, h.opt + OPT_NUM_DIRS).unwrap_or(0) as usize;
    let opt_size = h.sections - h.opt;
    let security_dir = h.opt + OPT_DIRS + DIR_SECURITY * 8;
    if num_dirs > DIR_SECURITY
        && security_dir + 8 <= h.opt + opt_size
        && (u32_at(stub, security_dir) != Some(0) || u32_at(stub, security_dir + 4) != Some(0))
    {
        return Err(UkiError::Signed);
    }
    let file_align = u64::from(u32_at(stub, h.opt + OPT_FILE_ALIGN).unwrap_or(0));
    let section_align = u64::from(u32_at(stub, h.opt + OPT_SECTION_ALIGN).unwrap_or(0));
    if !file_align.is_power_of_two() || !(512..=65536).contains(&file_align) {
        return Err(UkiError::NotPe { what: "stub", reason: "FileAlignment is not a power of two in 512..=64K" });
    }
    if !section_align.is_power_of_two() || section_align < file_align {
        return Err(UkiError::NotPe {
            what: "stub", reason: "SectionAlignment is not a power of two ≥ FileAlignment"
        });
    }
    let va_align = section_align.max(PAGE);

    let new: Vec<(&'static str, &[u8])> = [
        (".osrel", parts.osrel),
        (".cmdline", parts.cmdline),
        (".uname", parts.uname),
        (".initrd", parts.initrd),
        (".linux", parts.linux),
    ]
    .into_iter()
    .filter(|(_, data)| !data.is_empty())
    .collect();

    // Room for the new section headers: up to the end of the headers (rounded up to
    // FileAlignment, as ukify does) but never into the first section's data.
    let size_of_headers = u64::from(u32_at(stub, h.opt + OPT_SIZE_OF_HEADERS).unwrap_or(0));
    let first_data = existing.iter().filter(|s| s.raw_size > 0).map(|s| u64::from(s.raw_offset)).min();
    let header_end = round_up(size_of_headers, file_align).min(first_data.unwrap_or(u64::MAX));
    let table_end = (h.sections + h.count * SECTION_HEADER_LEN) as u64;
    let room = usize::try_from(header_end.saturating_sub(table_end) / SECTION_HEADER_LEN as u64).unwrap_or(0);
    if room < new.len() {
        return Err(UkiError::NoHeaderRoom { room, needed: new.len() });
    }
    let new_table_end = table_end as usize + new.len() * SECTION_HEADER_LEN;
    let area = stub
        .get(table_end as usize..new_table_end)
        .ok_or(UkiError::NotPe { what: "stub", reason: "headers extend past the end of the file" })?;
    if !is_padding(area, table_end as usize) {
        return Err(UkiError::HeaderAreaInUse);
    }
    if existing.iter().any(|s| u64::from(s.raw_offset) + u64::from(s.raw_size) > stub.len() as u64) {
        return Err(UkiError::NotPe { what: "stub", reason: "section data past the end of the file" });
    }

    // Drop a COFF symbol (and string) table at the very end of the file, as ukify does.
    let mut out = stub.to_vec();
    let symtab = u64::from(u32_at(stub, h.coff + COFF_SYMTAB).unwrap_or(0));
    if symtab != 0 {
        let nsyms = u64::from(u32_at(stub, h.coff + COFF_NSYMS).unwrap_or(0));
        let strtab = symtab + SYMBOL_LEN * nsyms;
        let strtab_len = usize::try_from(strtab).ok().and_then(|o| u32_at(stub, o)).map_or(0, u64::from);
        if strtab + strtab_len == stub.len() as u64 && symtab >= table_end {
            out.truncate(symtab as usize);
            put_u32(&mut out, h.coff + COFF_SYMTAB, 0);
            put_u32(&mut out, h.coff + COFF_NSYMS, 0);
            let c = u16_at(&out, h.coff + COFF_CHARACTERISTICS).unwrap_or(0);
            put_u16(&mut out, h.coff + COFF_CHARACTERISTICS, c | IMAGE_FILE_LOCAL_SYMS_STRIPPED);
        }
    }

    let data_end = existing
        .iter()
        .map(|s| u64::from(s.raw_offset) + u64::from(s.raw_size))
        .chain([out.len() as u64])
        .max()
        .unwrap_or(0);
    let image_end = existing
        .iter()
        .map(|s| u64::from(s.virtual_address) + u64::from(s.virtual_size.max(s.raw_size)))
        .chain([u64::from(u32_at(stub, h.opt + OPT_SIZE_OF_IMAGE).unwrap_or(0))])
        .max()
        .unwrap_or(0);
    let total: u64 = new.iter().map(|(_, d)| round_up(d.len() as u64, file_align)).sum();
    out.resize(usize::try_from(round_up(data_end, file_align) + total).map_err(|_| UkiError::TooLarge)?, 0);

    let mut raw = round_up(data_end, file_align);
    let mut va = round_up(image_end, va_align);
    let mut size_of_code = u64::from(u32_at(stub, h.opt + OPT_SIZE_OF_CODE).unwrap_or(0));
    let mut size_of_data = u64::from(u32_at(stub, h.opt + OPT_SIZE_OF_INIT_DATA).unwrap_or(0));
    let mut image_size = 0;
    for (i, (name, data)) in new.iter().enumerate() {
        let len = data.len() as u64;
        let raw_len = round_up(len, file_align);
        let code = *name == ".linux";
        let flags = IMAGE_SCN_MEM_READ | if code { IMAGE_SCN_CNT_CODE } else { IMAGE_SCN_CNT_INITIALIZED_DATA };
        if code {
            size_of_code += len;
        } else {
            size_of_data += len;
        }
        let fits = |v: u64| u32::try_from(v).map_err(|_| UkiError::TooLarge);
        let mut hdr = [0u8; SECTION_HEADER_LEN];
        hdr[..name.len()].copy_from_slice(name.as_bytes());
        put_u32(&mut hdr, 8, fits(len)?);
        put_u32(&mut hdr, 12, fits(va)?);
        put_u32(&mut hdr, 16, fits(raw_len)?);
        put_u32(&mut hdr, 20, fits(raw)?);
        put_u32(&mut hdr, 36, flags);
        let at = table_end as usize + i * SECTION_HEADER_LEN;
        out[at..at + SECTION_HEADER_LEN].copy_from_slice(&hdr);
        out[raw as usize..raw as usize + data.len()].copy_from_slice(data);
        image_size = fits(round_up(va + len, section_align))?;
        raw += raw_len;
        va = round_up(va + len, va_align);
    }

    let count = u16::try_from(h.count + new.len()).map_err(|_| UkiError::NoHeaderRoom { room, needed: new.len() })?;
    put_u16(&mut out, h.coff + COFF_NSECTIONS, count);
    put_u32(&mut out, h.opt + OPT_SIZE_OF_CODE, u32::try_from(size_of_code).map_err(|_| UkiError::TooLarge)?);
    put_u32(&mut out, h.opt + OPT_SIZE_OF_INIT_DATA, u32::try_from(size_of_data).map_err(|_| UkiError::TooLarge)?);
    if image_size != 0 {
        put_u32(&mut out, h.opt + OPT_SIZE_OF_IMAGE, image_size);
    }
    put_u32(&mut out, h.opt + OPT_SIZE_OF_HEADERS, header_end as u32);
    let sum = pe_checksum(&out, h.opt + OPT_CHECKSUM);
    put_u32(&mut out, h.opt + OPT_CHECKSUM, sum);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal PE32+ image: headers in 0x400 bytes, one `.text` section of 0x200 bytes.
    fn tiny_pe(machine: u16, opt_size: u16) -> Vec<u8> {
        let mut b = vec![0u8; 0x600];
        b[..2].copy_from_slice(b"MZ");
        put_u32(&mut b, 0x3c, 0x40);
        b[0x40..0x44].copy_from_slice(b"PE\0\0");
        let coff = 0x44;
        put_u16(&mut b, coff + COFF_MACHINE, machine);
        put_u16(&mut b, coff + COFF_NSECTIONS, 1);
        put_u16(&mut b, coff + COFF_OPT_SIZE, opt_size);
        let opt = coff + COFF_LEN;
        put_u16(&mut b, opt + OPT_MAGIC, PE32_PLUS);
        put_u32(&mut b, opt + OPT_SECTION_ALIGN, 0x1000);
        put_u32(&mut b, opt + OPT_FILE_ALIGN, 0x200);
        put_u32(&mut b, opt + OPT_SIZE_OF_IMAGE, 0x2000);
        put_u32(&mut b, opt + OPT_SIZE_OF_HEADERS, 0x400);
        put_u32(&mut b, opt + OPT_NUM_DIRS, u32::from(opt_size - 112) / 8);
        let s = opt + usize::from(opt_size);
        b[s..s + 5].copy_from_slice(b".text");
        put_u32(&mut b, s + 8, 0x10);
        put_u32(&mut b, s + 12, 0x1000);
        put_u32(&mut b, s + 16, 0x200);
        put_u32(&mut b, s + 20, 0x400);
        put_u32(&mut b, s + 36, IMAGE_SCN_CNT_CODE | IMAGE_SCN_MEM_READ | 0x2000_0000);
        b[0x400..0x410].fill(0xcc);
        b
    }

    fn parts<'a>(linux: &'a [u8]) -> UkiParts<'a> {
        UkiParts { osrel: b"ID=keel\n", cmdline: b"console=ttyS0", uname: b"6.1.0", linux, initrd: b"070701..." }
    }

    #[test]
    fn sections_are_appended_in_order_and_aligned() {
        let stub = tiny_pe(0x8664, 240);
        let kernel = tiny_pe(0x8664, 240);
        let uki = build_uki(&stub, &parts(&kernel)).unwrap();
        let t = section_table(&uki).unwrap();
        let names: Vec<_> = t.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, [".text", ".osrel", ".cmdline", ".uname", ".initrd", ".linux"]);
        let mut prev_end = 0x1010;
        for s in &t[1..] {
            assert_eq!(s.virtual_address % 0x1000, 0, "{s:?}");
            assert_eq!(s.raw_offset % 0x200, 0, "{s:?}");
            assert_eq!(s.raw_size % 0x200, 0, "{s:?}");
            assert!(s.raw_size >= s.virtual_size, "{s:?}");
            assert!(s.virtual_address >= prev_end, "{s:?}");
            prev_end = s.virtual_address + s.virtual_size;
        }
        assert_eq!(section_data(&uki, ".osrel").unwrap(), b"ID=keel\n");
        assert_eq!(section_data(&uki, ".cmdline").unwrap(), b"console=ttyS0");
        assert_eq!(section_data(&uki, ".linux").unwrap(), &kernel[..]);
        assert_eq!(t[5].characteristics, IMAGE_SCN_CNT_CODE | IMAGE_SCN_MEM_READ);
        assert_eq!(t[1].characteristics, IMAGE_SCN_CNT_INITIALIZED_DATA | IMAGE_SCN_MEM_READ);
        let opt = 0x44 + COFF_LEN;
        let size_of_image = u32_at(&uki, opt + OPT_SIZE_OF_IMAGE).unwrap();
        assert_eq!(size_of_image, (prev_end + 0xfff) & !0xfff);
        assert_eq!(u32_at(&uki, opt + OPT_CHECKSUM).unwrap(), pe_checksum(&uki, opt + OPT_CHECKSUM));
        assert_eq!(build_uki(&stub, &parts(&kernel)).unwrap(), uki, "not deterministic");
    }

    #[test]
    fn empty_parts_get_no_section() {
        let stub = tiny_pe(0xAA64, 240);
        let kernel = tiny_pe(0xAA64, 240);
        let p = UkiParts { osrel: b"", cmdline: b"", uname: b"", linux: &kernel, initrd: b"" };
        let t = section_table(&build_uki(&stub, &p).unwrap()).unwrap();
        assert_eq!(t.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), [".text", ".linux"]);
    }

    #[test]
    fn refuses_bad_stubs() {
        let kernel = tiny_pe(0x8664, 240);
        assert!(matches!(build_uki(b"not a pe", &parts(&kernel)), Err(UkiError::NotPe { what: "stub", .. })));
        assert!(matches!(
            build_uki(&tiny_pe(0x14c, 240), &parts(&kernel)),
            Err(UkiError::UnsupportedMachine { what: "stub", machine: 0x14c })
        ));
        let mut pe32 = tiny_pe(0x8664, 240);
        put_u16(&mut pe32, 0x44 + COFF_LEN, 0x10b);
        assert!(matches!(build_uki(&pe32, &parts(&kernel)), Err(UkiError::NotPe32Plus { magic: 0x10b, .. })));
        let mut signed = tiny_pe(0x8664, 240);
        put_u32(&mut signed, 0x44 + COFF_LEN + OPT_DIRS + DIR_SECURITY * 8, 0x600);
        assert!(matches!(build_uki(&signed, &parts(&kernel)), Err(UkiError::Signed)));
        let mut has_linux = tiny_pe(0x8664, 240);
        has_linux[0x44 + COFF_LEN + 240..][..8].copy_from_slice(b".linux\0\0");
        assert!(matches!(build_uki(&has_linux, &parts(&kernel)), Err(UkiError::SectionExists(".linux"))));
        let mut truncated = tiny_pe(0x8664, 240);
        truncated.truncate(0x100);
        assert!(matches!(build_uki(&truncated, &parts(&kernel)), Err(UkiError::NotPe { .. })));
    }

    #[test]
    fn refuses_a_stub_without_header_room() {
        // Headers of 0x200 bytes: the table ends at 0x170, room for 3 more headers, 5 needed.
        let mut stub = tiny_pe(0x8664, 240);
        let opt = 0x44 + COFF_LEN;
        put_u32(&mut stub, opt + OPT_SIZE_OF_HEADERS, 0x200);
        put_u32(&mut stub, opt + 240 + 20, 0x200);
        let kernel = tiny_pe(0x8664, 240);
        let e = build_uki(&stub, &parts(&kernel)).unwrap_err();
        assert!(matches!(e, UkiError::NoHeaderRoom { room: 3, needed: 5 }), "{e}");
    }

    #[test]
    fn header_padding() {
        assert!(is_padding(&[0; 8], 0));
        assert!(is_padding(&[0x1f, 0x20, 0x03, 0xd5, 0, 0, 0, 0], 0x148));
        assert!(!is_padding(&[0x20, 0x03, 0xd5, 0x1f], 0x148));
        let mut stub = tiny_pe(0x8664, 240);
        stub[0x180] = 1;
        let kernel = tiny_pe(0x8664, 240);
        assert!(matches!(build_uki(&stub, &parts(&kernel)), Err(UkiError::HeaderAreaInUse)));
    }

    #[test]
    fn refuses_a_kernel_for_another_machine_or_compressed() {
        let stub = tiny_pe(0x8664, 240);
        let arm = tiny_pe(0xAA64, 240);
        let e = build_uki(&stub, &parts(&arm)).unwrap_err();
        assert_eq!(e.to_string(), "kernel is for aarch64 but the stub for x86_64");
        let gz = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0];
        assert!(matches!(build_uki(&stub, &parts(&gz)), Err(UkiError::NotPe { what: "kernel", .. })));
    }

    #[test]
    fn checksum_matches_the_reference_algorithm() {
        // Worked example: words 0x0201 + 0x0403 + 0x0005 (odd tail padded) = 0x0609, plus length 5.
        assert_eq!(pe_checksum(&[1, 2, 3, 4, 5], 100), 0x0609 + 5);
        // Carries fold back into the low 16 bits; the checksum field itself is skipped.
        assert_eq!(pe_checksum(&[0xff, 0xff, 0x02, 0x00, 0xaa, 0xbb, 0xcc, 0xdd], 4), 0x0002 + 8);
    }
}
