//! Layer streams: how a layer blob is compressed (from its media type, or from its first
//! bytes when nothing says), and the reader that undoes it.

use std::io::{BufRead, BufReader, Read};

/// A layer blob's compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip (one or more members).
    Gzip,
    /// zstd.
    Zstd,
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

impl Compression {
    /// From an OCI or Docker layer media type; `None` for types that are not layers keel reads.
    pub fn from_media_type(mt: &str) -> Option<Compression> {
        if mt.ends_with("+gzip") || mt.ends_with(".tar.gzip") {
            Some(Compression::Gzip)
        } else if mt.ends_with("+zstd") {
            Some(Compression::Zstd)
        } else if mt.ends_with(".tar") || mt.ends_with(".diff.tar") {
            Some(Compression::None)
        } else {
            None
        }
    }

    /// From the first bytes of a blob (docker-archive layers carry no media type). A tar
    /// starts with a file name, never with these magic numbers.
    pub fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(GZIP_MAGIC) {
            Compression::Gzip
        } else if head.starts_with(ZSTD_MAGIC) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// A reader of the uncompressed stream. zstd frames that need a window beyond the library's
/// default limit (128 MiB) are refused by the decoder, so memory stays bounded.
pub fn decoder<'a, R: Read + 'a>(c: Compression, r: R) -> std::io::Result<Box<dyn Read + 'a>> {
    Ok(match c {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(r)?),
    })
}

/// A reader of the uncompressed stream, the compression sniffed from the first bytes.
pub fn sniffing_decoder<'a, R: Read + 'a>(r: R) -> std::io::Result<Box<dyn Read + 'a>> {
    let mut r = BufReader::new(r);
    let c = Compression::sniff(r.fill_buf()?);
    decoder(c, r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn roundtrip(c: Compression, compressed: &[u8]) -> Vec<u8> {
        assert_eq!(Compression::sniff(compressed), c);
        let mut out = Vec::new();
        sniffing_decoder(compressed).unwrap().read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn sniffs_and_decodes() {
        let data = b"hello world".repeat(100);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data).unwrap();
        assert_eq!(roundtrip(Compression::Gzip, &gz.finish().unwrap()), data);
        let zst = zstd::encode_all(&data[..], 3).unwrap();
        assert_eq!(roundtrip(Compression::Zstd, &zst), data);
        assert_eq!(roundtrip(Compression::None, &data), data);
    }

    #[test]
    fn media_types() {
        use Compression::*;
        for (mt, c) in [
            ("application/vnd.oci.image.layer.v1.tar+gzip", Some(Gzip)),
            ("application/vnd.oci.image.layer.v1.tar+zstd", Some(Zstd)),
            ("application/vnd.oci.image.layer.v1.tar", Some(None)),
            ("application/vnd.docker.image.rootfs.diff.tar.gzip", Some(Gzip)),
            ("application/vnd.docker.image.rootfs.diff.tar", Some(None)),
            ("application/vnd.oci.image.config.v1+json", Option::None),
        ] {
            assert_eq!(Compression::from_media_type(mt), c, "{mt}");
        }
    }
}
