//! A tiny DER writer, for the few structures a signature needs, and a reader for the few a
//! certificate is read for (its issuer, serial number, subject and public key).
//!
//! Only definite lengths and single-byte tags (tag numbers below 31) exist here: everything
//! PKCS#7, Authenticode and an X.509 certificate's outer structure use.

/// `INTEGER`.
pub const INTEGER: u8 = 0x02;
/// `BIT STRING`.
pub const BIT_STRING: u8 = 0x03;
/// `OCTET STRING`.
pub const OCTET_STRING: u8 = 0x04;
/// `NULL`.
pub const NULL: u8 = 0x05;
/// `OBJECT IDENTIFIER`.
pub const OID: u8 = 0x06;
/// `SEQUENCE` (constructed).
pub const SEQUENCE: u8 = 0x30;
/// `SET` (constructed).
pub const SET: u8 = 0x31;

/// Context-specific tag `n`, constructed (`[n]` EXPLICIT, or IMPLICIT over a constructed type).
pub fn context(n: u8) -> u8 {
    0xa0 | n
}

/// Context-specific tag `n`, primitive (`[n]` IMPLICIT over a primitive type).
pub fn context_primitive(n: u8) -> u8 {
    0x80 | n
}

/// One TLV: `tag`, the definite length of `content`, `content`.
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// A constructed value of `tag` whose content is `parts`, concatenated in order.
pub fn cons(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    tlv(tag, &parts.concat())
}

/// `SEQUENCE { parts… }`.
pub fn seq(parts: &[&[u8]]) -> Vec<u8> {
    cons(SEQUENCE, parts)
}

/// `SET OF` with `tag` (`SET`, or `[0] IMPLICIT`): DER sorts the elements by their encodings.
pub fn set_of(tag: u8, elements: &[&[u8]]) -> Vec<u8> {
    let mut sorted = elements.to_vec();
    sorted.sort();
    cons(tag, &sorted)
}

/// `INTEGER` of a small non-negative value.
pub fn uint(v: u64) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count().min(7);
    let mut content = bytes[skip..].to_vec();
    if content[0] & 0x80 != 0 {
        content.insert(0, 0);
    }
    tlv(INTEGER, &content)
}

/// `OBJECT IDENTIFIER` from its arcs (at least two; the first two combined as X.690 says).
pub fn oid(arcs: &[u64]) -> Vec<u8> {
    let mut content = Vec::new();
    let first = arcs.first().copied().unwrap_or(0) * 40 + arcs.get(1).copied().unwrap_or(0);
    for arc in std::iter::once(first).chain(arcs.iter().skip(2).copied()) {
        let mut groups = vec![(arc & 0x7f) as u8];
        let mut rest = arc >> 7;
        while rest > 0 {
            groups.push(0x80 | (rest & 0x7f) as u8);
            rest >>= 7;
        }
        content.extend(groups.iter().rev());
    }
    tlv(OID, &content)
}

/// `OCTET STRING`.
pub fn octets(content: &[u8]) -> Vec<u8> {
    tlv(OCTET_STRING, content)
}

/// `NULL`.
pub fn null() -> Vec<u8> {
    tlv(NULL, &[])
}

/// Why DER could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DerError {
    /// The input ends inside a value.
    #[error("truncated DER")]
    Truncated,
    /// A length form DER does not allow (indefinite, non-minimal, or over 4 bytes).
    #[error("not DER: bad length")]
    BadLength,
    /// A tag other than the one the structure has here.
    #[error("not DER: expected tag {expected:#04x}, found {found:#04x}")]
    UnexpectedTag {
        /// The tag the structure has.
        expected: u8,
        /// The tag found.
        found: u8,
    },
    /// A multi-byte tag, which nothing read here uses.
    #[error("not DER: multi-byte tag")]
    LongTag,
}

/// One value read: its tag, its whole encoding and its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Value<'a> {
    /// The tag byte.
    pub tag: u8,
    /// Tag, length and content, as they are in the input.
    pub raw: &'a [u8],
    /// The content.
    pub content: &'a [u8],
}

/// Reads values one after another from a slice.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `input`.
    pub fn new(input: &'a [u8]) -> Reader<'a> {
        Reader { rest: input }
    }

    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The tag of the next value, if any.
    pub fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// The next value, whatever its tag.
    pub fn any(&mut self) -> Result<Value<'a>, DerError> {
        let input = self.rest;
        let tag = *input.first().ok_or(DerError::Truncated)?;
        if tag & 0x1f == 0x1f {
            return Err(DerError::LongTag);
        }
        let first = *input.get(1).ok_or(DerError::Truncated)?;
        let (len, header) = if first < 0x80 {
            (usize::from(first), 2)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 {
                return Err(DerError::BadLength);
            }
            let bytes = input.get(2..2 + n).ok_or(DerError::Truncated)?;
            if bytes[0] == 0 {
                return Err(DerError::BadLength);
            }
            let len = bytes.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            if len < 0x80 {
                return Err(DerError::BadLength);
            }
            (len, 2 + n)
        };
        let end = header.checked_add(len).ok_or(DerError::Truncated)?;
        let raw = input.get(..end).ok_or(DerError::Truncated)?;
        self.rest = &input[end..];
        Ok(Value { tag, raw, content: &raw[header..] })
    }

    /// The next value, which must have `tag`.
    pub fn expect(&mut self, tag: u8) -> Result<Value<'a>, DerError> {
        let v = self.any()?;
        if v.tag != tag {
            return Err(DerError::UnexpectedTag { expected: tag, found: v.tag });
        }
        Ok(v)
    }

    /// The next value if it has `tag`, else nothing (nothing is consumed).
    pub fn optional(&mut self, tag: u8) -> Result<Option<Value<'a>>, DerError> {
        if self.peek_tag() == Some(tag) {
            return self.expect(tag).map(Some);
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_use_the_shortest_form() {
        assert_eq!(tlv(OCTET_STRING, &[7; 3]), [0x04, 3, 7, 7, 7]);
        assert_eq!(&tlv(OCTET_STRING, &[0; 0x7f])[..2], [0x04, 0x7f]);
        assert_eq!(&tlv(OCTET_STRING, &[0; 0x80])[..3], [0x04, 0x81, 0x80]);
        assert_eq!(&tlv(OCTET_STRING, &[0; 0x100])[..4], [0x04, 0x82, 0x01, 0x00]);
        assert_eq!(&tlv(OCTET_STRING, &[0; 0x1_0000])[..5], [0x04, 0x83, 0x01, 0x00, 0x00]);
    }

    #[test]
    fn known_encodings() {
        // sha256, spcIndirectDataContext and rsaEncryption as every signed PE carries them.
        assert_eq!(oid(&[2, 16, 840, 1, 101, 3, 4, 2, 1]), hex::decode("0609608648016503040201").unwrap());
        assert_eq!(oid(&[1, 3, 6, 1, 4, 1, 311, 2, 1, 4]), hex::decode("060a2b060104018237020104").unwrap());
        assert_eq!(oid(&[1, 2, 840, 113549, 1, 1, 1]), hex::decode("06092a864886f70d010101").unwrap());
        assert_eq!(uint(0), [0x02, 1, 0]);
        assert_eq!(uint(1), [0x02, 1, 1]);
        assert_eq!(uint(0x80), [0x02, 2, 0, 0x80]);
        assert_eq!(uint(0x0200), [0x02, 2, 2, 0]);
        assert_eq!(null(), [0x05, 0]);
        assert_eq!(seq(&[&uint(1), &null()]), [0x30, 5, 0x02, 1, 1, 0x05, 0]);
    }

    #[test]
    fn set_of_sorts_its_elements() {
        let long = seq(&[&octets(&[1; 4])]);
        let short = seq(&[&octets(&[9])]);
        assert_eq!(set_of(SET, &[&long, &short]), cons(SET, &[&short, &long]));
        assert_eq!(set_of(context(0), &[&short, &long])[0], 0xa0);
    }

    #[test]
    fn reader_reads_what_the_writer_writes() {
        let inner = octets(&[5; 300]);
        let doc = seq(&[&uint(0x1234), &inner, &tlv(context(0), &null())]);
        let mut r = Reader::new(&doc);
        let s = r.expect(SEQUENCE).unwrap();
        assert!(r.is_empty());
        assert_eq!(s.raw, &doc[..]);
        let mut r = Reader::new(s.content);
        assert_eq!(r.expect(INTEGER).unwrap().content, [0x12, 0x34]);
        assert_eq!(r.optional(NULL).unwrap(), None);
        assert_eq!(r.expect(OCTET_STRING).unwrap().raw, &inner[..]);
        assert_eq!(r.optional(context(0)).unwrap().unwrap().content, null());
        assert!(r.is_empty());
    }

    #[test]
    fn reader_refuses_what_is_not_der() {
        assert_eq!(Reader::new(&[0x30]).any(), Err(DerError::Truncated));
        assert_eq!(Reader::new(&[0x30, 3, 1]).any(), Err(DerError::Truncated));
        assert_eq!(Reader::new(&[0x30, 0x80, 0, 0]).any(), Err(DerError::BadLength));
        assert_eq!(Reader::new(&[0x04, 0x81, 0x05, 0, 0, 0, 0, 0]).any(), Err(DerError::BadLength));
        assert_eq!(Reader::new(&[0x04, 0x82, 0x00, 0x80]).any(), Err(DerError::BadLength));
        assert_eq!(Reader::new(&[0x04, 0x85, 1, 1, 1, 1, 1]).any(), Err(DerError::BadLength));
        assert_eq!(Reader::new(&[0x1f, 0x81, 0]).any(), Err(DerError::LongTag));
        assert_eq!(
            Reader::new(&[0x02, 1, 0]).expect(SEQUENCE),
            Err(DerError::UnexpectedTag { expected: SEQUENCE, found: 0x02 })
        );
    }
}
