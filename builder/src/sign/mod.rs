//! Authenticode signing of the UKI, in-process: the PE image digest ([`pe`]), a PKCS#7
//! SignedData over it ([`pkcs7`], written with [`der`]), appended as a `WIN_CERTIFICATE`. The
//! key and certificate come from `[signing]` ([`key`]). The unsigned UKI is signed as the
//! last step of making it, so that removing the signature (`sbattach --remove`) gives back the
//! unsigned, reproducible UKI byte for byte.

pub mod der;
pub mod key;
pub mod pe;
pub mod pkcs7;

pub use key::SigningKey;

/// Why a UKI could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The image cannot be hashed or carry a signature.
    #[error("{0}")]
    Pe(#[from] pe::PeError),
    /// The RSA signature failed.
    #[error("{0}")]
    Rsa(#[from] pkcs7::SignError),
}

/// `unsigned` with an Authenticode signature by `key`. Same image and key, same bytes.
pub fn sign(unsigned: &[u8], key: &SigningKey) -> Result<Vec<u8>, SignError> {
    let mut out = unsigned.to_vec();
    pe::pad_for_certificate(&mut out);
    let digest = pe::authenticode_digest(&out)?;
    let signed_data = pkcs7::signed_data(&digest, key)?;
    pe::attach(&mut out, &signed_data)?;
    Ok(out)
}
