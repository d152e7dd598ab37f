//! Reading tar members with every size bounded.
//!
//! The `tar` crate reads GNU long names and PAX extended headers whole into memory, however
//! large they claim to be. Here the archive is read raw and those extension headers are
//! handled with caps: a long name or link of more than [`MAX_PATH`] bytes, a PAX header of more
//! than [`MAX_PAX_HEADER`] bytes, a PAX `size` that disagrees with the header (the stream would
//! be framed differently by different readers) and GNU sparse files are refused. Every header
//! and every declared size is charged to a [`Budget`] before anything behind it is read.

use std::io::Read;

use super::limits::{Budget, LimitError, MAX_PATH, MAX_PAX_HEADER};
use super::tree::Meta;

/// Owner given to ids that do not fit in 32 bits (`nobody`).
const NOBODY: u32 = 65_534;
const BLOCK: u64 = 512;

/// Why a tar stream was refused.
#[derive(Debug, thiserror::Error)]
pub enum TarError {
    /// The stream is not a well-formed tar (or its compression is broken).
    #[error("malformed tar: {0}")]
    Io(#[from] std::io::Error),
    /// A cap was reached.
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// A path or link target longer than [`MAX_PATH`].
    #[error("a {what} of {len} bytes is longer than the limit of {MAX_PATH}")]
    TooLong {
        /// `path`, `link target`, `GNU long name`, …
        what: &'static str,
        /// Its length (declared, for extension headers).
        len: u64,
    },
    /// A PAX extended header larger than [`MAX_PAX_HEADER`].
    #[error("a PAX extended header of {0} bytes is larger than the limit of {MAX_PAX_HEADER}")]
    PaxTooLarge(u64),
    /// A malformed or unacceptable PAX record.
    #[error("PAX header: {0}")]
    Pax(String),
    /// A malformed numeric header field.
    #[error("entry `{path}`: malformed {field} field")]
    Field {
        /// The entry.
        path: String,
        /// `mode`, `uid`, `gid`.
        field: &'static str,
    },
    /// Two extension headers of one kind for one member, or one with no member after it.
    #[error("{0}")]
    Extension(&'static str),
}

/// One member of a tar stream, extension headers applied.
pub struct Member<'a, R: Read> {
    /// The entry; reading it yields at most [`Member::size`] bytes.
    pub entry: tar::Entry<'a, R>,
    /// Its path, as written (lossy UTF-8).
    pub path: String,
    /// Its link target (symlinks and hard links), as written.
    pub link: Option<String>,
    /// Its type.
    pub kind: tar::EntryType,
    /// Bytes of data it declares.
    pub size: u64,
    /// Owner, mode and time.
    pub meta: Meta,
}

/// Extension headers waiting for the member they describe.
#[derive(Default)]
struct Pending {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax: Option<Vec<u8>>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.long_name.is_none() && self.long_link.is_none() && self.pax.is_none()
    }
}

/// The next member of `entries` (made with `.raw(true)`), charging `budget`; `None` at the
/// end-of-archive marker.
pub fn next<'a, R: Read>(
    entries: &mut tar::Entries<'a, R>,
    budget: &mut Budget,
) -> Result<Option<Member<'a, R>>, TarError> {
    let mut pending = Pending::default();
    loop {
        let Some(entry) = entries.next() else {
            if !pending.is_empty() {
                return Err(TarError::Extension("an extension header is not followed by a member"));
            }
            return Ok(None);
        };
        let mut entry = entry?;
        budget.take_entry()?;
        let size = entry.header().entry_size()?;
        let padded = size.div_ceil(BLOCK).checked_mul(BLOCK).and_then(|p| p.checked_add(BLOCK));
        budget.take_bytes(padded.unwrap_or(u64::MAX))?;
        let kind = entry.header().entry_type();
        match kind {
            tar::EntryType::GNULongName | tar::EntryType::GNULongLink => {
                let what = if kind.is_gnu_longname() { "GNU long name" } else { "GNU long link" };
                if size > MAX_PATH as u64 + 1 {
                    return Err(TarError::TooLong { what, len: size });
                }
                let slot = if kind.is_gnu_longname() { &mut pending.long_name } else { &mut pending.long_link };
                if slot.is_some() {
                    return Err(TarError::Extension("two GNU long names for one member"));
                }
                *slot = Some(read_all(&mut entry, size)?);
            }
            tar::EntryType::XHeader | tar::EntryType::XGlobalHeader => {
                if size > MAX_PAX_HEADER {
                    return Err(TarError::PaxTooLarge(size));
                }
                let data = read_all(&mut entry, size)?;
                // Global headers are read (bounded) and ignored, as the tar crate does.
                if kind == tar::EntryType::XHeader {
                    if pending.pax.is_some() {
                        return Err(TarError::Extension("two PAX headers for one member"));
                    }
                    pending.pax = Some(data);
                }
            }
            _ => return member(entry, kind, size, pending).map(Some),
        }
    }
}

fn read_all<R: Read>(r: &mut R, size: u64) -> Result<Vec<u8>, TarError> {
    let mut v = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    r.take(size).read_to_end(&mut v)?;
    Ok(v)
}

/// A GNU long name's bytes: NUL-terminated.
fn c_string(mut v: Vec<u8>) -> Vec<u8> {
    if let Some(end) = v.iter().position(|b| *b == 0) {
        v.truncate(end);
    }
    v
}

/// What a PAX header says about its member.
#[derive(Default)]
struct Pax {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    uid: Option<u64>,
    gid: Option<u64>,
    mtime: Option<i64>,
    size: Option<u64>,
}

fn parse_pax(data: &[u8]) -> Result<Pax, TarError> {
    let mut pax = Pax::default();
    for rec in tar::PaxExtensions::new(data) {
        let rec = rec.map_err(|e| TarError::Pax(format!("malformed record ({e})")))?;
        let key = rec.key().map_err(|_| TarError::Pax("a key is not UTF-8".into()))?;
        let value = rec.value_bytes();
        let number = || -> Result<u64, TarError> {
            std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| TarError::Pax(format!("`{key}` is not a number")))
        };
        match key {
            "path" => pax.path = Some(value.to_vec()),
            "linkpath" => pax.link = Some(value.to_vec()),
            "uid" => pax.uid = Some(number()?),
            "gid" => pax.gid = Some(number()?),
            "size" => pax.size = Some(number()?),
            "mtime" => {
                // Seconds, with an optional fraction: keep the whole seconds.
                let v = std::str::from_utf8(value).unwrap_or("");
                pax.mtime = v.split('.').next().and_then(|s| s.parse().ok());
            }
            k if k.starts_with("GNU.sparse.") => {
                return Err(TarError::Pax("GNU sparse files are not supported".into()))
            }
            // Times other than mtime, charset, comments, user and group names, xattrs: unused.
            _ => {}
        }
    }
    Ok(pax)
}

fn member<'a, R: Read>(
    entry: tar::Entry<'a, R>,
    kind: tar::EntryType,
    size: u64,
    pending: Pending,
) -> Result<Member<'a, R>, TarError> {
    let pax = pending.pax.as_deref().map(parse_pax).transpose()?.unwrap_or_default();
    if let Some(s) = pax.size {
        if s != size {
            return Err(TarError::Pax(format!("size {s} disagrees with the header's {size}")));
        }
    }
    let h = entry.header();
    let path_bytes = match (pending.long_name, pax.path) {
        (Some(long), _) => c_string(long),
        (None, Some(p)) => p,
        (None, None) => h.path_bytes().into_owned(),
    };
    let link_bytes = match (pending.long_link, pax.link) {
        (Some(long), _) => Some(c_string(long)),
        (None, Some(p)) => Some(p),
        (None, None) => h.link_name_bytes().map(|b| b.into_owned()),
    };
    if path_bytes.len() > MAX_PATH {
        return Err(TarError::TooLong { what: "path", len: path_bytes.len() as u64 });
    }
    if let Some(l) = &link_bytes {
        if l.len() > MAX_PATH {
            return Err(TarError::TooLong { what: "link target", len: l.len() as u64 });
        }
    }
    let path = String::from_utf8_lossy(&path_bytes).into_owned();
    let field = |field| TarError::Field { path: path.clone(), field };
    // A numeric field left empty (all NUL or spaces) reads as 0; one with garbage in it is an
    // error rather than a guess.
    let number = |raw: &[u8], value: std::io::Result<u64>, name| -> Result<u64, TarError> {
        if raw.iter().all(|b| *b == 0 || *b == b' ') {
            return Ok(0);
        }
        value.map_err(|_| field(name))
    };
    let old = h.as_old();
    let id = |pax: Option<u64>, raw: &[u8], value, name| -> Result<u32, TarError> {
        let v = match pax {
            Some(v) => v,
            None => number(raw, value, name)?,
        };
        Ok(u32::try_from(v).unwrap_or(NOBODY))
    };
    let mode = number(&old.mode, h.mode().map(u64::from), "mode")?;
    let meta = Meta {
        mode: u32::try_from(mode & 0o7777).unwrap_or(0),
        uid: id(pax.uid, &old.uid, h.uid(), "uid")?,
        gid: id(pax.gid, &old.gid, h.gid(), "gid")?,
        mtime: pax.mtime.or_else(|| h.mtime().ok().and_then(|t| i64::try_from(t).ok())).unwrap_or(0),
    };
    let link = link_bytes.map(|l| String::from_utf8_lossy(&l).into_owned());
    Ok(Member { entry, path, link, kind, size, meta })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::limits::MAX_IMAGE_BYTES;

    /// A raw header block with `name`, type and size, checksummed.
    fn header(name: &[u8], kind: u8, size: u64) -> Vec<u8> {
        let mut h = tar::Header::new_ustar();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_entry_type(tar::EntryType::new(kind));
        h.set_size(size);
        h.set_mode(0o644);
        h.set_cksum();
        h.as_bytes().to_vec()
    }

    fn pad(mut v: Vec<u8>) -> Vec<u8> {
        v.resize(v.len().div_ceil(512) * 512, 0);
        v
    }

    fn all(stream: &[u8], budget: &mut Budget) -> Result<Vec<(String, Option<String>, u32)>, TarError> {
        let mut a = tar::Archive::new(stream);
        let mut entries = a.entries()?.raw(true);
        let mut out = Vec::new();
        while let Some(m) = next(&mut entries, budget)? {
            out.push((m.path, m.link, m.meta.uid));
        }
        Ok(out)
    }

    #[test]
    fn long_names_and_pax_records_apply_to_the_next_member() {
        let long = "d/".repeat(100) + "f";
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_mode(0o644);
        h.set_uid(5);
        b.append_data(&mut h, &long, &[][..]).unwrap();
        b.append_pax_extensions([("uid", &b"4294967296"[..]), ("path", b"p")]).unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_size(0);
        h.set_mode(0o644);
        b.append_data(&mut h, "ignored", &[][..]).unwrap();
        let out = all(&b.into_inner().unwrap(), &mut Budget::default()).unwrap();
        assert_eq!(out, [(long, None, 5), ("p".into(), None, NOBODY)]);
    }

    #[test]
    fn oversized_extension_headers_are_refused_before_reading() {
        // Only the header is present: the declared size alone must be refused.
        let s = header(b"././@LongLink", b'L', 1 << 40);
        assert!(matches!(all(&s, &mut Budget::new(u64::MAX, 10)), Err(TarError::TooLong { .. })));
        let s = header(b"pax", b'x', 64 << 20);
        assert!(matches!(all(&s, &mut Budget::new(u64::MAX, 10)), Err(TarError::PaxTooLarge(_))));
        let s = header(b"big", b'0', 1 << 40);
        assert!(matches!(all(&s, &mut Budget::default()), Err(TarError::Limit(LimitError::Bytes { .. }))));
        const { assert!(1u64 << 40 > MAX_IMAGE_BYTES) };
    }

    #[test]
    fn pax_size_must_agree_and_sparse_is_refused() {
        let rec = b"12 size=999\n".to_vec();
        let mut s = header(b"pax", b'x', rec.len() as u64);
        s.extend(pad(rec));
        s.extend(header(b"f", b'0', 0));
        assert!(matches!(all(&s, &mut Budget::default()), Err(TarError::Pax(_))));
        let rec = b"30 GNU.sparse.major=1\n".to_vec();
        let mut s = header(b"pax", b'x', rec.len() as u64);
        s.extend(pad(rec));
        s.extend(header(b"f", b'0', 0));
        assert!(matches!(all(&s, &mut Budget::default()), Err(TarError::Pax(_))));
    }

    #[test]
    fn dangling_and_doubled_extensions_are_refused() {
        let name = b"x".to_vec();
        let mut s = header(b"././@LongLink", b'L', 2);
        s.extend(pad(name.clone()));
        assert!(matches!(all(&s, &mut Budget::default()), Err(TarError::Extension(_))));
        s.extend(header(b"././@LongLink", b'L', 2));
        s.extend(pad(name));
        s.extend(header(b"f", b'0', 0));
        assert!(matches!(all(&s, &mut Budget::default()), Err(TarError::Extension(_))));
    }

    #[test]
    fn entries_are_counted() {
        let mut s = header(b"a", b'0', 0);
        s.extend(header(b"b", b'0', 0));
        assert!(matches!(all(&s, &mut Budget::new(u64::MAX, 1)), Err(TarError::Limit(LimitError::Entries(1)))));
    }
}
