//! `records DIR INTERVAL_MS`: the power-cut workload. It first checks `DIR/records` (left by an
//! earlier boot, perhaps cut off mid-write) and prints `records found N torn T` (N intact records,
//! numbered 1..N in order, and T bytes after them that are not a whole record); then it cuts the
//! file back to the intact records and appends records N+1, N+2, … forever, each in one write to
//! a file opened with O_APPEND, fsynced, and only then announced as `fsynced K`. So every record
//! announced on the console before a power cut must be found by the next boot.
//!
//! A record is one 66-byte line: `record NNNNNNNN PAYLOAD CHECKSUM\n`, with a 40-character payload
//! derived from the number and an FNV-1a checksum of the rest, so a torn or stale record is never
//! taken for an intact one.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use crate::report::say;

/// The file the records go to, inside the directory given.
pub const FILE: &str = "records";

fn fnv(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(*b)).wrapping_mul(0x0100_0193))
}

/// Record `n` as written, newline included.
pub fn record(n: u64) -> String {
    let mut payload = String::with_capacity(40);
    let mut x = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5bd1_e995;
    while payload.len() < 40 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        payload.push_str(&format!("{:016x}", x));
    }
    payload.truncate(40);
    let body = format!("record {n:08} {payload}");
    let sum = fnv(body.as_bytes());
    format!("{body} {sum:08x}\n")
}

/// What a records file holds.
#[derive(Debug, PartialEq, Eq)]
pub struct Found {
    /// Intact records, numbered 1..=intact in order.
    pub intact: u64,
    /// Bytes of the intact records.
    pub intact_len: usize,
    /// Bytes after them.
    pub torn: usize,
    /// An intact record later in the file than the first bad one (the file is corrupt, not just
    /// cut off): its number.
    pub after_gap: Option<u64>,
}

/// Read the records in `bytes`.
pub fn scan(bytes: &[u8]) -> Found {
    let mut intact = 0u64;
    let mut pos = 0usize;
    while let Some(rest) = bytes.get(pos..) {
        let want = record(intact + 1);
        if rest.starts_with(want.as_bytes()) {
            intact += 1;
            pos += want.len();
        } else {
            break;
        }
    }
    let tail = bytes.get(pos..).unwrap_or_default();
    // Any intact record further on means records went missing in the middle.
    let after_gap = tail.split(|b| *b == b'\n').find_map(|line| {
        let line = std::str::from_utf8(line).ok()?;
        let n: u64 = line.strip_prefix("record ")?.get(..8)?.parse().ok()?;
        (record(n).trim_end() == line).then_some(n)
    });
    Found { intact, intact_len: pos, torn: tail.len(), after_gap }
}

/// `records DIR INTERVAL_MS`; returns the exit code (it runs until killed unless something fails).
pub fn run(dir: &str, interval_ms: u64) -> i32 {
    match run_inner(Path::new(dir), Duration::from_millis(interval_ms)) {
        Ok(()) => 0,
        Err(e) => {
            say(&format!("records failed: {e}"));
            1
        }
    }
}

fn run_inner(dir: &Path, interval: Duration) -> Result<(), String> {
    let path = dir.join(FILE);
    let mut bytes = Vec::new();
    let existed = match File::open(&path) {
        Ok(mut f) => {
            f.read_to_end(&mut bytes).map_err(|e| format!("read {}: {e}", path.display()))?;
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(format!("open {}: {e}", path.display())),
    };
    let found = scan(&bytes);
    say(&format!("records found {} torn {}", found.intact, found.torn));
    if let Some(n) = found.after_gap {
        return Err(format!("record {n} follows a gap after record {}: the file is corrupt", found.intact));
    }
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o644)
        .open(&path)
        .map_err(|e| format!("open {} for appending: {e}", path.display()))?;
    if !existed {
        // The new file's directory entry, durable before any record is announced.
        File::open(dir).and_then(|d| d.sync_all()).map_err(|e| format!("fsync {}: {e}", dir.display()))?;
    }
    if found.torn > 0 {
        file.set_len(found.intact_len as u64).map_err(|e| format!("cut off the torn tail: {e}"))?;
        file.sync_all().map_err(|e| format!("fsync after the cut: {e}"))?;
        say(&format!("records cut {} torn bytes", found.torn));
    }
    let mut n = found.intact;
    loop {
        n += 1;
        let line = record(n);
        // One write: with O_APPEND it lands at the end as a whole (or fails).
        let wrote = file.write(line.as_bytes()).map_err(|e| format!("write record {n}: {e}"))?;
        if wrote != line.len() {
            return Err(format!("short write of record {n}: {wrote} of {} bytes", line.len()));
        }
        file.sync_all().map_err(|e| format!("fsync record {n}: {e}"))?;
        say(&format!("fsynced {n}"));
        std::thread::sleep(interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_fixed_size_and_distinct() {
        assert_eq!(record(1).len(), 66);
        assert_eq!(record(99_999_999).len(), 66);
        assert_ne!(record(1), record(2));
        assert!(record(7).starts_with("record 00000007 "));
    }

    #[test]
    fn scan_counts_intact_records_and_the_torn_tail() {
        let mut f: Vec<u8> = (1..=5).flat_map(|n| record(n).into_bytes()).collect();
        assert_eq!(scan(&f), Found { intact: 5, intact_len: 330, torn: 0, after_gap: None });
        let six = record(6);
        f.extend_from_slice(&six.as_bytes()[..30]);
        assert_eq!(scan(&f), Found { intact: 5, intact_len: 330, torn: 30, after_gap: None });
        // A zero-filled tail (blocks allocated, data never written) is torn too.
        let mut z: Vec<u8> = (1..=2).flat_map(|n| record(n).into_bytes()).collect();
        z.extend_from_slice(&[0; 4096]);
        assert_eq!(scan(&z).intact, 2);
        assert_eq!(scan(&z).torn, 4096);
        assert_eq!(scan(&[]), Found { intact: 0, intact_len: 0, torn: 0, after_gap: None });
    }

    #[test]
    fn a_gap_or_a_bad_checksum_is_not_intact() {
        let f: Vec<u8> = [1, 2, 4].iter().flat_map(|n| record(*n).into_bytes()).collect();
        let found = scan(&f);
        assert_eq!((found.intact, found.after_gap), (2, Some(4)));
        let mut bad = record(1).into_bytes();
        bad[20] ^= 1;
        assert_eq!(scan(&bad).intact, 0);
    }
}
