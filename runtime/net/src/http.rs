//! A small, bounded HTTP/1.1 head parser: the request heads keel-init's API reads and the
//! response heads the `keel` client reads. Pure (bytes in, values out), never panics, and
//! refuses anything outside its bounds instead of growing: a head is at most [`MAX_HEAD`] bytes
//! with at most [`MAX_HEADERS`] fields, a request target at most [`MAX_TARGET`] bytes. Bodies
//! are framed by `Content-Length` only (no chunked transfer coding), bounded by the caller.

use thiserror::Error;

/// Longest head (request or status line, fields, the blank line).
pub const MAX_HEAD: usize = 8 * 1024;
/// Most header fields in one head.
pub const MAX_HEADERS: usize = 32;
/// Longest request target (path and query).
pub const MAX_TARGET: usize = 1024;
/// Longest method name.
const MAX_METHOD: usize = 16;

/// Why a head was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HttpError {
    /// No end of head within [`MAX_HEAD`] bytes.
    #[error("head longer than {MAX_HEAD} bytes")]
    HeadTooLarge,
    /// More than [`MAX_HEADERS`] fields.
    #[error("more than {MAX_HEADERS} header fields")]
    TooManyHeaders,
    /// Not HTTP/1.x.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// A request with `Transfer-Encoding` (keel reads `Content-Length` bodies only).
    #[error("transfer codings are not supported")]
    TransferEncoding,
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query's `key=value` pairs, in order (not percent-decoded).
    pub query: Vec<(String, String)>,
    /// Header fields, names in lower case.
    pub headers: Vec<(String, String)>,
    /// `Content-Length`, 0 without one.
    pub content_length: u64,
}

impl Request {
    /// The first query value of `key`.
    pub fn query(&self, key: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header fields, names in lower case.
    pub headers: Vec<(String, String)>,
}

impl Response {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// The length of the head at the start of `buf` (through its blank line), `None` while it is
/// incomplete, an error once it cannot fit in [`MAX_HEAD`].
fn head_len(buf: &[u8]) -> Result<Option<usize>, HttpError> {
    let window = buf.get(..buf.len().min(MAX_HEAD)).unwrap_or_default();
    match window.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => Ok(Some(i + 4)),
        None if buf.len() >= MAX_HEAD => Err(HttpError::HeadTooLarge),
        None => Ok(None),
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The lines of a head (without the final blank line), as UTF-8.
fn lines(head: &[u8]) -> Result<Vec<&str>, HttpError> {
    let text = std::str::from_utf8(head).map_err(|_| HttpError::Malformed("head (not UTF-8)"))?;
    let text = text.strip_suffix("\r\n\r\n").ok_or(HttpError::Malformed("head"))?;
    Ok(text.split("\r\n").collect())
}

/// The header fields of `lines`, names lower-cased.
fn fields(lines: &[&str]) -> Result<Vec<(String, String)>, HttpError> {
    if lines.len() > MAX_HEADERS {
        return Err(HttpError::TooManyHeaders);
    }
    let mut out = Vec::with_capacity(lines.len());
    for line in lines {
        let (name, value) = line.split_once(':').ok_or(HttpError::Malformed("header field"))?;
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return Err(HttpError::Malformed("header name"));
        }
        if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
            return Err(HttpError::Malformed("header value"));
        }
        out.push((name.to_ascii_lowercase(), value.trim_matches([' ', '\t']).to_string()));
    }
    Ok(out)
}

fn content_length(headers: &[(String, String)]) -> Result<u64, HttpError> {
    let mut found: Option<u64> = None;
    for (_, v) in headers.iter().filter(|(k, _)| k == "content-length") {
        if v.is_empty() || v.len() > 19 || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(HttpError::Malformed("Content-Length"));
        }
        let n = v.parse::<u64>().map_err(|_| HttpError::Malformed("Content-Length"))?;
        if found.is_some_and(|f| f != n) {
            return Err(HttpError::Malformed("Content-Length (two values)"));
        }
        found = Some(n);
    }
    Ok(found.unwrap_or(0))
}

/// Parse the request head at the start of `buf`: `Ok(None)` while more bytes are needed, else
/// the request and the head's length (the body, if any, follows).
pub fn parse_request(buf: &[u8]) -> Result<Option<(Request, usize)>, HttpError> {
    let Some(len) = head_len(buf)? else { return Ok(None) };
    let lines = lines(buf.get(..len).unwrap_or_default())?;
    let (first, rest) = lines.split_first().ok_or(HttpError::Malformed("request line"))?;
    let mut parts = first.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::Malformed("request line"));
    };
    if method.is_empty() || method.len() > MAX_METHOD || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(HttpError::Malformed("method"));
    }
    if !matches!(version, "HTTP/1.1" | "HTTP/1.0") {
        return Err(HttpError::Malformed("HTTP version"));
    }
    if !target.starts_with('/') || target.len() > MAX_TARGET || !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(HttpError::Malformed("request target"));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query = query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k.to_string(), v.to_string())
        })
        .collect();
    let headers = fields(rest)?;
    if headers.iter().any(|(k, _)| k == "transfer-encoding") {
        return Err(HttpError::TransferEncoding);
    }
    let content_length = content_length(&headers)?;
    Ok(Some((Request { method: method.to_string(), path: path.to_string(), query, headers, content_length }, len)))
}

/// Parse the response head at the start of `buf`: `Ok(None)` while more bytes are needed, else
/// the response and the head's length (the body follows).
pub fn parse_response(buf: &[u8]) -> Result<Option<(Response, usize)>, HttpError> {
    let Some(len) = head_len(buf)? else { return Ok(None) };
    let lines = lines(buf.get(..len).unwrap_or_default())?;
    let (first, rest) = lines.split_first().ok_or(HttpError::Malformed("status line"))?;
    let mut parts = first.splitn(3, ' ');
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return Err(HttpError::Malformed("status line"));
    };
    if !version.starts_with("HTTP/1.") || code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HttpError::Malformed("status line"));
    }
    let status = code.parse().map_err(|_| HttpError::Malformed("status code"))?;
    Ok(Some((Response { status, headers: fields(rest)? }, len)))
}

/// The reason phrase keel uses for `status`.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_head_is_parsed() {
        let buf = b"GET /v1/containers/web/logs?tail=5&follow=1 HTTP/1.1\r\nHost: x\r\nUser-Agent:  curl \r\n\r\nrest";
        let (r, len) = parse_request(buf).unwrap().unwrap();
        assert_eq!(len, buf.len() - 4);
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/v1/containers/web/logs");
        assert_eq!(r.query("tail"), Some("5"));
        assert_eq!(r.query("follow"), Some("1"));
        assert_eq!(r.headers[1], ("user-agent".into(), "curl".into()));
        assert_eq!(r.content_length, 0);
    }

    #[test]
    fn partial_heads_wait_and_oversized_ones_are_refused() {
        assert_eq!(parse_request(b"GET / HTTP/1.1\r\nHost: x\r\n"), Ok(None));
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_HEAD, b'a');
        assert_eq!(parse_request(&big), Err(HttpError::HeadTooLarge));
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: 1\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse_request(&many), Err(HttpError::TooManyHeaders));
    }

    #[test]
    fn malformed_heads_are_refused() {
        for bad in [
            &b"\x16\x03\x01\x02\x00\r\n\r\n"[..],
            b"get / HTTP/1.1\r\n\r\n",
            b"GET  / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/2\r\n\r\n",
            b"GET x HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nNo colon\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Name: 1\r\n\r\n",
        ] {
            assert!(matches!(parse_request(bad), Err(HttpError::Malformed(_))), "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(
            parse_request(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(HttpError::TransferEncoding)
        );
    }

    #[test]
    fn a_response_head_is_parsed() {
        let (r, len) =
            parse_response(b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n\r\n{}").unwrap().unwrap();
        assert_eq!((r.status, len), (404, 58));
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert!(parse_response(b"HTTP/1.1 20 OK\r\n\r\n").is_err());
    }
}
