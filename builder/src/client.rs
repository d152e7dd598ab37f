//! The API client: `keel ps`, `keel logs`, `keel restart|stop|start`, `keel events`, `keel
//! reboot`, `keel poweroff`, `keel metrics`. TLS 1.3 with this client's certificate, the server
//! checked against the identity's `ca.pem`; one request per connection.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use keel_net::http;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use serde_json::Value;

/// Where and who: `--endpoint HOST:PORT`, `--identity DIR`.
#[derive(Debug, Clone)]
pub struct Target {
    pub endpoint: String,
    pub identity: PathBuf,
}

/// A failed call, said plainly.
#[derive(Debug)]
pub struct ClientError(pub String);

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn err(s: impl Into<String>) -> ClientError {
    ClientError(s.into())
}

fn config(identity: &Path) -> Result<ClientConfig, ClientError> {
    let read = |name: &str| {
        let p = identity.join(name);
        std::fs::read(&p).map_err(|e| err(format!("identity {}: {e}", p.display())))
    };
    let (ca, cert, key) = (read("ca.pem")?, read("client.pem")?, read("client.key")?);
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&ca) {
        let c = c.map_err(|e| err(format!("ca.pem: {e}")))?;
        roots.add(c).map_err(|e| err(format!("ca.pem: {e}")))?;
    }
    let certs = CertificateDer::pem_slice_iter(&cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("client.pem: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(&key).map_err(|e| err(format!("client.key: {e}")))?;
    ClientConfig::builder_with_provider(keel_net::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| err(format!("TLS 1.3: {e}")))?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .map_err(|e| err(format!("client.pem/client.key: {e}")))
}

/// Say what a TLS or socket error means for the user.
fn explain(endpoint: &str, e: &io::Error) -> ClientError {
    let tls = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    match tls {
        Some(rustls::Error::AlertReceived(alert)) => err(format!(
            "{endpoint} refused this client's certificate ({alert:?}): is client.pem signed by the CA in the server's ca.pem?"
        )),
        Some(rustls::Error::InvalidCertificate(why)) => {
            err(format!("{endpoint}: the server's certificate is not trusted by this identity's ca.pem ({why:?})"))
        }
        Some(other) => err(format!("{endpoint}: TLS: {other}")),
        None => err(format!("{endpoint}: {e}")),
    }
}

/// Call `method path`: the answer's status; its body is handed to `body` (with the status) as it
/// arrives.
pub fn call(
    t: &Target,
    method: &str,
    path: &str,
    mut body: impl FnMut(u16, &[u8]) -> io::Result<()>,
) -> Result<u16, ClientError> {
    let config = Arc::new(config(&t.identity)?);
    let (host, _) =
        t.endpoint.rsplit_once(':').ok_or_else(|| err(format!("endpoint `{}` is not HOST:PORT", t.endpoint)))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name = ServerName::try_from(host.to_string()).map_err(|_| err(format!("`{host}` is not a host name")))?;
    let addr = t
        .endpoint
        .to_socket_addrs()
        .map_err(|e| err(format!("cannot resolve {}: {e}", t.endpoint)))?
        .next()
        .ok_or_else(|| err(format!("cannot resolve {}", t.endpoint)))?;
    let sock = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| err(format!("cannot reach {}: {e}", t.endpoint)))?;
    sock.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| err(e.to_string()))?;
    let conn = ClientConnection::new(config, name).map_err(|e| err(format!("TLS: {e}")))?;
    let mut tls = StreamOwned::new(conn, sock);
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: keel/{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    tls.write_all(request.as_bytes()).and_then(|()| tls.flush()).map_err(|e| explain(&t.endpoint, &e))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let (status, mut rest) = loop {
        let n = match tls.read(&mut chunk) {
            Ok(n) => n,
            Err(e) => return Err(explain(&t.endpoint, &e)),
        };
        if n == 0 {
            return Err(err(format!("{}: the connection closed before an answer", t.endpoint)));
        }
        buf.extend_from_slice(&chunk[..n]);
        match http::parse_response(&buf) {
            Ok(Some((r, len))) => break (r.status, buf.split_off(len)),
            Ok(None) => {}
            Err(e) => return Err(err(format!("{}: not an HTTP answer: {e}", t.endpoint))),
        }
    };
    loop {
        if !rest.is_empty() {
            body(status, &rest).map_err(|e| err(e.to_string()))?;
            rest.clear();
        }
        match tls.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => rest.extend_from_slice(&chunk[..n]),
            // The server may close without close_notify after a whole answer.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(explain(&t.endpoint, &e)),
        }
    }
    Ok(status)
}

/// The `error` (or `message`) of a JSON answer.
pub fn message(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    v.get("error")
        .or_else(|| v.get("message"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string())
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn mib(v: &Value) -> String {
    v.as_u64().map(|b| format!("{:.1}MiB", b as f64 / 1048576.0)).unwrap_or_else(|| "-".into())
}

/// `keel ps` as a table.
pub fn ps_table(list: &Value) -> String {
    let mut rows = vec![["NAME", "STATE", "PID", "RESTARTS", "HEALTH", "MEMORY", "CPU", "LAST EXIT"].map(String::from)];
    for c in list.as_array().into_iter().flatten() {
        rows.push([
            cell(&c["name"]),
            cell(&c["state"]),
            cell(&c["pid"]),
            cell(&c["restarts"]),
            cell(&c["health"]),
            mib(&c["memory_bytes"]),
            c["cpu_seconds"].as_f64().map(|s| format!("{s:.2}s")).unwrap_or_else(|| "-".into()),
            cell(&c["last_exit"]),
        ]);
    }
    table(&rows)
}

/// One event as a line.
pub fn event_line(e: &Value) -> String {
    format!("{}  {:<8} {}", cell(&e["time"]), cell(&e["kind"]), cell(&e["message"]))
}

fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ps_is_a_table() {
        let v: Value = serde_json::from_str(
            r#"[{"name":"web","state":"running","pid":12,"restarts":1,"health":null,"memory_bytes":1048576,"cpu_seconds":0.5,"last_exit":"exited with status 1"}]"#,
        )
        .unwrap();
        let t = ps_table(&v);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("NAME  STATE    PID  RESTARTS"), "{t}");
        assert!(lines[1].starts_with("web   running  12   1         -       1.0MiB  0.50s"), "{t}");
    }
}
