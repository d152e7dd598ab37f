//! The API's TLS policy, shared by keel-init's server, `keel check` and the `keel` client: TLS 1.3
//! only, client certificates required, and only elliptic-curve keys (ECDSA P-256/P-384 and
//! Ed25519) for the CA, the server and the clients.
//!
//! RSA is left out on purpose: its signing and verification code is the largest part of ring
//! that rustls would link, keel-init has a 2 MiB budget, and an mTLS API keel's operators set up
//! for themselves has no legacy clients to serve (Talos' API makes the same choice).

use std::sync::Arc;

use rustls::crypto::ring::{cipher_suite, kx_group, sign};
use rustls::crypto::{CryptoProvider, GetRandomFailed, KeyProvider, SecureRandom, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::SigningKey;
use rustls::{RootCertStore, ServerConfig, SignatureScheme};
use webpki::ring as alg;

/// Certificate and handshake signatures accepted: ECDSA on P-256 and P-384, and Ed25519.
static SIGNATURES: WebPkiSupportedAlgorithms = WebPkiSupportedAlgorithms {
    all: &[
        alg::ECDSA_P256_SHA256,
        alg::ECDSA_P256_SHA384,
        alg::ECDSA_P384_SHA256,
        alg::ECDSA_P384_SHA384,
        alg::ED25519,
    ],
    mapping: &[
        (SignatureScheme::ECDSA_NISTP384_SHA384, &[alg::ECDSA_P384_SHA384, alg::ECDSA_P256_SHA384]),
        (SignatureScheme::ECDSA_NISTP256_SHA256, &[alg::ECDSA_P256_SHA256, alg::ECDSA_P384_SHA256]),
        (SignatureScheme::ED25519, &[alg::ED25519]),
    ],
};

/// Private keys: ECDSA (PKCS#8 or SEC1) or Ed25519 (PKCS#8).
#[derive(Debug)]
struct EcKeys;

impl KeyProvider for EcKeys {
    fn load_private_key(&self, der: PrivateKeyDer<'static>) -> Result<Arc<dyn SigningKey>, rustls::Error> {
        if let Ok(k) = sign::any_ecdsa_type(&der) {
            return Ok(k);
        }
        if let PrivateKeyDer::Pkcs8(p) = &der {
            if let Ok(k) = sign::any_eddsa_type(p) {
                return Ok(k);
            }
        }
        Err(rustls::Error::General("the key is not ECDSA (P-256, P-384) or Ed25519; keel's API takes no RSA".into()))
    }
}

/// The kernel's random bytes, through ring.
#[derive(Debug)]
struct Random;

impl SecureRandom for Random {
    fn fill(&self, buf: &mut [u8]) -> Result<(), GetRandomFailed> {
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), buf).map_err(|_| GetRandomFailed)
    }
}

/// The provider for both ends: the AES-GCM TLS 1.3 suites (AES-128-GCM is the one every TLS 1.3
/// peer must have; ChaCha20 is left out for size), X25519 and the NIST curves for key exchange,
/// [`SIGNATURES`] and elliptic-curve keys.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(CryptoProvider {
        cipher_suites: vec![cipher_suite::TLS13_AES_128_GCM_SHA256, cipher_suite::TLS13_AES_256_GCM_SHA384],
        kx_groups: vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1],
        signature_verification_algorithms: SIGNATURES,
        secure_random: &Random,
        key_provider: &EcKeys,
    })
}

/// The server's configuration from the PEM bytes of `ca.pem`, `server.pem` and `server.key`.
/// The error names the file at fault.
pub fn server_config(ca: &[u8], cert: &[u8], key: &[u8]) -> Result<ServerConfig, String> {
    let provider = provider();
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca) {
        let c = c.map_err(|e| format!("ca.pem: {e}"))?;
        roots.add(c).map_err(|e| format!("ca.pem: {e}"))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
        .build()
        .map_err(|e| format!("ca.pem: {e}"))?;
    let certs =
        CertificateDer::pem_slice_iter(cert).collect::<Result<Vec<_>, _>>().map_err(|e| format!("server.pem: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("server.key: {e}"))?;
    // Said apart, so an RSA key is named as such; with_single_cert then checks that the key is
    // the certificate's.
    provider.key_provider.load_private_key(key.clone_key()).map_err(|e| match e {
        rustls::Error::General(why) => format!("server.key: {why}"),
        e => format!("server.key: {e}"),
    })?;
    let first = certs.first().ok_or("server.pem: no CERTIFICATE")?;
    webpki::EndEntityCert::try_from(first).map_err(|e| match e {
        webpki::Error::UnsupportedCertVersion => {
            "server.pem: an X.509 v1 certificate; sign it with extensions (e.g. subjectAltName) to make it v3"
                .to_string()
        }
        e => format!("server.pem: {e:?}"),
    })?;
    ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| format!("TLS 1.3: {e}"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                "server.key is not the key of server.pem's first certificate".to_string()
            }
            e => format!("server.pem/server.key: {e}"),
        })
}
