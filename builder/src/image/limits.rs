//! Caps on what an image may make the builder do, so a hostile or broken image is refused
//! with a clear error instead of exhausting memory or time.
//!
//! The builder flattens every image into an in-memory tree, so the byte cap is also the most
//! memory one image can take. Every cap is checked against what a header *declares* before the
//! data behind it is read, so a compression bomb is refused before it is inflated.

/// Most uncompressed layer bytes one image may have, all layers together, tar headers and
/// padding included (4 GiB).
pub const MAX_IMAGE_BYTES: u64 = 4 << 30;
/// Most tar entries one image may have, all layers together, extension headers included.
pub const MAX_ENTRIES: u64 = 1 << 20;
/// Longest path or link target accepted in a tar entry, in bytes (Linux's PATH_MAX).
pub const MAX_PATH: usize = 4096;
/// Deepest path accepted, in components, as written in a layer and after its symlinks are
/// followed. Linux has no such limit, but no real image comes near it (Debian's deepest path
/// is about 20 deep), and every step of a path costs the builder time and memory.
pub const MAX_DEPTH: usize = 256;
/// Largest PAX extended header accepted, in bytes.
pub const MAX_PAX_HEADER: u64 = 1 << 20;
/// Largest JSON document read (oci-layout, index.json, index, manifest, config, manifest.json).
pub const MAX_JSON: u64 = 4 << 20;
/// Deepest chain of image indexes followed below index.json.
pub const MAX_INDEX_DEPTH: usize = 4;
/// Most layers one image may have.
pub const MAX_LAYERS: usize = 256;
/// Most bytes accepted after a tar stream's end-of-archive marker (writers pad to a record
/// size, 10 KiB by default).
pub const MAX_TRAILER: u64 = 1 << 20;
/// Most members a docker-archive tarball may have.
pub const MAX_ARCHIVE_MEMBERS: u64 = 1 << 16;

/// A cap that was reached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// Too many uncompressed bytes.
    #[error("an entry of {declared} bytes takes the image past its limit of {limit} uncompressed bytes")]
    Bytes {
        /// The cap.
        limit: u64,
        /// What the entry that crossed it declared.
        declared: u64,
    },
    /// Too many entries.
    #[error("more than {0} tar entries")]
    Entries(u64),
}

/// What one image (or one archive) may still use.
#[derive(Debug, Clone)]
pub struct Budget {
    limit: u64,
    bytes: u64,
    entries_limit: u64,
    entries: u64,
}

impl Default for Budget {
    fn default() -> Self {
        Budget::new(MAX_IMAGE_BYTES, MAX_ENTRIES)
    }
}

impl Budget {
    /// A budget of `bytes` uncompressed bytes and `entries` tar entries.
    pub const fn new(bytes: u64, entries: u64) -> Budget {
        Budget { limit: bytes, bytes, entries_limit: entries, entries }
    }

    /// Spend `n` bytes, or fail if fewer are left.
    pub fn take_bytes(&mut self, n: u64) -> Result<(), LimitError> {
        self.bytes = self.bytes.checked_sub(n).ok_or(LimitError::Bytes { limit: self.limit, declared: n })?;
        Ok(())
    }

    /// Spend one entry, or fail if none is left.
    pub fn take_entry(&mut self) -> Result<(), LimitError> {
        self.entries = self.entries.checked_sub(1).ok_or(LimitError::Entries(self.entries_limit))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_run_out() {
        let mut b = Budget::new(1000, 2);
        b.take_bytes(600).unwrap();
        assert_eq!(b.take_bytes(401), Err(LimitError::Bytes { limit: 1000, declared: 401 }));
        b.take_bytes(400).unwrap();
        b.take_entry().unwrap();
        b.take_entry().unwrap();
        assert_eq!(b.take_entry(), Err(LimitError::Entries(2)));
    }
}
