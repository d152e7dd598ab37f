//! The PE side of Authenticode: the image digest, and the attribute certificate table that
//! carries the signature (PE/COFF specification, "The Attribute Certificate Table" and
//! "Calculating the PE Image Hash"; EDK2's `DxeImageVerificationLib` is the verifier that
//! matters for Secure Boot and hashes the same way).
//!
//! The digest covers the headers up to SizeOfHeaders without the CheckSum field and the
//! security directory entry, then each section's raw data in file order, then whatever the
//! file holds past the bytes hashed so far, up to the certificate table.

use sha2::{Digest, Sha256};

use crate::uki::{self, UkiError};

/// `WIN_CERT_REVISION_2_0`.
pub const WIN_CERT_REVISION_2_0: u16 = 0x0200;
/// `WIN_CERT_TYPE_PKCS_SIGNED_DATA`.
pub const WIN_CERT_TYPE_PKCS_SIGNED_DATA: u16 = 0x0002;
/// The attribute certificate table starts, and each entry is padded, to 8 bytes.
pub const CERT_ALIGN: usize = 8;

/// Why a PE image cannot be hashed or signed.
#[derive(Debug, thiserror::Error)]
pub enum PeError {
    /// Not a PE32+ image keel can read.
    #[error("{0}")]
    Pe(#[from] UkiError),
    /// Its optional header has no security directory.
    #[error("the image has no security data directory")]
    NoSecurityDirectory,
    /// It already carries a signature.
    #[error("the image is already signed")]
    AlreadySigned,
    /// A header or section reaches past the end of the file.
    #[error("the image's {0} reaches past the end of the file")]
    OutOfBounds(&'static str),
    /// The result would not fit PE's 32-bit offsets.
    #[error("the signed image would be larger than 4 GiB")]
    TooLarge,
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// The Authenticode SHA-256 digest of `pe` (signed or not: an existing certificate table is
/// left out).
pub fn authenticode_digest(pe: &[u8]) -> Result<[u8; 32], PeError> {
    let layout = uki::sign_layout(pe)?;
    let dir = layout.security_dir.ok_or(PeError::NoSecurityDirectory)?;
    let headers = layout.size_of_headers as usize;
    if headers > pe.len() || dir + 8 > headers || layout.checksum + 4 > dir {
        return Err(PeError::OutOfBounds("headers"));
    }
    let cert_size = u32_at(pe, dir + 4) as usize;
    let end = pe.len().checked_sub(cert_size).ok_or(PeError::OutOfBounds("certificate table"))?;
    let mut h = Sha256::new();
    h.update(&pe[..layout.checksum]);
    h.update(&pe[layout.checksum + 4..dir]);
    h.update(&pe[dir + 8..headers]);
    let mut sections: Vec<_> = layout.sections.iter().filter(|s| s.raw_size > 0).collect();
    sections.sort_by_key(|s| s.raw_offset);
    let mut hashed = headers;
    for s in sections {
        let start = s.raw_offset as usize;
        let data = start
            .checked_add(s.raw_size as usize)
            .and_then(|stop| pe.get(start..stop))
            .ok_or(PeError::OutOfBounds("section data"))?;
        h.update(data);
        hashed += data.len();
    }
    if end > hashed {
        h.update(&pe[hashed..end]);
    }
    Ok(h.finalize().into())
}

/// Pad `pe` with zeros to [`CERT_ALIGN`], where the certificate table will start. keel's UKIs
/// are FileAlignment multiples already, so this changes nothing for them.
pub fn pad_for_certificate(pe: &mut Vec<u8>) {
    pe.resize(pe.len().next_multiple_of(CERT_ALIGN), 0);
}

/// Append a `WIN_CERTIFICATE` holding `signed_data` (DER PKCS#7) to `pe` (padded by
/// [`pad_for_certificate`] before it was hashed), point the security directory at it and
/// recompute the checksum.
pub fn attach(pe: &mut Vec<u8>, signed_data: &[u8]) -> Result<(), PeError> {
    let layout = uki::sign_layout(pe)?;
    let dir = layout.security_dir.ok_or(PeError::NoSecurityDirectory)?;
    if u32_at(pe, dir) != 0 || u32_at(pe, dir + 4) != 0 {
        return Err(PeError::AlreadySigned);
    }
    pad_for_certificate(pe);
    let offset = u32::try_from(pe.len()).map_err(|_| PeError::TooLarge)?;
    let entry_len = (8 + signed_data.len()).next_multiple_of(CERT_ALIGN);
    let len = u32::try_from(entry_len).map_err(|_| PeError::TooLarge)?;
    offset.checked_add(len).ok_or(PeError::TooLarge)?;
    pe.extend_from_slice(&len.to_le_bytes());
    pe.extend_from_slice(&WIN_CERT_REVISION_2_0.to_le_bytes());
    pe.extend_from_slice(&WIN_CERT_TYPE_PKCS_SIGNED_DATA.to_le_bytes());
    pe.extend_from_slice(signed_data);
    pe.resize(offset as usize + entry_len, 0);
    pe[dir..dir + 4].copy_from_slice(&offset.to_le_bytes());
    pe[dir + 4..dir + 8].copy_from_slice(&len.to_le_bytes());
    let sum = uki::pe_checksum(pe, layout.checksum);
    pe[layout.checksum..layout.checksum + 4].copy_from_slice(&sum.to_le_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PE32+ image: headers in 0x400 bytes (checksum at 0x98, security directory at 0xb8),
    /// `.a` at 0x400 and `.b` at 0x600 (listed in the other order), 0x200 bytes each, and 0x10
    /// bytes after them.
    fn pe() -> Vec<u8> {
        let mut b = vec![0u8; 0x810];
        b[..2].copy_from_slice(b"MZ");
        b[0x3c] = 0x40;
        b[0x40..0x44].copy_from_slice(b"PE\0\0");
        b[0x44..0x46].copy_from_slice(&0x8664u16.to_le_bytes());
        b[0x46] = 2;
        b[0x54] = 240;
        let opt = 0x58;
        b[opt..opt + 2].copy_from_slice(&0x20bu16.to_le_bytes());
        b[opt + 60..opt + 64].copy_from_slice(&0x400u32.to_le_bytes());
        b[opt + 108] = 16;
        let sections = opt + 240;
        for (i, (name, raw)) in [(".b", 0x600u32), (".a", 0x400)].into_iter().enumerate() {
            let s = sections + i * 40;
            b[s..s + 2].copy_from_slice(name.as_bytes());
            b[s + 16..s + 20].copy_from_slice(&0x200u32.to_le_bytes());
            b[s + 20..s + 24].copy_from_slice(&raw.to_le_bytes());
        }
        for (i, x) in b.iter_mut().enumerate().skip(0x400) {
            *x = i as u8;
        }
        b
    }

    #[test]
    fn digest_skips_checksum_directory_and_certificate() {
        let b = pe();
        let (checksum, dir) = (0x58 + 64, 0x58 + 144);
        let mut want = Sha256::new();
        want.update(&b[..checksum]);
        want.update(&b[checksum + 4..dir]);
        want.update(&b[dir + 8..]);
        let want: [u8; 32] = want.finalize().into();
        assert_eq!(authenticode_digest(&b).unwrap(), want);

        // Neither the checksum nor a certificate table changes the digest.
        let mut signed = b.clone();
        attach(&mut signed, b"\x30\x03\x02\x01\x01").unwrap();
        assert_eq!(authenticode_digest(&signed).unwrap(), want);
        assert_ne!(signed[checksum..checksum + 4], [0; 4]);
        // Anything else does.
        let mut other = b.clone();
        other[0x500] ^= 1;
        assert_ne!(authenticode_digest(&other).unwrap(), want);
    }

    #[test]
    fn certificate_table_layout() {
        let mut b = pe();
        let unsigned_len = b.len();
        let sig = [0x30, 0x03, 0x02, 0x01, 0x01];
        attach(&mut b, &sig).unwrap();
        let dir = 0x58 + 144;
        assert_eq!(u32_at(&b, dir) as usize, unsigned_len);
        assert_eq!(u32_at(&b, dir + 4), 16);
        assert_eq!(b.len(), unsigned_len + 16);
        assert_eq!(&b[unsigned_len..], [16, 0, 0, 0, 0, 2, 2, 0, 0x30, 3, 2, 1, 1, 0, 0, 0]);
        assert_eq!(u32_at(&b, 0x58 + 64), uki::pe_checksum(&b, 0x58 + 64));
        assert!(matches!(attach(&mut b, &sig), Err(PeError::AlreadySigned)));
    }

    #[test]
    fn refuses_sections_past_the_end() {
        let mut b = pe();
        b.truncate(0x700);
        assert!(matches!(authenticode_digest(&b), Err(PeError::OutOfBounds("section data"))));
        assert!(matches!(authenticode_digest(b"MZ"), Err(PeError::Pe(_))));
    }
}
