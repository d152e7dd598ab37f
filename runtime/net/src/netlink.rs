//! Netlink framing shared by rtnetlink and nfnetlink: building messages (`nlmsghdr`, a family
//! header, attributes, nested attributes, all 4-byte aligned) and reading the kernel's replies.
//!
//! Pure: no system calls. The readers never panic: every length is checked against the bytes
//! actually there, and a message or attribute that does not fit is a [`Malformed`] error.

use std::fmt;

/// Size of `struct nlmsghdr`.
pub const NLMSG_HDRLEN: usize = 16;
/// Size of `struct nlattr` (alias `struct rtattr`).
pub const NLA_HDRLEN: usize = 4;

/// `NLM_F_REQUEST`: a request to the kernel.
pub const NLM_F_REQUEST: u16 = 0x1;
/// `NLM_F_MULTI`: part of a multipart reply, ended by [`NLMSG_DONE`].
pub const NLM_F_MULTI: u16 = 0x2;
/// `NLM_F_ACK`: answer with an [`NLMSG_ERROR`] carrying 0 on success.
pub const NLM_F_ACK: u16 = 0x4;
/// `NLM_F_DUMP_INTR`: the dump changed while it was read; it may be inconsistent.
pub const NLM_F_DUMP_INTR: u16 = 0x10;
/// `NLM_F_DUMP` (`NLM_F_ROOT | NLM_F_MATCH`): return every object.
pub const NLM_F_DUMP: u16 = 0x300;
/// `NLM_F_REPLACE`: replace an existing object.
pub const NLM_F_REPLACE: u16 = 0x100;
/// `NLM_F_EXCL`: fail if the object exists.
pub const NLM_F_EXCL: u16 = 0x200;
/// `NLM_F_CREATE`: create the object if it does not exist.
pub const NLM_F_CREATE: u16 = 0x400;
/// `NLM_F_APPEND`: add to the end of a list (nf_tables rules).
pub const NLM_F_APPEND: u16 = 0x800;
/// `NLM_F_CAPPED` (on an [`NLMSG_ERROR`]): the original request's payload was left out.
const NLM_F_CAPPED: u16 = 0x100;
/// `NLM_F_ACK_TLVS` (on an [`NLMSG_ERROR`]): extended-ack attributes follow.
const NLM_F_ACK_TLVS: u16 = 0x200;

/// `NLMSG_NOOP`: nothing; skip it.
pub const NLMSG_NOOP: u16 = 1;
/// `NLMSG_ERROR`: an error, or an acknowledgement when its error is 0.
pub const NLMSG_ERROR: u16 = 2;
/// `NLMSG_DONE`: end of a multipart reply.
pub const NLMSG_DONE: u16 = 3;
/// `NLMSG_OVERRUN`: data was lost.
pub const NLMSG_OVERRUN: u16 = 4;

/// `NLA_F_NESTED`: the attribute holds attributes (nf_tables sets it on every nest).
pub const NLA_F_NESTED: u16 = 0x8000;
/// `NLA_F_NET_BYTEORDER`: the payload is big-endian.
pub const NLA_F_NET_BYTEORDER: u16 = 0x4000;
/// Mask of the attribute type without the two flags.
pub const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | NLA_F_NET_BYTEORDER);

/// `NLMSGERR_ATTR_MSG`: the extended ack's human-readable message.
const NLMSGERR_ATTR_MSG: u16 = 1;

/// Round up to the 4-byte netlink alignment.
pub const fn align(len: usize) -> usize {
    (len + 3) & !3
}

/// Bytes the kernel sent that do not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Malformed {}

fn put_u16(buf: &mut [u8], at: usize, value: u16) {
    if let Some(slot) = buf.get_mut(at..at + 2) {
        slot.copy_from_slice(&value.to_ne_bytes());
    }
}

fn put_u32(buf: &mut [u8], at: usize, value: u32) {
    if let Some(slot) = buf.get_mut(at..at + 4) {
        slot.copy_from_slice(&value.to_ne_bytes());
    }
}

fn get_u16(buf: &[u8], at: usize) -> Option<u16> {
    buf.get(at..at + 2)?.try_into().ok().map(u16::from_ne_bytes)
}

fn get_u32(buf: &[u8], at: usize) -> Option<u32> {
    buf.get(at..at + 4)?.try_into().ok().map(u32::from_ne_bytes)
}

fn pad(buf: &mut Vec<u8>) {
    buf.resize(align(buf.len()), 0);
}

/// Appends one netlink message to a buffer (which may already hold others, as in a batch).
///
/// The header's length is kept up to date after every append, so the message is complete
/// whenever the writer is dropped. A nest or attribute longer than 65535 bytes cannot be
/// encoded; its length saturates and the kernel rejects the message.
#[derive(Debug)]
pub struct Writer<'a> {
    buf: &'a mut Vec<u8>,
    start: usize,
}

/// An open nested attribute, closed by [`Writer::end_nest`].
#[derive(Debug)]
#[must_use = "a nest must be closed with Writer::end_nest"]
pub struct Nest(usize);

impl<'a> Writer<'a> {
    /// Start a message of type `ty` with `flags` and sequence number `seq` at the end of `buf`
    /// (port id 0: the kernel fills in the sender's).
    pub fn new(buf: &'a mut Vec<u8>, ty: u16, flags: u16, seq: u32) -> Writer<'a> {
        pad(buf);
        let start = buf.len();
        buf.extend_from_slice(&[0; NLMSG_HDRLEN]);
        put_u16(buf, start + 4, ty);
        put_u16(buf, start + 6, flags);
        put_u32(buf, start + 8, seq);
        let mut w = Writer { buf, start };
        w.update_len();
        w
    }

    fn update_len(&mut self) {
        let len = u32::try_from(self.buf.len() - self.start).unwrap_or(u32::MAX);
        put_u32(self.buf, self.start, len);
    }

    /// Append a fixed family header (`ifinfomsg`, `nfgenmsg`, …), padded to 4 bytes.
    pub fn header(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        pad(self.buf);
        self.update_len();
    }

    /// Append attribute `ty` holding `data` (its length excludes the trailing padding).
    pub fn attr(&mut self, ty: u16, data: &[u8]) {
        let len = u16::try_from(NLA_HDRLEN + data.len()).unwrap_or(u16::MAX);
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        pad(self.buf);
        self.update_len();
    }

    /// A one-byte attribute.
    pub fn attr_u8(&mut self, ty: u16, value: u8) {
        self.attr(ty, &[value]);
    }

    /// A native-endian u32 attribute (rtnetlink's `NLA_U32`).
    pub fn attr_u32(&mut self, ty: u16, value: u32) {
        self.attr(ty, &value.to_ne_bytes());
    }

    /// A big-endian u32 attribute (nf_tables' numbers).
    pub fn attr_be32(&mut self, ty: u16, value: u32) {
        self.attr(ty, &value.to_be_bytes());
    }

    /// A NUL-terminated string attribute.
    pub fn attr_str(&mut self, ty: u16, value: &str) {
        let len = u16::try_from(NLA_HDRLEN + value.len() + 1).unwrap_or(u16::MAX);
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(value.as_bytes());
        self.buf.push(0);
        pad(self.buf);
        self.update_len();
    }

    /// Open a nested attribute of type `ty` (OR in [`NLA_F_NESTED`] where the family wants it).
    pub fn begin_nest(&mut self, ty: u16) -> Nest {
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.update_len();
        Nest(at)
    }

    /// Close a nested attribute: its length now covers everything appended since it was opened.
    pub fn end_nest(&mut self, nest: Nest) {
        let len = u16::try_from(self.buf.len().saturating_sub(nest.0)).unwrap_or(u16::MAX);
        put_u16(self.buf, nest.0, len);
    }
}

/// The fixed part of a netlink message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Length of the whole message, header included.
    pub len: u32,
    /// Message type.
    pub ty: u16,
    /// `NLM_F_*` flags.
    pub flags: u16,
    /// Sequence number (the kernel copies the request's into its replies).
    pub seq: u32,
    /// Port id.
    pub port: u32,
}

impl Header {
    /// Read a header from the first 16 bytes of `buf`.
    pub fn parse(buf: &[u8]) -> Result<Header, Malformed> {
        let short = Malformed("message shorter than its header");
        Ok(Header {
            len: get_u32(buf, 0).ok_or(short)?,
            ty: get_u16(buf, 4).ok_or(short)?,
            flags: get_u16(buf, 6).ok_or(short)?,
            seq: get_u32(buf, 8).ok_or(short)?,
            port: get_u32(buf, 12).ok_or(short)?,
        })
    }
}

/// One message of a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    /// Its header.
    pub header: Header,
    /// Everything after the header, up to the header's length.
    pub payload: &'a [u8],
}

/// The messages of a datagram, in order. Stops after the first malformed one.
#[derive(Debug, Clone)]
pub struct Messages<'a> {
    rest: &'a [u8],
}

/// Iterate over the netlink messages in `buf`.
pub fn messages(buf: &[u8]) -> Messages<'_> {
    Messages { rest: buf }
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<Message<'a>, Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let parsed = Header::parse(self.rest).and_then(|header| {
            let len = usize::try_from(header.len).unwrap_or(usize::MAX);
            if len < NLMSG_HDRLEN {
                return Err(Malformed("message length shorter than its header"));
            }
            let payload = self.rest.get(NLMSG_HDRLEN..len).ok_or(Malformed("message runs past the datagram"))?;
            Ok((Message { header, payload }, align(len)))
        });
        match parsed {
            Ok((msg, next)) => {
                self.rest = self.rest.get(next..).unwrap_or(&[]);
                Some(Ok(msg))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

/// Split a payload into its fixed family header (`N` bytes) and the attributes after it
/// (which start at the next 4-byte boundary).
pub fn split_header<const N: usize>(payload: &[u8]) -> Result<([u8; N], &[u8]), Malformed> {
    let short = Malformed("payload shorter than its family header");
    let fixed: [u8; N] = payload.get(..N).ok_or(short)?.try_into().map_err(|_| short)?;
    Ok((fixed, payload.get(align(N)..).unwrap_or(&[])))
}

/// One attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr<'a> {
    /// Its type, without [`NLA_F_NESTED`] and [`NLA_F_NET_BYTEORDER`].
    pub ty: u16,
    /// Whether [`NLA_F_NESTED`] was set.
    pub nested: bool,
    /// Its payload (without padding).
    pub data: &'a [u8],
}

impl<'a> Attr<'a> {
    /// The payload as one byte.
    pub fn u8(&self) -> Result<u8, Malformed> {
        self.data.first().copied().ok_or(Malformed("attribute shorter than a u8"))
    }

    /// The payload as a native-endian u32.
    pub fn u32(&self) -> Result<u32, Malformed> {
        get_u32(self.data, 0).ok_or(Malformed("attribute shorter than a u32"))
    }

    /// The payload as a big-endian u32.
    pub fn be32(&self) -> Result<u32, Malformed> {
        self.u32().map(u32::from_be)
    }

    /// The payload as a string, up to its first NUL.
    pub fn str(&self) -> Result<&'a str, Malformed> {
        let end = self.data.iter().position(|&b| b == 0).unwrap_or(self.data.len());
        let bytes = self.data.get(..end).unwrap_or(&[]);
        std::str::from_utf8(bytes).map_err(|_| Malformed("string attribute is not UTF-8"))
    }

    /// The attributes nested in this one.
    pub fn nested(&self) -> Attrs<'a> {
        attrs(self.data)
    }
}

/// The attributes of a buffer, in order. Stops after the first malformed one.
#[derive(Debug, Clone)]
pub struct Attrs<'a> {
    rest: &'a [u8],
}

/// Iterate over the attributes in `buf`.
pub fn attrs(buf: &[u8]) -> Attrs<'_> {
    Attrs { rest: buf }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Result<Attr<'a>, Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let parsed = (|| {
            let len = usize::from(get_u16(self.rest, 0).ok_or(Malformed("attribute shorter than its header"))?);
            let ty = get_u16(self.rest, 2).ok_or(Malformed("attribute shorter than its header"))?;
            if len < NLA_HDRLEN {
                return Err(Malformed("attribute length shorter than its header"));
            }
            let data = self.rest.get(NLA_HDRLEN..len).ok_or(Malformed("attribute runs past its container"))?;
            Ok((Attr { ty: ty & NLA_TYPE_MASK, nested: ty & NLA_F_NESTED != 0, data }, align(len)))
        })();
        match parsed {
            Ok((attr, next)) => {
                self.rest = self.rest.get(next..).unwrap_or(&[]);
                Some(Ok(attr))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

/// The first attribute of type `ty` in `buf`, if any.
pub fn find_attr(buf: &[u8], ty: u16) -> Result<Option<Attr<'_>>, Malformed> {
    for attr in attrs(buf) {
        let attr = attr?;
        if attr.ty == ty {
            return Ok(Some(attr));
        }
    }
    Ok(None)
}

/// An `NLMSG_ERROR` message: an acknowledgement (`errno` 0) or a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorReply {
    /// The positive errno; 0 for an acknowledgement.
    pub errno: i32,
    /// Header of the request it answers.
    pub request: Header,
    /// The kernel's extended-ack message, if it sent one.
    pub message: Option<String>,
}

/// Parse the payload of an `NLMSG_ERROR` message (`struct nlmsgerr` and any extended-ack
/// attributes), `flags` being that message's own header flags.
pub fn parse_error(flags: u16, payload: &[u8]) -> Result<ErrorReply, Malformed> {
    let code = get_u32(payload, 0).ok_or(Malformed("error message without its error code"))?;
    let code = i32::from_ne_bytes(code.to_ne_bytes());
    let original = payload.get(4..).unwrap_or(&[]);
    let request = Header::parse(original)?;
    let mut message = None;
    if flags & NLM_F_ACK_TLVS != 0 {
        let echoed =
            if flags & NLM_F_CAPPED != 0 { NLMSG_HDRLEN } else { usize::try_from(request.len).unwrap_or(usize::MAX) };
        let tlvs = original.get(align(echoed)..).unwrap_or(&[]);
        // A malformed extended ack only loses the message: the error code is what counts.
        if let Ok(Some(attr)) = find_attr(tlvs, NLMSGERR_ATTR_MSG) {
            message = attr.str().ok().map(|s| s.trim_end().to_owned()).filter(|s| !s.is_empty());
        }
    }
    Ok(ErrorReply { errno: code.saturating_neg(), request, message })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_aligned_and_lengths_exclude_padding() {
        let mut buf = Vec::new();
        let mut w = Writer::new(&mut buf, 16, NLM_F_REQUEST | NLM_F_ACK, 7);
        w.header(&[1, 2, 3]);
        w.attr(3, b"abcde");
        w.attr_str(1, "ct");
        w.attr_u32(4, 0x0102_0304);
        assert_eq!(buf.len(), 16 + 4 + 12 + 8 + 8);
        assert_eq!(u32::from_ne_bytes(buf[0..4].try_into().unwrap()), 48);
        assert_eq!(&buf[4..6], &16u16.to_ne_bytes());
        assert_eq!(&buf[6..8], &(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        assert_eq!(&buf[8..12], &7u32.to_ne_bytes());
        assert_eq!(&buf[16..20], &[1, 2, 3, 0]);
        // "abcde": length 9, padded to 12.
        assert_eq!(&buf[20..24], &[9, 0, 3, 0]);
        assert_eq!(&buf[24..32], b"abcde\0\0\0");
        // "ct\0": length 7, padded to 8 (the bytes nft sends for the expression name).
        assert_eq!(&buf[32..40], &[7, 0, 1, 0, b'c', b't', 0, 0]);

        let msgs: Vec<_> = messages(&buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(msgs.len(), 1);
        let (fixed, rest) = split_header::<3>(msgs[0].payload).unwrap();
        assert_eq!(fixed, [1, 2, 3]);
        let parsed: Vec<_> = attrs(rest).collect::<Result<_, _>>().unwrap();
        assert_eq!(parsed.len(), 3);
        assert_eq!(parsed[0].data, b"abcde");
        assert_eq!(parsed[1].str().unwrap(), "ct");
        assert_eq!(parsed[2].u32().unwrap(), 0x0102_0304);
    }

    #[test]
    fn nests_cover_their_children_and_keep_the_flag() {
        let mut buf = Vec::new();
        let mut w = Writer::new(&mut buf, 1, 0, 0);
        let outer = w.begin_nest(4 | NLA_F_NESTED);
        let inner = w.begin_nest(1 | NLA_F_NESTED);
        w.attr_be32(2, 6);
        w.end_nest(inner);
        w.attr_u8(9, 1);
        w.end_nest(outer);
        let msg = messages(&buf).next().unwrap().unwrap();
        let outer = attrs(msg.payload).next().unwrap().unwrap();
        assert_eq!((outer.ty, outer.nested, outer.data.len()), (4, true, 12 + 8));
        let mut children = outer.nested();
        let inner = children.next().unwrap().unwrap();
        assert_eq!((inner.ty, inner.nested), (1, true));
        assert_eq!(inner.nested().next().unwrap().unwrap().be32().unwrap(), 6);
        assert_eq!(children.next().unwrap().unwrap().u8().unwrap(), 1);
        assert!(children.next().is_none());
    }

    #[test]
    fn several_messages_in_one_buffer() {
        let mut buf = Vec::new();
        Writer::new(&mut buf, 10, 0, 1).header(&[0; 4]);
        Writer::new(&mut buf, 11, 0, 2).attr_str(1, "x");
        let seqs: Vec<_> = messages(&buf).map(|m| m.unwrap().header.seq).collect();
        assert_eq!(seqs, [1, 2]);
    }

    fn error_message(errno: i32, flags: u16, extra: &[u8]) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut w = Writer::new(&mut buf, NLMSG_ERROR, flags, 5);
        let mut body = (-errno).to_ne_bytes().to_vec();
        let mut request = Vec::new();
        Writer::new(&mut request, 16, NLM_F_REQUEST, 5).attr_str(3, "k-web");
        body.extend_from_slice(if flags & NLM_F_CAPPED != 0 { &request[..16] } else { &request });
        body.extend_from_slice(extra);
        w.header(&body);
        buf
    }

    #[test]
    fn error_replies_parse_with_and_without_extended_ack() {
        let buf = error_message(17, 0, &[]);
        let msg = messages(&buf).next().unwrap().unwrap();
        assert_eq!(msg.header.ty, NLMSG_ERROR);
        let err = parse_error(msg.header.flags, msg.payload).unwrap();
        assert_eq!((err.errno, err.request.seq, err.request.ty, err.message), (17, 5, 16, None));

        let mut tlv = Vec::new();
        Writer::new(&mut tlv, 0, 0, 0).attr_str(NLMSGERR_ATTR_MSG, "Chain not found");
        let buf = error_message(2, NLM_F_CAPPED | NLM_F_ACK_TLVS, &tlv[16..]);
        let msg = messages(&buf).next().unwrap().unwrap();
        let err = parse_error(msg.header.flags, msg.payload).unwrap();
        assert_eq!(err.errno, 2);
        assert_eq!(err.message.as_deref(), Some("Chain not found"));

        let ack = error_message(0, NLM_F_CAPPED, &[]);
        let msg = messages(&ack).next().unwrap().unwrap();
        assert_eq!(parse_error(msg.header.flags, msg.payload).unwrap().errno, 0);
    }

    #[test]
    fn malformed_bytes_are_errors_not_panics() {
        assert!(messages(&[1, 2, 3]).next().unwrap().is_err());
        // Length 8: shorter than a header.
        let mut short = vec![0u8; 16];
        short[0] = 8;
        assert!(messages(&short).next().unwrap().is_err());
        // Length 64 in a 16-byte buffer.
        short[0] = 64;
        let mut it = messages(&short);
        assert!(it.next().unwrap().is_err());
        assert!(it.next().is_none());
        // Attributes: truncated header, length 2, length past the end.
        assert!(attrs(&[5, 0]).next().unwrap().is_err());
        assert!(attrs(&[2, 0, 1, 0]).next().unwrap().is_err());
        assert!(attrs(&[9, 0, 1, 0, 1, 2]).next().unwrap().is_err());
        assert!(parse_error(0, &[0xff, 0xff]).is_err());
        assert!(parse_error(0, &[0xfe, 0xff, 0xff, 0xff, 1]).is_err());
        assert!(split_header::<16>(&[0; 15]).is_err());
        // Every prefix of a valid error message either parses or errors.
        let buf = error_message(17, NLM_F_ACK_TLVS, &[200, 0, 1, 0]);
        for end in 0..buf.len() {
            for msg in messages(&buf[..end]).flatten() {
                let _ = parse_error(msg.header.flags, msg.payload);
            }
        }
    }

    #[test]
    fn garbage_never_panics() {
        // A cheap deterministic fuzz: xorshift bytes through every reader.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2000 {
            let mut bytes = Vec::new();
            for _ in 0..(state % 96) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                bytes.push((state % 7) as u8 * 4 + (state >> 40) as u8 % 3);
            }
            for msg in messages(&bytes).flatten() {
                let _ = parse_error(msg.header.flags, msg.payload);
                for attr in attrs(msg.payload).flatten() {
                    let _ = (attr.u8(), attr.u32(), attr.str(), attr.nested().count());
                }
            }
            for attr in attrs(&bytes).flatten() {
                let _ = attr.nested().count();
            }
        }
    }
}
