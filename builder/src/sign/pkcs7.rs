//! The Authenticode PKCS#7 SignedData (version 1) over a PE image digest: content
//! SpcIndirectDataContent, one certificate, one SignerInfo with the signed attributes
//! contentType and messageDigest only (no signingTime, so the same image and key give the same
//! bytes), RSA PKCS#1 v1.5 with SHA-256.

use sha2::{Digest, Sha256};

use super::der::{self, context, context_primitive, octets, oid, seq, set_of, tlv, uint};
use super::key::SigningKey;

const SIGNED_DATA: &[u64] = &[1, 2, 840, 113549, 1, 7, 2];
const SHA256: &[u64] = &[2, 16, 840, 1, 101, 3, 4, 2, 1];
const RSA_ENCRYPTION: &[u64] = &[1, 2, 840, 113549, 1, 1, 1];
const CONTENT_TYPE: &[u64] = &[1, 2, 840, 113549, 1, 9, 3];
const MESSAGE_DIGEST: &[u64] = &[1, 2, 840, 113549, 1, 9, 4];
const SPC_INDIRECT_DATA: &[u64] = &[1, 3, 6, 1, 4, 1, 311, 2, 1, 4];
const SPC_PE_IMAGE_DATA: &[u64] = &[1, 3, 6, 1, 4, 1, 311, 2, 1, 15];

/// Why signing failed.
#[derive(Debug, thiserror::Error)]
#[error("RSA signing failed")]
pub struct SignError;

fn algorithm(arcs: &[u64]) -> Vec<u8> {
    seq(&[&oid(arcs), &der::null()])
}

/// SpcIndirectDataContent for a PE image with Authenticode digest `digest`, as signtool, sbsign
/// and osslsigncode write it: SpcPeImageData with no flags set and the file link
/// "<<<Obsolete>>>".
pub fn spc_indirect_data(digest: &[u8; 32]) -> Vec<u8> {
    let obsolete: Vec<u8> = "<<<Obsolete>>>".encode_utf16().flat_map(u16::to_be_bytes).collect();
    // SpcLink.file [2] { SpcString.unicode [0] IMPLICIT BMPString }
    let link = tlv(context(2), &tlv(context_primitive(0), &obsolete));
    let pe_image_data = seq(&[&tlv(der::BIT_STRING, &[0]), &tlv(context(0), &link)]);
    let data = seq(&[&oid(SPC_PE_IMAGE_DATA), &pe_image_data]);
    let digest_info = seq(&[&algorithm(SHA256), &octets(digest)]);
    seq(&[&data, &digest_info])
}

/// The DER ContentInfo (SignedData) that signs the PE image whose Authenticode digest is
/// `digest`.
pub fn signed_data(digest: &[u8; 32], key: &SigningKey) -> Result<Vec<u8>, SignError> {
    let content = spc_indirect_data(digest);
    // The messageDigest covers the content's value without its SEQUENCE tag and length.
    let content_value = der::Reader::new(&content).expect(der::SEQUENCE).map_err(|_| SignError)?.content;
    let content_digest = Sha256::digest(content_value);
    let content_type = seq(&[&oid(CONTENT_TYPE), &set_of(der::SET, &[&oid(SPC_INDIRECT_DATA)])]);
    let message_digest = seq(&[&oid(MESSAGE_DIGEST), &set_of(der::SET, &[&octets(&content_digest)])]);
    let attributes: [&[u8]; 2] = [&content_type, &message_digest];
    // What is signed is the attributes as a SET OF; they are carried as [0] IMPLICIT.
    let to_sign = set_of(der::SET, &attributes);
    let mut signature = vec![0u8; key.pair.public().modulus_len()];
    let rng = ring::rand::SystemRandom::new();
    key.pair.sign(&ring::signature::RSA_PKCS1_SHA256, &rng, &to_sign, &mut signature).map_err(|_| SignError)?;
    let signer_info = seq(&[
        &uint(1),
        &seq(&[&key.cert.issuer, &key.cert.serial]),
        &algorithm(SHA256),
        &set_of(context(0), &attributes),
        &algorithm(RSA_ENCRYPTION),
        &octets(&signature),
    ]);
    let signed = seq(&[
        &uint(1),
        &set_of(der::SET, &[&algorithm(SHA256)]),
        &seq(&[&oid(SPC_INDIRECT_DATA), &tlv(context(0), &content)]),
        &tlv(context(0), &key.cert.der),
        &set_of(der::SET, &[&signer_info]),
    ]);
    Ok(seq(&[&oid(SIGNED_DATA), &tlv(context(0), &signed)]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spc_indirect_data_is_what_sbsign_writes() {
        // sbsign 0.9.4's SpcIndirectDataContent for keel's x86_64 hello UKI, its digest zeroed.
        let want = "30683033060a2b06010401823702010f3025030100a020a21e801c003c003c003c004f00620073006f006c\
                    006500740065003e003e003e3031300d060960864801650304020105000420";
        assert_eq!(hex::encode(spc_indirect_data(&[0; 32])), format!("{want}{}", "00".repeat(32)));
    }
}
