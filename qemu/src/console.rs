//! Serial console capture: a reader thread splits QEMU's output into timestamped lines; waiters
//! block on a condition variable until a line matches, the stream ends, or time runs out.

use std::io::{Read, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// One complete console line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// The line without its `\n`, `\r` removed, ANSI escapes kept, invalid UTF-8 replaced.
    pub text: String,
    /// When its `\n` arrived, measured on the host's monotonic clock from just before QEMU was
    /// started.
    pub at: Duration,
}

/// Where the next search starts: a line and a byte offset in it (just past the previous match).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Cursor {
    line: usize,
    offset: usize,
}

/// How a wait ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Wait {
    /// A line matched.
    Found(Line),
    /// The stream ended (QEMU exited) with no match.
    Closed,
    /// The deadline passed with no match.
    TimedOut,
}

/// A captured byte stream (QEMU's serial output, or its stderr), shared with its reader thread.
#[derive(Debug)]
pub(crate) struct Console {
    start: Instant,
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    lines: Vec<Line>,
    /// Bytes of the line still being written, `\r` removed.
    partial: Vec<u8>,
    closed: bool,
}

impl Console {
    /// An empty console whose line times count from `start`.
    pub(crate) fn new(start: Instant) -> Console {
        Console { start, state: Mutex::new(State::default()), changed: Condvar::new() }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave State inconsistent in a way that matters
        // (worst case a line is missing), so keep going with the data.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends bytes that arrived at `at`, completing lines at each `\n`.
    pub(crate) fn push(&self, bytes: &[u8], at: Duration) {
        let mut state = self.lock();
        for &b in bytes {
            match b {
                b'\r' => {}
                b'\n' => {
                    let text = String::from_utf8_lossy(&state.partial).into_owned();
                    state.partial.clear();
                    state.lines.push(Line { text, at });
                }
                _ => state.partial.push(b),
            }
        }
        drop(state);
        self.changed.notify_all();
    }

    /// Marks the end of the stream.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    /// Everything so far: complete lines each followed by `\n`, then the unfinished line.
    pub(crate) fn text(&self) -> String {
        let state = self.lock();
        let mut text = String::new();
        for line in &state.lines {
            text.push_str(&line.text);
            text.push('\n');
        }
        text.push_str(&String::from_utf8_lossy(&state.partial));
        text
    }

    /// All complete lines so far.
    pub(crate) fn lines(&self) -> Vec<Line> {
        self.lock().lines.clone()
    }

    /// The last `n` lines, the unfinished one counted, joined with `\n`.
    pub(crate) fn tail(&self, n: usize) -> String {
        let state = self.lock();
        let partial = (!state.partial.is_empty()).then(|| String::from_utf8_lossy(&state.partial).into_owned());
        let complete = n.saturating_sub(usize::from(partial.is_some()));
        let skip = state.lines.len().saturating_sub(complete);
        let mut out: Vec<String> = state.lines[skip..].iter().map(|l| l.text.clone()).collect();
        out.extend(partial);
        out.join("\n")
    }

    /// Waits until a complete line at or after `cursor` contains `pattern`, then moves `cursor`
    /// just past the match. Only complete lines are searched, so a returned line is never cut
    /// short (QEMU often writes the serial port a byte at a time).
    pub(crate) fn wait_for(&self, pattern: &str, cursor: &mut Cursor, deadline: Instant) -> Wait {
        let mut state = self.lock();
        // Lines before `next` are known not to match.
        let mut next = cursor.line;
        loop {
            while next < state.lines.len() {
                let text = &state.lines[next].text;
                let from = if next == cursor.line { ceil_char_boundary(text, cursor.offset) } else { 0 };
                if let Some(pos) = text[from..].find(pattern) {
                    *cursor = Cursor { line: next, offset: from + pos + pattern.len() };
                    return Wait::Found(state.lines[next].clone());
                }
                next += 1;
            }
            if state.closed {
                return Wait::Closed;
            }
            let now = Instant::now();
            if now >= deadline {
                return Wait::TimedOut;
            }
            state = self.changed.wait_timeout(state, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// Waits until the stream has ended; `false` if `deadline` passed first.
    pub(crate) fn wait_closed(&self, deadline: Instant) -> bool {
        let mut state = self.lock();
        loop {
            if state.closed {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = self.changed.wait_timeout(state, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
    }
}

/// The smallest char boundary of `s` at or after `i` (or `s.len()`).
fn ceil_char_boundary(s: &str, mut i: usize) -> usize {
    while i < s.len() && !s.is_char_boundary(i) {
        i += 1;
    }
    i.min(s.len())
}

/// Starts a thread that copies `source` into `console` until end of stream, stamping each chunk
/// with its arrival time, and, when given, echoing the raw bytes to `echo` first. With a `rate`
/// (bytes per second) it reads no faster than that, in chunks of about 50 ms of the line.
pub(crate) fn spawn_reader(
    name: &str,
    mut source: impl Read + Send + 'static,
    console: Arc<Console>,
    mut echo: Option<Box<dyn Write + Send>>,
    rate: Option<u32>,
) -> std::io::Result<JoinHandle<()>> {
    thread::Builder::new().name(name.to_owned()).spawn(move || {
        let mut buf = [0u8; 8192];
        let chunk = rate.map_or(buf.len(), |r| (r as usize / 20).clamp(1, buf.len()));
        let mut pace = rate.map(Pace::new);
        loop {
            match source.read(&mut buf[..chunk]) {
                Ok(0) => break,
                Ok(n) => {
                    let at = console.start.elapsed();
                    if let Some(out) = echo.as_mut() {
                        // Echo is a convenience; a closed stdout must not stop the capture.
                        let _ = out.write_all(&buf[..n]).and_then(|()| out.flush());
                    }
                    console.push(&buf[..n], at);
                    if let Some(pace) = pace.as_mut() {
                        pace.sent(n);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        console.close();
    })
}

/// A serial line's pace: after `n` more bytes, wait until the line would have sent them all.
/// Idle time is not saved up, so a burst after a pause goes no faster than the rate.
struct Pace {
    rate: u32,
    /// When the bytes counted so far are sent.
    free_at: Instant,
}

impl Pace {
    fn new(rate: u32) -> Pace {
        Pace { rate: rate.max(1), free_at: Instant::now() }
    }

    fn sent(&mut self, n: usize) {
        let now = Instant::now();
        let from = self.free_at.max(now);
        self.free_at = from + Duration::from_secs_f64(n as f64 / f64::from(self.rate));
        thread::sleep(self.free_at.saturating_duration_since(now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn texts(console: &Console) -> Vec<String> {
        console.lines().into_iter().map(|l| l.text).collect()
    }

    #[test]
    fn splits_lines_across_chunks_and_strips_cr() {
        let c = Console::new(Instant::now());
        c.push(b"\x1b[2Jfirst\r", ms(1));
        c.push(b"\nsec", ms(2));
        c.push(b"ond\r\nthi", ms(3));
        assert_eq!(texts(&c), ["\x1b[2Jfirst", "second"]);
        assert_eq!(c.lines()[0].at, ms(2), "a line's time is its newline's");
        assert_eq!(c.lines()[1].at, ms(3));
        assert_eq!(c.text(), "\x1b[2Jfirst\nsecond\nthi");
        assert_eq!(c.tail(2), "second\nthi");
        assert_eq!(c.tail(10), "\x1b[2Jfirst\nsecond\nthi");
    }

    #[test]
    fn utf8_split_across_chunks_survives() {
        let c = Console::new(Instant::now());
        let bytes = "größe ✓\n".as_bytes();
        c.push(&bytes[..3], ms(1));
        c.push(&bytes[3..], ms(1));
        c.push(b"bad \xff\n", ms(1));
        assert_eq!(texts(&c), ["größe ✓", "bad \u{fffd}"]);
    }

    #[test]
    fn wait_for_consumes_the_console_in_order() {
        let c = Console::new(Instant::now());
        c.push(b"a: one two\nb: one\nunfinished one", ms(5));
        let soon = Instant::now() + ms(50);
        let mut cur = Cursor::default();
        assert_eq!(c.wait_for("one", &mut cur, soon), Wait::Found(Line { text: "a: one two".into(), at: ms(5) }));
        // The same line again, past the first match.
        assert!(matches!(c.wait_for("two", &mut cur, soon), Wait::Found(l) if l.text == "a: one two"));
        assert!(matches!(c.wait_for("one", &mut cur, soon), Wait::Found(l) if l.text == "b: one"));
        // The unfinished line does not match until it is complete.
        assert_eq!(c.wait_for("one", &mut cur, soon), Wait::TimedOut);
        c.push(b"\n", ms(9));
        assert_eq!(c.wait_for("one", &mut cur, soon), Wait::Found(Line { text: "unfinished one".into(), at: ms(9) }));
        c.close();
        assert_eq!(c.wait_for("one", &mut cur, soon), Wait::Closed);
        // A fresh cursor still finds earlier lines after the stream closed.
        assert!(matches!(c.wait_for("b:", &mut Cursor::default(), soon), Wait::Found(_)));
    }

    #[test]
    fn a_rate_reads_no_faster_than_the_line() {
        let c = Arc::new(Console::new(Instant::now()));
        let (reader, mut writer) = std::os::unix::net::UnixStream::pair().unwrap();
        let started = Instant::now();
        let handle = spawn_reader("test-line", reader, c.clone(), None, Some(20_000)).unwrap();
        // 4,000 bytes at 20,000 B/s: the reader takes at least 200 ms to pass them on, however
        // fast they were written.
        writer.write_all(&[b'x'; 3999]).unwrap();
        writer.write_all(b"\n").unwrap();
        drop(writer);
        handle.join().unwrap();
        assert_eq!(c.lines()[0].text.len(), 3999);
        assert!(started.elapsed() >= ms(190), "read 4,000 bytes in {:?}", started.elapsed());
    }

    #[test]
    fn waiter_wakes_on_new_lines_and_on_close() {
        let c = Arc::new(Console::new(Instant::now()));
        let (reader, mut writer) = std::os::unix::net::UnixStream::pair().unwrap();
        let handle = spawn_reader("test-reader", reader, c.clone(), None, None).unwrap();
        let waiter = {
            let c = c.clone();
            thread::spawn(move || {
                let mut cur = Cursor::default();
                let deadline = Instant::now() + Duration::from_secs(10);
                (c.wait_for("READY", &mut cur, deadline), c.wait_for("never", &mut cur, deadline))
            })
        };
        thread::sleep(ms(20));
        writer.write_all(b"booting\nREA").unwrap();
        thread::sleep(ms(20));
        writer.write_all(b"DY now\n").unwrap();
        drop(writer);
        let (found, closed) = waiter.join().unwrap();
        assert!(matches!(found, Wait::Found(l) if l.text == "READY now" && l.at >= ms(40)));
        assert_eq!(closed, Wait::Closed);
        handle.join().unwrap();
        assert!(c.wait_closed(Instant::now()));
    }

    #[test]
    fn wait_times_out_without_busy_looping() {
        let c = Console::new(Instant::now());
        let started = Instant::now();
        assert_eq!(c.wait_for("x", &mut Cursor::default(), started + ms(100)), Wait::TimedOut);
        assert!(started.elapsed() >= ms(100));
        assert!(!c.wait_closed(Instant::now() + ms(10)));
    }
}
