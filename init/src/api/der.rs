//! Just enough DER to name a client: the subject of an X.509 certificate as `CN=…,O=…`, for the
//! audit log. The certificate was verified by rustls first; this never panics on any input.

/// One TLV: tag, contents, the rest after it.
fn tlv(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = data.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let bytes = rest.get(..n)?;
        (bytes.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b)), rest.get(n..)?)
    };
    Some((tag, rest.get(..len)?, rest.get(len..)?))
}

/// Short names of the attribute types worth showing (OID 2.5.4.x).
fn attribute(oid: &[u8]) -> Option<&'static str> {
    match oid {
        [0x55, 0x04, 0x03] => Some("CN"),
        [0x55, 0x04, 0x0a] => Some("O"),
        [0x55, 0x04, 0x0b] => Some("OU"),
        [0x55, 0x04, 0x06] => Some("C"),
        _ => None,
    }
}

/// The subject of certificate `der`, e.g. `CN=ops,O=example`; `None` if it cannot be read.
pub fn subject(der: &[u8]) -> Option<String> {
    let (_, cert, _) = tlv(der)?;
    let (_, tbs, _) = tlv(cert)?;
    let mut rest = tbs;
    // [0] version (optional), serial, signature algorithm, issuer, validity, subject.
    let (tag, _, after) = tlv(rest)?;
    if tag == 0xa0 {
        rest = after;
    }
    for _ in 0..4 {
        rest = tlv(rest)?.2;
    }
    let (_, mut names, _) = tlv(rest)?;
    let mut parts = Vec::new();
    while !names.is_empty() {
        let (_, set, next) = tlv(names)?;
        names = next;
        let (_, pair, _) = tlv(set)?;
        let (_, oid, value) = tlv(pair)?;
        let (_, text, _) = tlv(value)?;
        if let Some(short) = attribute(oid) {
            let text: String = String::from_utf8_lossy(text).chars().filter(|c| !c.is_control()).take(128).collect();
            parts.push(format!("{short}={text}"));
        }
    }
    Some(parts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_no_subject() {
        assert_eq!(subject(b""), None);
        assert_eq!(subject(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(subject(&[0x30, 0x03, 0x30, 0x01]), None);
    }

    #[test]
    fn a_subject_is_read() {
        // tbs: [0]{INT 2}, INT 1, SEQ{}, SEQ{} (issuer), SEQ{} (validity), subject SEQ{SET{SEQ{OID CN, UTF8 "ops"}}}
        let name = [0x31, 0x0c, 0x30, 0x0a, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x03, b'o', b'p', b's'];
        let mut tbs = vec![0xa0, 0x03, 0x02, 0x01, 0x02, 0x02, 0x01, 0x01, 0x30, 0x00, 0x30, 0x00, 0x30, 0x00];
        tbs.push(0x30);
        tbs.push(name.len() as u8);
        tbs.extend_from_slice(&name);
        let mut seq_tbs = vec![0x30, tbs.len() as u8];
        seq_tbs.extend_from_slice(&tbs);
        let mut cert = vec![0x30, seq_tbs.len() as u8];
        cert.extend_from_slice(&seq_tbs);
        assert_eq!(subject(&cert).as_deref(), Some("CN=ops"));
    }
}
