//! Container log files on keel-data: `logs/NAME.log`, one line per record,
//! `2025-01-31T12:00:00.123Z out <line>` (UTC from CLOCK_REALTIME, with milliseconds; the stream is
//! `out`, `err`, or `keel` for init's own notes about the container: its exit status, OOM kills).
//!
//! Each file is bounded: when a record would take `NAME.log` past `max_bytes`, it is renamed to
//! `NAME.log.1` (`.1` to `.2`, …, keeping `files` files in all, the oldest dropped) and a new
//! `NAME.log` begins. A record longer than `max_bytes` is cut short.
//!
//! Records are written straight to the file (one `write` each, into the page cache; no fsync per
//! line). [`Logs::flush`] syncs one file (when its container exits); [`Logs::close`] syncs and
//! closes them all, before keel-data is unmounted. A file that cannot be written (keel-data full
//! or read-only) is said once on the console and left alone for [`RETRY`]; nothing here can stop
//! or crash PID 1.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use keel_plan::time::civil_from_days;

use crate::console;

/// The log directory, relative to [`keel_plan::DATA_MOUNT`].
pub const DIR: &str = "logs";
/// How long a file that failed is left alone before it is tried again.
pub const RETRY: Duration = Duration::from_secs(60);

/// Which stream a record comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The container's stdout.
    Out,
    /// The container's stderr.
    Err,
    /// keel-init, about the container.
    Keel,
}

impl Stream {
    /// The container stream of pipe `index` (0: stdout, else stderr).
    pub fn of_pipe(index: usize) -> Stream {
        if index == 0 {
            Stream::Out
        } else {
            Stream::Err
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Stream::Out => "out",
            Stream::Err => "err",
            Stream::Keel => "keel",
        }
    }
}

/// `since_epoch` as RFC 3339 in UTC with milliseconds: `2025-01-31T12:00:00.123Z`.
pub fn rfc3339(since_epoch: Duration) -> String {
    let secs = since_epoch.as_secs();
    let (y, m, d) = civil_from_days(i64::try_from(secs / 86_400).unwrap_or(0));
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since_epoch.subsec_millis()
    )
}

/// The record for `line` into `out` (cleared first): `TIME STREAM line\n`, at most `max` bytes
/// (cut short, still ending in a newline).
pub fn record(out: &mut Vec<u8>, since_epoch: Duration, stream: Stream, line: &[u8], max: usize) {
    out.clear();
    out.extend_from_slice(rfc3339(since_epoch).as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.tag().as_bytes());
    out.push(b' ');
    out.extend_from_slice(line);
    out.truncate(max.saturating_sub(1));
    out.push(b'\n');
}

/// `dir/NAME.log`, or `dir/NAME.log.N` for `n` > 0.
pub fn path(dir: &Path, name: &str, n: u32) -> PathBuf {
    if n == 0 {
        dir.join(format!("{name}.log"))
    } else {
        dir.join(format!("{name}.log.{n}"))
    }
}

/// Shift `NAME.log` → `NAME.log.1` → … keeping `files` files in all (`NAME.log` included, which
/// is gone afterwards); the oldest is overwritten. With `files` = 1, `NAME.log` is removed.
pub fn rotate(dir: &Path, name: &str, files: u32) -> io::Result<()> {
    let gone_ok = |r: io::Result<()>| match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    };
    if files <= 1 {
        return gone_ok(fs::remove_file(path(dir, name, 0)));
    }
    for n in (0..files - 1).rev() {
        gone_ok(fs::rename(path(dir, name, n), path(dir, name, n + 1)))?;
    }
    Ok(())
}

#[derive(Debug)]
enum State {
    /// Not opened yet, or closed.
    Closed,
    /// Open for appending, `size` bytes long.
    Open { file: File, size: u64 },
    /// Failed: not tried again before `until`.
    Failed { until: Instant },
}

#[derive(Debug)]
struct LogFile {
    state: State,
    /// Its last failure was said on the console and nothing was written since.
    said: bool,
}

/// Every container's log file.
#[derive(Debug)]
pub struct Logs {
    dir: PathBuf,
    limits: keel_plan::Logs,
    files: BTreeMap<String, LogFile>,
    /// The record being written (kept to spare an allocation per line).
    buf: Vec<u8>,
}

impl Logs {
    /// Log files in `dir` (made when first needed), bounded by `limits`.
    pub fn new(dir: PathBuf, limits: keel_plan::Logs) -> Logs {
        Logs { dir, limits, files: BTreeMap::new(), buf: Vec::new() }
    }

    /// Append `line` of container `name`'s `stream`, stamped now.
    pub fn line(&mut self, name: &str, stream: Stream, line: &[u8]) {
        let wall = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        if let Some(msg) = self.write_at(name, stream, line, wall, Instant::now()) {
            console::say(msg);
        }
    }

    /// Append a note of keel-init's about container `name`.
    pub fn note(&mut self, name: &str, msg: &str) {
        self.line(name, Stream::Keel, msg.as_bytes());
    }

    /// Push container `name`'s file to the disk (its container exited).
    pub fn flush(&mut self, name: &str) {
        if let Some(LogFile { state: State::Open { file, .. }, .. }) = self.files.get_mut(name) {
            // Best effort: a failure shows at the next write.
            let _ = file.sync_data();
        }
    }

    /// Sync and close every file (before keel-data is unmounted).
    pub fn close(&mut self) {
        for f in self.files.values_mut() {
            if let State::Open { file, .. } = &f.state {
                let _ = file.sync_data();
            }
            f.state = State::Closed;
        }
    }

    /// Append a record at wall-clock time `wall` and monotonic time `now`. Returns what to say on
    /// the console, if anything: a failure (once per outage), or that writing resumed.
    fn write_at(&mut self, name: &str, stream: Stream, line: &[u8], wall: Duration, now: Instant) -> Option<String> {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return None; // never a container name (the builder checks them)
        }
        let max = self.limits.max_bytes;
        record(&mut self.buf, wall, stream, line, usize::try_from(max).unwrap_or(usize::MAX));
        if !self.files.contains_key(name) {
            self.files.insert(name.to_string(), LogFile { state: State::Closed, said: false });
        }
        let f = self.files.get_mut(name)?;
        if let State::Failed { until } = f.state {
            if now < until {
                return None;
            }
            f.state = State::Closed;
        }
        match append(&self.dir, name, &mut f.state, &self.buf, max, self.limits.files) {
            Ok(()) if f.said => {
                f.said = false;
                Some(format!("log file {}: writing again", path(&self.dir, name, 0).display()))
            }
            Ok(()) => None,
            Err(e) => {
                f.state = State::Failed { until: now + RETRY };
                if f.said {
                    return None;
                }
                f.said = true;
                Some(format!(
                    "log file {}: {e}; not writing it for {} s",
                    path(&self.dir, name, 0).display(),
                    RETRY.as_secs()
                ))
            }
        }
    }
}

/// Append `rec` to `name`'s file, opening it (and the directory) if needed, rotating first if
/// `rec` would take it past `max` bytes.
fn append(dir: &Path, name: &str, state: &mut State, rec: &[u8], max: u64, files: u32) -> io::Result<()> {
    let len = rec.len() as u64;
    if let State::Open { size, .. } = state {
        if *size > 0 && size.saturating_add(len) > max {
            *state = State::Closed;
            rotate(dir, name, files)?;
        }
    }
    if matches!(state, State::Closed) {
        let (file, size) = open(dir, name)?;
        *state = State::Open { file, size };
        // A file left from an earlier boot (or an earlier limit) may be full already.
        if size > 0 && size.saturating_add(len) > max {
            *state = State::Closed;
            rotate(dir, name, files)?;
            let (file, size) = open(dir, name)?;
            *state = State::Open { file, size };
        }
    }
    let State::Open { file, size } = state else {
        return Err(io::Error::other("log file not open"));
    };
    let r = file.write_all(rec);
    if r.is_err() {
        // Part may have been written: read the size again when it is reopened.
        *state = State::Closed;
    } else {
        *size = size.saturating_add(len);
    }
    r
}

/// Open (create) `dir/NAME.log` for appending: the file and its size.
fn open(dir: &Path, name: &str) -> io::Result<(File, u64)> {
    fs::DirBuilder::new().recursive(true).mode(0o750).create(dir)?;
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path(dir, name, 0))?;
    let size = file.metadata()?.len();
    Ok((file, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_millis(1_700_000_000_123);

    #[test]
    fn timestamps_are_rfc3339_utc_with_milliseconds() {
        assert_eq!(rfc3339(Duration::ZERO), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(T), "2023-11-14T22:13:20.123Z");
        // Leap days and the turn of a century.
        assert_eq!(rfc3339(Duration::from_secs(951_782_400)), "2000-02-29T00:00:00.000Z");
        assert_eq!(
            rfc3339(Duration::from_secs(4_107_542_399) + Duration::from_millis(999)),
            "2100-02-28T23:59:59.999Z"
        );
        assert_eq!(rfc3339(Duration::from_secs(4_107_542_400)), "2100-03-01T00:00:00.000Z");
        assert_eq!(rfc3339(Duration::from_secs(1_735_689_599)), "2024-12-31T23:59:59.000Z");
    }

    #[test]
    fn records_are_stamped_tagged_and_bounded() {
        let mut b = Vec::new();
        record(&mut b, T, Stream::Out, b"hello", 4096);
        assert_eq!(b, b"2023-11-14T22:13:20.123Z out hello\n");
        record(&mut b, T, Stream::Err, b"", 4096);
        assert_eq!(b, b"2023-11-14T22:13:20.123Z err \n");
        record(&mut b, T, Stream::Keel, b"container web exited with status 1", 4096);
        assert_eq!(b, b"2023-11-14T22:13:20.123Z keel container web exited with status 1\n");
        record(&mut b, T, Stream::Out, &[b'x'; 100], 40);
        assert_eq!(b.len(), 40);
        assert_eq!(b.last(), Some(&b'\n'));
        assert_eq!(Stream::of_pipe(0), Stream::Out);
        assert_eq!(Stream::of_pipe(1), Stream::Err);
    }

    fn read(dir: &Path, name: &str, n: u32) -> String {
        fs::read_to_string(path(dir, name, n)).unwrap_or_default()
    }

    #[test]
    fn rotation_keeps_the_newest_files() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        for n in 0..3 {
            fs::write(path(d, "web", n), format!("gen{n}")).unwrap();
        }
        rotate(d, "web", 3).unwrap();
        assert!(!path(d, "web", 0).exists());
        assert_eq!((read(d, "web", 1), read(d, "web", 2)), ("gen0".into(), "gen1".into()), "gen2 dropped");
        assert!(!path(d, "web", 3).exists());
        // Gaps are fine; one file means no history.
        rotate(d, "web", 3).unwrap();
        assert_eq!(read(d, "web", 2), "gen0");
        assert!(!path(d, "web", 1).exists());
        fs::write(path(d, "one", 0), "x").unwrap();
        rotate(d, "one", 1).unwrap();
        assert!(!path(d, "one", 0).exists() && !path(d, "one", 1).exists());
    }

    /// One record is 24 (time) + 1 + 3 (`out`) + 1 + the line + 1 bytes.
    fn rec_len(line: &str) -> u64 {
        30 + line.len() as u64
    }

    #[test]
    fn files_are_bounded_and_rotated() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("logs");
        // Room for exactly three 10-byte lines per file.
        let max = 3 * rec_len("0123456789");
        let mut logs = Logs::new(dir.clone(), keel_plan::Logs { max_bytes: max, files: 3 });
        let now = Instant::now();
        for i in 0..10 {
            let line = format!("line {i:05}");
            assert_eq!(logs.write_at("web", Stream::Out, line.as_bytes(), T, now), None);
        }
        logs.note("web", "container web exited with status 1");
        // 10 lines + 1 note: three full files were made; the oldest (lines 0-2) was dropped.
        let lines =
            |n| read(&dir, "web", n).lines().map(|l| l.rsplit(' ').next().unwrap().to_string()).collect::<Vec<_>>();
        assert_eq!(lines(2), ["00003", "00004", "00005"]);
        assert_eq!(lines(1), ["00006", "00007", "00008"]);
        assert_eq!(lines(0).first().map(String::as_str), Some("00009"));
        assert!(read(&dir, "web", 0).contains(" keel container web exited with status 1\n"));
        assert!(!path(&dir, "web", 3).exists());
        for n in 0..3 {
            assert!(fs::metadata(path(&dir, "web", n)).unwrap().len() <= max);
        }
        logs.flush("web");
        logs.close();
    }

    #[test]
    fn a_file_from_an_earlier_boot_continues_or_rotates() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().to_path_buf();
        let max = 2 * rec_len("0123456789");
        let now = Instant::now();
        let mut logs = Logs::new(dir.clone(), keel_plan::Logs { max_bytes: max, files: 2 });
        logs.write_at("web", Stream::Out, b"boot 1 ...", T, now);
        logs.close();
        let mut logs = Logs::new(dir.clone(), keel_plan::Logs { max_bytes: max, files: 2 });
        logs.write_at("web", Stream::Out, b"boot 2 ...", T, now);
        assert_eq!(read(&dir, "web", 0).lines().count(), 2, "appended");
        logs.close();
        let mut logs = Logs::new(dir.clone(), keel_plan::Logs { max_bytes: max, files: 2 });
        logs.write_at("web", Stream::Out, b"boot 3 ...", T, now);
        assert!(read(&dir, "web", 0).ends_with("boot 3 ...\n") && read(&dir, "web", 0).lines().count() == 1);
        assert_eq!(read(&dir, "web", 1).lines().count(), 2, "the full file was rotated first");
    }

    #[test]
    fn containers_get_their_own_files() {
        let t = tempfile::tempdir().unwrap();
        let mut logs = Logs::new(t.path().to_path_buf(), keel_plan::Logs::default());
        let now = Instant::now();
        logs.write_at("a", Stream::Out, b"from a", T, now);
        logs.write_at("b", Stream::Err, b"from b", T, now);
        assert_eq!(read(t.path(), "a", 0), "2023-11-14T22:13:20.123Z out from a\n");
        assert_eq!(read(t.path(), "b", 0), "2023-11-14T22:13:20.123Z err from b\n");
        assert_eq!(logs.write_at("../x", Stream::Out, b"no", T, now), None);
        assert!(!t.path().join("../x.log").exists());
    }

    #[test]
    fn a_failing_file_is_said_once_and_retried_later() {
        let t = tempfile::tempdir().unwrap();
        // The log directory cannot be made: a file is in the way.
        let dir = t.path().join("logs");
        fs::write(&dir, "in the way").unwrap();
        let mut logs = Logs::new(dir.clone(), keel_plan::Logs::default());
        let t0 = Instant::now();
        let said = logs.write_at("web", Stream::Out, b"one", T, t0).expect("the failure is said");
        assert!(said.starts_with(&format!("log file {}: ", path(&dir, "web", 0).display())), "{said}");
        assert!(said.ends_with("; not writing it for 60 s"), "{said}");
        assert_eq!(logs.write_at("web", Stream::Out, b"two", T, t0 + Duration::from_secs(1)), None);
        // Retried after RETRY: still failing, and not said again.
        assert_eq!(logs.write_at("web", Stream::Out, b"three", T, t0 + RETRY), None);
        // The way is cleared: the next retry writes, and says so.
        fs::remove_file(&dir).unwrap();
        assert_eq!(logs.write_at("web", Stream::Out, b"four", T, t0 + RETRY + Duration::from_secs(1)), None);
        let back = logs.write_at("web", Stream::Out, b"five", T, t0 + 2 * RETRY + Duration::from_secs(1));
        assert_eq!(back, Some(format!("log file {}: writing again", path(&dir, "web", 0).display())));
        assert_eq!(read(&dir, "web", 0), "2023-11-14T22:13:20.123Z out five\n");
    }

    #[test]
    fn a_full_disk_is_a_failure_like_any_other() {
        // /dev/full: every write fails with ENOSPC.
        let mut state = State::Open { file: OpenOptions::new().append(true).open("/dev/full").unwrap(), size: 0 };
        let t = tempfile::tempdir().unwrap();
        let e = append(t.path(), "web", &mut state, b"x\n", 4096, 2).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
        assert!(matches!(state, State::Closed));
    }
}
