//! The signing key and certificate: read from PEM, checked to be RSA (2048 to 8192 bits) and
//! to belong together, and the certificate's issuer and serial number read out of its DER for
//! the SignerInfo. No error here quotes key material.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::der::{self, DerError, Reader};

/// rsaEncryption, 1.2.840.113549.1.1.1, as the DER content of its OID.
const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// id-at-commonName, 2.5.4.3.
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

/// Why the key or the certificate cannot sign.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// No private key in the PEM (or not PEM at all).
    #[error("no private key in PEM (want \"PRIVATE KEY\" or \"RSA PRIVATE KEY\")")]
    NoKey,
    /// An EC (SEC1) key.
    #[error("the key is an EC key; signing needs RSA (2048 bits or more)")]
    NotRsa,
    /// ring refused the key: too small, too large, not RSA, or badly encoded.
    #[error("the key cannot make RSA-2048+ SHA-256 signatures: {0}")]
    Rejected(String),
    /// No CERTIFICATE in the PEM (or not PEM at all).
    #[error("no CERTIFICATE in PEM")]
    NoCertificate,
    /// The certificate's structure could not be read.
    #[error("the certificate is not X.509 DER: {0}")]
    BadCertificate(DerError),
    /// The certificate's key is not RSA.
    #[error("the certificate's public key is not RSA")]
    CertificateNotRsa,
    /// The certificate is another key's.
    #[error("the certificate's public key is not the signing key's")]
    Mismatch,
}

impl From<DerError> for KeyError {
    fn from(e: DerError) -> Self {
        KeyError::BadCertificate(e)
    }
}

/// What the SignerInfo and the build's report need from the certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The whole certificate, DER.
    pub der: Vec<u8>,
    /// Its issuer Name, DER as in the certificate.
    pub issuer: Vec<u8>,
    /// Its serialNumber INTEGER, DER as in the certificate.
    pub serial: Vec<u8>,
    /// The subject's common name, if it has one as a string.
    pub common_name: Option<String>,
    /// The RSAPublicKey (PKCS#1) of its subjectPublicKeyInfo.
    pub rsa_public_key: Vec<u8>,
}

/// Read the first certificate of `der` (an X.509 Certificate, DER).
pub fn parse_certificate(cert: &[u8]) -> Result<CertInfo, KeyError> {
    let mut outer = Reader::new(cert);
    let certificate = outer.expect(der::SEQUENCE)?;
    let mut c = Reader::new(certificate.content);
    let tbs = c.expect(der::SEQUENCE)?;
    let mut t = Reader::new(tbs.content);
    t.optional(der::context(0))?; // version
    let serial = t.expect(der::INTEGER)?;
    t.expect(der::SEQUENCE)?; // signature algorithm
    let issuer = t.expect(der::SEQUENCE)?;
    t.expect(der::SEQUENCE)?; // validity
    let subject = t.expect(der::SEQUENCE)?;
    let spki = t.expect(der::SEQUENCE)?;
    let mut s = Reader::new(spki.content);
    let algorithm = s.expect(der::SEQUENCE)?;
    let algorithm_oid = Reader::new(algorithm.content).expect(der::OID)?;
    let key_bits = s.expect(der::BIT_STRING)?;
    if algorithm_oid.content != RSA_ENCRYPTION {
        return Err(KeyError::CertificateNotRsa);
    }
    let rsa_public_key = match key_bits.content.split_first() {
        Some((0, key)) => key.to_vec(),
        _ => return Err(KeyError::BadCertificate(DerError::Truncated)),
    };
    Ok(CertInfo {
        der: certificate.raw.to_vec(),
        issuer: issuer.raw.to_vec(),
        serial: serial.raw.to_vec(),
        common_name: common_name(subject.content),
        rsa_public_key,
    })
}

/// The first commonName of a Name's RDNSequence content, if it is a string.
fn common_name(name: &[u8]) -> Option<String> {
    let mut rdns = Reader::new(name);
    while !rdns.is_empty() {
        let rdn = rdns.expect(der::SET).ok()?;
        let mut atvs = Reader::new(rdn.content);
        while !atvs.is_empty() {
            let atv = atvs.expect(der::SEQUENCE).ok()?;
            let mut a = Reader::new(atv.content);
            if a.expect(der::OID).ok()?.content == COMMON_NAME {
                let value = a.any().ok()?;
                return std::str::from_utf8(value.content).ok().map(str::to_string);
            }
        }
    }
    None
}

/// A key that signs, with its certificate.
pub struct SigningKey {
    /// The RSA key pair.
    pub pair: ring::rsa::KeyPair,
    /// The certificate, checked to be the key's.
    pub cert: CertInfo,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("cert", &self.cert.common_name).finish_non_exhaustive()
    }
}

/// Read the private key in `pem`: PKCS#8 or PKCS#1, RSA of 2048 to 8192 bits.
pub fn read_key(pem: &[u8]) -> Result<ring::rsa::KeyPair, KeyError> {
    let reject = |e: ring::error::KeyRejected| {
        KeyError::Rejected(match e.to_string().as_str() {
            "WrongAlgorithm" => "it is not an RSA key".to_string(),
            "TooSmall" => "the RSA key is smaller than 2048 bits".to_string(),
            "TooLarge" => "the RSA key is larger than 8192 bits".to_string(),
            other => format!("ring refused it ({other})"),
        })
    };
    match PrivateKeyDer::from_pem_slice(pem).map_err(|_| KeyError::NoKey)? {
        PrivateKeyDer::Pkcs8(k) => ring::rsa::KeyPair::from_pkcs8(k.secret_pkcs8_der()).map_err(reject),
        PrivateKeyDer::Pkcs1(k) => ring::rsa::KeyPair::from_der(k.secret_pkcs1_der()).map_err(reject),
        PrivateKeyDer::Sec1(_) => Err(KeyError::NotRsa),
        _ => Err(KeyError::NoKey),
    }
}

/// Read the first certificate in `pem`.
pub fn read_certificate(pem: &[u8]) -> Result<CertInfo, KeyError> {
    let cert = CertificateDer::pem_slice_iter(pem)
        .next()
        .ok_or(KeyError::NoCertificate)?
        .map_err(|_| KeyError::NoCertificate)?;
    parse_certificate(&cert)
}

/// The key and certificate, checked to belong together.
pub fn signing_key(pair: ring::rsa::KeyPair, cert: CertInfo) -> Result<SigningKey, KeyError> {
    use ring::signature::KeyPair;
    if pair.public_key().as_ref() != cert.rsa_public_key.as_slice() {
        return Err(KeyError::Mismatch);
    }
    Ok(SigningKey { pair, cert })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/signing");
        std::fs::read(root.join(name)).unwrap()
    }

    #[test]
    fn the_test_key_and_certificate_belong_together() {
        let pair = read_key(&fixture("test-db.key")).unwrap();
        let cert = read_certificate(&fixture("test-db.pem")).unwrap();
        assert_eq!(cert.common_name.as_deref(), Some("keel test db"));
        assert_eq!(cert.serial[0], der::INTEGER);
        assert_eq!(cert.issuer[0], der::SEQUENCE);
        let key = signing_key(pair, cert).unwrap();
        assert_eq!(key.pair.public().modulus_len(), 256);
        assert!(!format!("{key:?}").contains("BEGIN"));
    }

    #[test]
    fn refuses_what_is_not_a_key_or_a_certificate() {
        assert_eq!(read_key(b"hello").unwrap_err(), KeyError::NoKey);
        assert_eq!(read_certificate(&fixture("test-db.key")).unwrap_err(), KeyError::NoCertificate);
        assert_eq!(read_key(&fixture("test-db.pem")).unwrap_err(), KeyError::NoKey);
        assert!(matches!(parse_certificate(&[0x30, 0x03, 0x02, 0x01, 0x01]), Err(KeyError::BadCertificate(_))));
    }
}
