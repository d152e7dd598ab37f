//! The console: fds 1 and 2 are `/dev/console` (the serial port), where everything init says goes.
//!
//! Writes are whole lines. They never block the caller: lines go into a bounded queue that a
//! thread of its own writes out (a 115200-baud serial line takes about 11 KiB/s, and a
//! container can print far faster). Container lines are dropped once the queue holds
//! [`CONTAINER_BYTES`]; keel-init's own lines only when it holds [`QUEUE_BYTES`]. The drops are
//! counted and said (`keel: console: N lines dropped …`) before a line that gets through, at
//! most once a second and before the last line queued; the containers' log files on keel-data keep every line. Errors are ignored: if the
//! console is gone there is nobody left to tell.

use std::collections::VecDeque;
use std::fmt::Display;
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::sys;

/// The kernel's console device, present in the initramfs.
pub const CONSOLE: &str = "/dev/console";

/// Bytes waiting for the console at most.
pub const QUEUE_BYTES: usize = 256 * 1024;
/// Bytes waiting past which container lines are dropped (the rest is kept for keel-init's).
pub const CONTAINER_BYTES: usize = 192 * 1024;
/// How often at most a flood's drops are said: each report takes console time of its own.
const REPORT_EVERY: Duration = Duration::from_secs(1);
/// How long [`drain`] waits for the queue to empty before power-off.
const DRAIN_WITHIN: Duration = Duration::from_secs(5);

/// Make sure fds 0, 1 and 2 are open (the kernel opens the console on them when it can).
pub fn setup() {
    // Nothing to report to if this fails.
    let _ = sys::reopen_stdio(Path::new(CONSOLE));
}

/// Who a line is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// keel-init itself.
    Keel,
    /// A container's output.
    Container,
}

/// A queue of lines and the thread that writes them out.
#[derive(Debug)]
pub struct Queue {
    state: Mutex<State>,
    /// Signalled when a line is queued.
    queued: Condvar,
    /// Signalled when the queue is empty and nothing is being written.
    idle: Condvar,
}

#[derive(Debug, Default)]
struct State {
    lines: VecDeque<Vec<u8>>,
    bytes: usize,
    dropped: u64,
    /// When the drops were last said.
    reported: Option<Instant>,
    writing: bool,
}

impl Queue {
    /// A queue written out to `out` by a new thread; `None` if the thread cannot start.
    pub fn start(out: impl Write + Send + 'static) -> Option<Arc<Queue>> {
        let q = Arc::new(Queue { state: Mutex::new(State::default()), queued: Condvar::new(), idle: Condvar::new() });
        let writer = Arc::clone(&q);
        std::thread::Builder::new()
            .name("console".into())
            .stack_size(64 * 1024)
            .spawn(move || writer.write_out(out))
            .ok()?;
        Some(q)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves at worst a line half-counted.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue `bytes`, or drop and count it if the queue is too full for a line `from`. Never
    /// blocks for longer than the lock is held (a push or a pop).
    pub fn push(&self, bytes: &[u8], from: Origin) {
        let limit = match from {
            Origin::Keel => QUEUE_BYTES,
            Origin::Container => CONTAINER_BYTES,
        };
        let mut s = self.lock();
        if s.bytes + bytes.len() > limit {
            s.dropped += 1;
            return;
        }
        s.bytes += bytes.len();
        s.lines.push_back(bytes.to_vec());
        drop(s);
        self.queued.notify_one();
    }

    /// Wait up to `within` for everything queued to be written.
    pub fn flush(&self, within: Duration) {
        let deadline = Instant::now() + within;
        let mut s = self.lock();
        while !s.lines.is_empty() || s.writing {
            let Some(left) = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) else { return };
            s = match self.idle.wait_timeout(s, left) {
                Ok((s, _)) => s,
                Err(e) => e.into_inner().0,
            };
        }
    }

    /// The writer thread: forever, the next line (after the count of lines dropped before it).
    fn write_out(&self, mut out: impl Write) {
        loop {
            let mut s = self.lock();
            while s.lines.is_empty() {
                s.writing = false;
                self.idle.notify_all();
                s = match self.queued.wait(s) {
                    Ok(s) => s,
                    Err(e) => e.into_inner(),
                };
            }
            s.writing = true;
            // Said at most every REPORT_EVERY, and before the last queued line, so no count is
            // left behind once the flood stops.
            let due = s.reported.is_none_or(|t| t.elapsed() >= REPORT_EVERY) || s.lines.len() == 1;
            let dropped = if due { std::mem::take(&mut s.dropped) } else { 0 };
            if dropped > 0 {
                s.reported = Some(Instant::now());
            }
            let line = s.lines.pop_front().unwrap_or_default();
            s.bytes -= line.len();
            drop(s);
            if dropped > 0 {
                let _ = writeln!(
                    out,
                    "keel: console: {dropped} lines dropped (the console is slower than the output; the log files on keel-data have every container line)"
                );
            }
            let _ = out.write_all(&line);
            let _ = out.flush();
        }
    }
}

/// The console's queue, started on first use; `None` (write directly) if it could not be.
fn queue() -> Option<&'static Queue> {
    static QUEUE: OnceLock<Option<Arc<Queue>>> = OnceLock::new();
    QUEUE.get_or_init(|| Queue::start(io::stdout())).as_deref()
}

/// Write `bytes` (whole lines of keel-init's) to the console.
pub fn write(bytes: &[u8]) {
    write_from(bytes, Origin::Keel);
}

/// Write `bytes` (whole lines) to the console, as lines `from`.
pub fn write_from(bytes: &[u8], from: Origin) {
    match queue() {
        Some(q) => q.push(bytes, from),
        None => {
            let mut out = io::stdout().lock();
            let _ = out.write_all(bytes);
            let _ = out.flush();
        }
    }
}

/// Print `keel: <msg>`.
pub fn say(msg: impl Display) {
    write(format!("keel: {msg}\n").as_bytes());
}

/// Wait (at most [`DRAIN_WITHIN`]) until everything queued is written and the serial port has
/// sent it (before powering off, which would cut it short).
pub fn drain() {
    if let Some(q) = queue() {
        q.flush(DRAIN_WITHIN);
    }
    let _ = sys::tcdrain(io::stdout());
}

/// `err` and its sources, `outer: inner: innermost` (each message is printed once, at the top).
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut s = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        s.push_str(": ");
        s.push_str(&e.to_string());
        source = e.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer as slow as a serial line: 2 ms a write.
    struct Slow(Arc<Mutex<Vec<u8>>>);
    impl Write for Slow {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            std::thread::sleep(Duration::from_millis(2));
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Finding 2 of the hardening review: a flood of container output never blocks the
    /// caller; what the console cannot take is dropped, counted and said, and keel-init's own
    /// lines still get through.
    #[test]
    fn a_flood_is_dropped_and_counted_not_waited_for() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let q = Queue::start(Slow(Arc::clone(&seen))).unwrap();
        let line = [b'x'; 1023].iter().copied().chain([b'\n']).collect::<Vec<u8>>();
        let started = Instant::now();
        for _ in 0..2000 {
            q.push(&line, Origin::Container);
        }
        q.push(b"keel: still here\n", Origin::Keel);
        let pushing = started.elapsed();
        q.flush(Duration::from_secs(60));
        // Once the console has caught up, lines get through again.
        q.push(b"web| after\n", Origin::Container);
        q.flush(Duration::from_secs(10));
        // 2 MB at 2 ms a line would take 4 s; the pushes took a few milliseconds.
        assert!(pushing < Duration::from_millis(500), "pushing 2000 lines took {pushing:?}");
        let text = String::from_utf8(seen.lock().unwrap().clone()).unwrap();
        let kept = text.lines().filter(|l| l.starts_with('x')).count();
        assert!((CONTAINER_BYTES / 1024 - 1..2000).contains(&kept), "{kept} lines kept");
        let reports: Vec<&str> = text.lines().filter(|l| l.starts_with("keel: console: ")).collect();
        let dropped: usize = reports.iter().map(|r| r.split(' ').nth(2).unwrap().parse::<usize>().unwrap()).sum();
        assert_eq!(kept + dropped, 2000, "{reports:?}; {kept} kept");
        // The console took well under REPORT_EVERY per second of flood: at most the first
        // report and the one before the last queued line.
        assert!((1..=2).contains(&reports.len()), "{} drop reports: {reports:?}", reports.len());
        assert!(text.contains("keel: still here\n"), "keel-init's line was dropped");
        assert!(text.ends_with("web| after\n"));
    }

    /// Under a long flood the drop report is said about once a second, not before every line
    /// that gets through (it would take more of the console than the lines).
    #[test]
    fn a_long_flood_is_said_about_once_a_second() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let q = Queue::start(Slow(Arc::clone(&seen))).unwrap();
        let line = [b'x'; 1023].iter().copied().chain([b'\n']).collect::<Vec<u8>>();
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(2500) {
            for _ in 0..10 {
                q.push(&line, Origin::Container);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        q.flush(Duration::from_secs(10));
        let text = String::from_utf8(seen.lock().unwrap().clone()).unwrap();
        let reports = text.lines().filter(|l| l.starts_with("keel: console: ")).count();
        let kept = text.lines().filter(|l| l.starts_with('x')).count();
        // The first drop, then one a second, then one before the last line: 2 to 5 in 2.5 s.
        assert!((2..=5).contains(&reports), "{reports} drop reports for {kept} lines kept");
    }

    #[test]
    fn chains_sources() {
        let e = keel_runtime::RuntimeError::Start {
            step: "exec /bin/nope".into(),
            source: io::Error::from_raw_os_error(libc::ENOENT),
        };
        assert_eq!(chain(&e), "exec /bin/nope: No such file or directory (os error 2)");
    }
}
