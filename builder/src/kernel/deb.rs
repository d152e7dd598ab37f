//! Reading a Debian package without dpkg: the `ar` archive and its `data.tar.*` member.

use std::io::Read;

use super::KernelError;

/// The members of an `ar` archive, as (name, bytes) slices of the input.
pub fn ar_members(bytes: &[u8]) -> Result<Vec<(String, &[u8])>, KernelError> {
    const MAGIC: &[u8] = b"!<arch>\n";
    if !bytes.starts_with(MAGIC) {
        return Err(KernelError::NotADeb("no ar magic".into()));
    }
    let mut out = Vec::new();
    let mut pos = MAGIC.len();
    while pos + 60 <= bytes.len() {
        let header = &bytes[pos..pos + 60];
        if &header[58..60] != b"`\n" {
            return Err(KernelError::NotADeb(format!("bad ar member header at offset {pos}")));
        }
        let name = String::from_utf8_lossy(&header[0..16]).trim_end().trim_end_matches('/').to_string();
        let size: usize = String::from_utf8_lossy(&header[48..58])
            .trim()
            .parse()
            .map_err(|_| KernelError::NotADeb(format!("bad ar member size at offset {pos}")))?;
        let start = pos + 60;
        let end = start
            .checked_add(size)
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| KernelError::NotADeb(format!("ar member `{name}` is truncated")))?;
        out.push((name, &bytes[start..end]));
        pos = end + (end % 2);
    }
    Ok(out)
}

/// A reader over the decompressed `data.tar` of a .deb.
pub fn data_tar(bytes: &[u8]) -> Result<Box<dyn Read + '_>, KernelError> {
    let members = ar_members(bytes)?;
    let (name, data) = members
        .into_iter()
        .find(|(n, _)| n.starts_with("data.tar"))
        .ok_or_else(|| KernelError::NotADeb("no data.tar member".into()))?;
    let reader: Box<dyn Read + '_> = match name.as_str() {
        "data.tar" => Box::new(data),
        "data.tar.xz" => Box::new(xz2::read::XzDecoder::new(data)),
        "data.tar.gz" => Box::new(flate2::read::GzDecoder::new(data)),
        "data.tar.zst" => Box::new(
            zstd::stream::read::Decoder::with_buffer(data)
                .map_err(|e| KernelError::NotADeb(format!("data.tar.zst: {e}")))?,
        ),
        other => return Err(KernelError::NotADeb(format!("unsupported member compression `{other}`"))),
    };
    Ok(reader)
}

/// Visit every regular file of a .deb's data tar with its normalised path (no leading `./`).
/// The visitor says which files it wants the bytes of.
pub fn for_each_file(
    deb: &[u8],
    mut want: impl FnMut(&str) -> bool,
    mut visit: impl FnMut(&str, Vec<u8>) -> Result<(), KernelError>,
) -> Result<(), KernelError> {
    let mut archive = tar::Archive::new(data_tar(deb)?);
    let entries = archive.entries().map_err(|e| KernelError::NotADeb(format!("data.tar: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| KernelError::NotADeb(format!("data.tar: {e}")))?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let path = entry.path().map_err(|e| KernelError::NotADeb(format!("data.tar: {e}")))?;
        let path = path.to_string_lossy().trim_start_matches("./").to_string();
        if !want(&path) {
            continue;
        }
        let mut buf = Vec::with_capacity(entry.size() as usize);
        entry.read_to_end(&mut buf).map_err(|e| KernelError::NotADeb(format!("{path}: {e}")))?;
        visit(&path, buf)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ar(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut v = b"!<arch>\n".to_vec();
        for (name, data) in members {
            v.extend(format!("{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n", name, 0, 0, 0, 100644, data.len()).bytes());
            v.extend_from_slice(data);
            if data.len() % 2 == 1 {
                v.push(b'\n');
            }
        }
        v
    }

    #[test]
    fn reads_members() {
        let a = ar(&[("debian-binary", b"2.0\n"), ("odd", b"abc"), ("last", b"z")]);
        let m = ar_members(&a).unwrap();
        let names: Vec<_> = m.iter().map(|(n, d)| (n.as_str(), *d)).collect();
        assert_eq!(names, [("debian-binary", &b"2.0\n"[..]), ("odd", b"abc"), ("last", b"z")]);
    }

    #[test]
    fn rejects_garbage_and_truncation() {
        assert!(ar_members(b"hello").is_err());
        let mut a = ar(&[("x", b"0123456789")]);
        a.truncate(a.len() - 3);
        assert!(ar_members(&a).is_err());
    }
}
