//! Positioned writes into an output image.
//!
//! Every filesystem is built as bytes and written at its offset in the disk image. Regions that
//! are all zero are never written, so the image file stays sparse and allocates only real data.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Something bytes can be written into at an absolute offset.
pub trait Sink {
    /// Write `data` at `offset`. Writing zeros may be skipped: an unwritten region reads as zeros.
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()>;
}

/// Block size used to detect all-zero runs that are left as holes.
const HOLE_BLOCK: usize = 4096;

/// A sparse file sink: the file must already be sized (`set_len`) and zero-filled (a new file).
pub struct FileSink<'a> {
    file: &'a File,
}

impl<'a> FileSink<'a> {
    /// Wrap a freshly created (all-zero) file.
    pub fn new(file: &'a File) -> Self {
        FileSink { file }
    }
}

impl Sink for FileSink<'_> {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        // Split on HOLE_BLOCK boundaries of the absolute offset; skip all-zero pieces.
        let mut pos = 0usize;
        while pos < data.len() {
            let abs = offset + pos as u64;
            let to_boundary = HOLE_BLOCK - (abs % HOLE_BLOCK as u64) as usize;
            let end = (pos + to_boundary).min(data.len());
            let piece = &data[pos..end];
            if piece.iter().any(|&b| b != 0) {
                self.file.write_all_at(piece, abs)?;
            }
            pos = end;
        }
        Ok(())
    }
}

/// A sink that shifts every write by a base offset (a partition inside a disk).
pub struct OffsetSink<'a, S: Sink + ?Sized> {
    inner: &'a mut S,
    base: u64,
}

impl<'a, S: Sink + ?Sized> OffsetSink<'a, S> {
    /// Writes at `offset` land at `base + offset` in `inner`.
    pub fn new(inner: &'a mut S, base: u64) -> Self {
        OffsetSink { inner, base }
    }
}

impl<S: Sink + ?Sized> Sink for OffsetSink<'_, S> {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.inner.write_at(self.base + offset, data)
    }
}

/// An in-memory sink, for tests and small images.
#[derive(Debug, Default)]
pub struct VecSink {
    /// The bytes written so far; grows as needed.
    pub bytes: Vec<u8>,
}

impl Sink for VecSink {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let off = usize::try_from(offset).map_err(|_| io::Error::other("offset too large"))?;
        let end = off + data.len();
        if self.bytes.len() < end {
            self.bytes.resize(end, 0);
        }
        self.bytes[off..end].copy_from_slice(data);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_blocks_leave_holes() {
        let file = tempfile::tempfile().unwrap();
        file.set_len(1 << 20).unwrap();
        let mut sink = FileSink::new(&file);
        let mut data = vec![0u8; 3 * HOLE_BLOCK];
        data[HOLE_BLOCK + 5] = 7;
        sink.write_at(HOLE_BLOCK as u64, &data).unwrap();
        let mut back = vec![0u8; 3 * HOLE_BLOCK];
        file.read_exact_at(&mut back, HOLE_BLOCK as u64).unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn offset_sink_shifts() {
        let mut v = VecSink::default();
        OffsetSink::new(&mut v, 10).write_at(2, b"ab").unwrap();
        assert_eq!(&v.bytes[12..14], b"ab");
    }
}
