//! `[api]`: where keel-init's mTLS HTTPS API listens and the directory of its TLS files.
//!
//! `tls` names a directory (relative to the config file) holding [`API_FILES`]: `ca.pem` (the CA
//! whose client certificates are accepted), `server.pem` (the server's certificate chain) and
//! `server.key` (its private key). Each is read and parsed here, so `keel check` already says
//! which one is missing or is not what it should be; the bytes go into the initramfs.

use std::net::SocketAddrV4;
use std::ops::Range;
use std::path::PathBuf;

use keel_plan::net::{Proto, Uplink, UplinkMode};
use keel_plan::API_FILES;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use toml::Spanned;

use super::schema::RawApi;
use super::{ContainerConfig, Validator};

/// The default `listen`.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:9443";

/// A validated `[api]`.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Address and port on the machine.
    pub listen: SocketAddrV4,
    /// The `tls` directory, resolved.
    pub tls: PathBuf,
    /// `(file name, bytes)` of each of [`API_FILES`], in that order.
    pub files: Vec<(&'static str, Vec<u8>)>,
}

impl Validator<'_> {
    pub(super) fn api(
        &mut self,
        raw: Spanned<RawApi>,
        uplink: &Uplink,
        containers: &[ContainerConfig],
    ) -> Option<ApiConfig> {
        let span = raw.span();
        let raw = raw.into_inner();
        let (listen_text, listen_span) = match &raw.listen {
            Some(l) => (l.get_ref().as_str(), l.span()),
            None => (DEFAULT_LISTEN, span.clone()),
        };
        let listen = match listen_text.parse::<SocketAddrV4>() {
            Ok(a) if a.port() == 0 => {
                self.err(&listen_span, "api.listen", "port 0 is not a port to listen on");
                None
            }
            Ok(a) => Some(a),
            Err(_) => {
                self.err(
                    &listen_span,
                    "api.listen",
                    format!("`{listen_text}` is not an IPv4 address and port, e.g. \"{DEFAULT_LISTEN}\""),
                );
                None
            }
        };
        if let Some(a) = listen {
            if uplink.mode == UplinkMode::None {
                self.err(
                    &listen_span,
                    "api.listen",
                    "the API listens on the uplink, but [host.network] mode is \"none\": nothing could reach it",
                );
            }
            for c in containers {
                for (p, _) in c.ports.iter().filter(|(p, _)| p.proto == Proto::Tcp && p.host == a.port()) {
                    self.err(
                        &listen_span,
                        "api.listen",
                        format!("port {}/tcp is also published by container `{}` (ports)", p.host, c.name),
                    );
                }
            }
        }
        let files = self.api_files(&raw.tls.span(), raw.tls.get_ref());
        Some(ApiConfig { listen: listen?, tls: self.base.join(raw.tls.get_ref()), files: files? })
    }

    /// Read and parse the TLS files of `dir` (relative to the config), each problem reported.
    fn api_files(&mut self, span: &Range<usize>, dir: &str) -> Option<Vec<(&'static str, Vec<u8>)>> {
        let path = self.base.join(dir);
        if !path.is_dir() {
            self.err(
                span,
                "api.tls",
                format!("{} is not a directory (it should hold {})", path.display(), API_FILES.join(", ")),
            );
            return None;
        }
        let mut out = Vec::new();
        let mut problems = Vec::new();
        for name in API_FILES {
            let file = path.join(name);
            let bytes = match std::fs::read(&file) {
                Ok(b) => b,
                Err(e) => {
                    problems.push(format!("cannot read {}: {e}", file.display()));
                    continue;
                }
            };
            let problem = if name.ends_with(".key") {
                PrivateKeyDer::from_pem_slice(&bytes).err().map(|e| format!("no private key in PEM: {e}"))
            } else {
                match CertificateDer::pem_slice_iter(&bytes).collect::<Result<Vec<_>, _>>() {
                    Ok(certs) if certs.is_empty() => Some("no CERTIFICATE in PEM".to_string()),
                    Ok(_) => None,
                    Err(e) => Some(format!("not PEM: {e}")),
                }
            };
            match problem {
                Some(p) => problems.push(format!("{}: {p}", file.display())),
                None => out.push((name, bytes)),
            }
        }
        if problems.is_empty() {
            // What keel-init will do with them at boot, so a key that is not the certificate's,
            // or an RSA one, is found here and not on the console.
            if let [(_, ca), (_, cert), (_, key)] = out.as_slice() {
                match keel_net::tls::server_config(ca, cert, key) {
                    Ok(_) => return Some(out),
                    Err(e) => problems.push(format!("{}: {e}", path.display())),
                }
            }
        }
        // One diagnostic for the directory, naming every file that is missing or wrong.
        self.err(span, "api.tls", problems.join("; "));
        None
    }
}
