//! `[signing]`: the PEM key and certificate the UKI is signed with (Authenticode, see
//! `crate::sign`). Both paths are relative to the config file. Both files are read and checked
//! here, so `keel check` already says that a key is missing, not RSA, too small, or not the
//! certificate's. The key stays in memory: it is never written to the output, and no error
//! quotes it.

use std::path::PathBuf;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use toml::Spanned;

use super::schema::RawSigning;
use super::Validator;
use crate::sign::{key, SigningKey};

/// A validated `[signing]`.
#[derive(Debug, Clone)]
pub struct SigningConfig {
    /// The key file, resolved.
    pub key_path: PathBuf,
    /// The certificate file, resolved.
    pub cert_path: PathBuf,
    /// The key and its certificate, read and checked.
    pub key: Arc<SigningKey>,
    /// sha256 of the certificate (DER), lower-case hex: what `sha256sum` of its DER form and
    /// `openssl x509 -fingerprint -sha256` show.
    pub cert_sha256: String,
}

impl SigningConfig {
    /// How the build names the certificate: its common name and sha256.
    pub fn describe(&self) -> String {
        match &self.key.cert.common_name {
            Some(cn) => format!("CN={cn}, cert sha256 {}", self.cert_sha256),
            None => format!("cert sha256 {}", self.cert_sha256),
        }
    }
}

impl Validator<'_> {
    pub(super) fn signing(&mut self, raw: Spanned<RawSigning>) -> Option<SigningConfig> {
        let raw = raw.into_inner();
        let key_path = self.base.join(raw.key.get_ref());
        let cert_path = self.base.join(raw.cert.get_ref());
        let pair = self.signing_file(&raw.key, "signing.key", &key_path, key::read_key);
        let cert = self.signing_file(&raw.cert, "signing.cert", &cert_path, key::read_certificate);
        let key = match key::signing_key(pair?, cert?) {
            Ok(k) => k,
            Err(e) => {
                let msg = format!("{}: {e} ({})", cert_path.display(), key_path.display());
                self.err(&raw.cert.span(), "signing.cert", msg);
                return None;
            }
        };
        let cert_sha256 = hex::encode(Sha256::digest(&key.cert.der));
        Some(SigningConfig { key_path, cert_path, key: Arc::new(key), cert_sha256 })
    }

    /// Read `path` (the value of `key_name`) and parse it with `parse`; a problem is reported
    /// at the value.
    fn signing_file<T>(
        &mut self,
        value: &Spanned<String>,
        key_name: &str,
        path: &std::path::Path,
        parse: impl Fn(&[u8]) -> Result<T, key::KeyError>,
    ) -> Option<T> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                self.err(&value.span(), key_name, format!("cannot read {}: {e}", path.display()));
                return None;
            }
        };
        parse(&bytes).map_err(|e| self.err(&value.span(), key_name, format!("{}: {e}", path.display()))).ok()
    }
}
