//! Two colluding containers (issue 12, finding 1). `pass-stdout SOCKET` hands this container's
//! stdout pipe to another container over a unix socket on a shared volume, waits until that one
//! is writing into it, and exits. `write-passed SOCKET SECONDS` listens on the socket, takes the
//! pipe and writes short lines into it as fast as it can for at most `SECONDS`. So when PID 1
//! reaps the passer and drains its pipe, the pipe never ends: PID 1 must cut it (the writer then
//! gets EPIPE; std ignores SIGPIPE, so it is an error, not a death) rather than drain until the
//! writer stops.
//!
//! The writer ends with one summary line: bytes written, why it stopped (`EPIPE`, `time-up`, or
//! another errno), when, when the passer left (its end of the socket closed) and how many bytes
//! went into the pipe after that.

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

use crate::errno::Errno;
use crate::report::say;
use crate::sys::{self, Received};

/// The passer retries its connect this long (the writer may start later).
const CONNECT_WITHIN: Duration = Duration::from_secs(60);
/// Between two connect attempts.
const RETRY_EVERY: Duration = Duration::from_millis(200);
/// The passer waits this long for the writer to say it is writing; the writer waits as long for
/// the passer to connect and for its descriptor.
const PEER_WITHIN: Duration = Duration::from_secs(120);
/// The writer tells the passer to go once it has written this much into the passed pipe, so the
/// flood is under way when PID 1 reaps the passer.
const GO_AFTER: u64 = 1 << 20;
/// What the writer writes, over and over: short lines cost PID 1 the most per byte.
const LINE: &[u8] = b"colluder: still writing\n";
/// Lines per write(2).
const LINES_PER_WRITE: usize = 512;
/// The writer looks at its socket at least this often while the pipe is full.
const POLL_EVERY: Duration = Duration::from_millis(50);
/// The byte that carries the descriptor, and the writer's go.
const PASS: u8 = b'p';
const GO: u8 = b'g';

/// `pass-stdout SOCKET`: returns the exit code (0 once the writer is writing into our stdout).
pub fn pass_stdout(socket: &str) -> i32 {
    match pass(Path::new(socket)) {
        Ok(()) => {
            say(&format!("pass-stdout passed its stdout over {socket}; the writer is writing; exiting"));
            0
        }
        Err(why) => {
            say(&format!("pass-stdout failed: {why}"));
            1
        }
    }
}

fn pass(socket: &Path) -> Result<(), String> {
    let conn = connect(socket)?;
    sys::send_fd(conn.as_fd(), io::stdout().as_fd(), PASS).map_err(|e| format!("sendmsg: {e}"))?;
    match wait_for(conn.as_fd(), PEER_WITHIN)? {
        Received::Byte(GO) => Ok(()),
        Received::Byte(b) => Err(format!("the writer sent {b:#04x}, not its go")),
        Received::Fd(..) => Err("the writer sent a descriptor back".to_string()),
        Received::End => Err("the writer hung up before it was writing".to_string()),
    }
}

/// Connects to `socket`, retrying every [`RETRY_EVERY`] for [`CONNECT_WITHIN`].
fn connect(socket: &Path) -> Result<UnixStream, String> {
    let deadline = sys::monotonic().saturating_add(CONNECT_WITHIN);
    loop {
        match UnixStream::connect(socket) {
            Ok(conn) => return Ok(conn),
            Err(e) if sys::monotonic() >= deadline => {
                return Err(format!(
                    "connect {}: {} for {} s",
                    socket.display(),
                    Errno::from_io(&e),
                    CONNECT_WITHIN.as_secs()
                ))
            }
            Err(_) => {
                let _ = sys::nanosleep(RETRY_EVERY);
            }
        }
    }
}

/// Waits at most `within` for one message on `conn`, then reads it.
fn wait_for(conn: std::os::fd::BorrowedFd<'_>, within: Duration) -> Result<Received, String> {
    let deadline = sys::monotonic().saturating_add(within);
    loop {
        let left = deadline.saturating_sub(sys::monotonic());
        if left.is_zero() {
            return Err(format!("nothing from the peer within {} s", within.as_secs()));
        }
        match sys::wait_readable(conn, left) {
            Ok(true) => return sys::recv_fd(conn).map_err(|e| format!("recvmsg: {e}")),
            Ok(false) | Err(Errno(libc::EINTR)) => {}
            Err(e) => return Err(format!("poll: {e}")),
        }
    }
}

/// `write-passed SOCKET SECONDS`: returns the exit code (0 once it wrote until EPIPE or for
/// `seconds`, with its summary printed).
pub fn write_passed(socket: &str, seconds: u64) -> i32 {
    let (conn, pipe) = match receive(Path::new(socket)) {
        Ok(got) => got,
        Err(why) => {
            say(&format!("write-passed failed: {why}"));
            return 1;
        }
    };
    say(&format!("write-passed got a descriptor; writing for at most {seconds} s"));
    match flood(&conn, &pipe, Duration::from_secs(seconds)) {
        Ok(tally) => {
            say(&tally.summary());
            0
        }
        Err(why) => {
            say(&format!("write-passed failed: {why}"));
            1
        }
    }
}

/// Listens on `socket` (a stale one is replaced), accepts one connection and takes the
/// descriptor that comes over it.
fn receive(socket: &Path) -> Result<(UnixStream, OwnedFd), String> {
    match fs::remove_file(socket) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(format!("remove a stale {}: {e}", socket.display()));
        }
        _ => {}
    }
    let listener = UnixListener::bind(socket).map_err(|e| format!("bind {}: {e}", socket.display()))?;
    fs::set_permissions(socket, fs::Permissions::from_mode(0o666)).map_err(|e| format!("chmod: {e}"))?;
    listener.set_nonblocking(true).map_err(|e| format!("listener O_NONBLOCK: {e}"))?;
    let conn = loop {
        match sys::wait_readable(listener.as_fd(), PEER_WITHIN) {
            Ok(true) => {}
            Ok(false) => return Err(format!("no passer connected within {} s", PEER_WITHIN.as_secs())),
            Err(Errno(libc::EINTR)) => continue,
            Err(e) => return Err(format!("poll: {e}")),
        }
        match listener.accept() {
            Ok((conn, _)) => break conn,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("accept: {e}")),
        }
    };
    let _ = fs::remove_file(socket);
    conn.set_nonblocking(false).map_err(|e| format!("connection blocking: {e}"))?;
    match wait_for(conn.as_fd(), PEER_WITHIN)? {
        Received::Fd(fd) => Ok((conn, fd)),
        Received::Byte(b) => Err(format!("the passer sent {b:#04x} without a descriptor")),
        Received::End => Err("the passer hung up without a descriptor".to_string()),
    }
}

/// Writes [`LINE`]s into `pipe` as fast as it will take them until a write fails or `limit`
/// passes; says go on `conn` after [`GO_AFTER`] bytes and notes when the passer hangs up.
fn flood(conn: &UnixStream, pipe: &OwnedFd, limit: Duration) -> Result<Tally, String> {
    sys::set_nonblocking(pipe.as_fd()).map_err(|e| format!("pipe O_NONBLOCK: {e}"))?;
    let lines = LINE.repeat(LINES_PER_WRITE + 1);
    let per_write = LINE.len() * LINES_PER_WRITE;
    let start = sys::monotonic();
    let mut tally = Tally::default();
    let mut told = false;
    let mut peer_open = true;
    loop {
        let now = sys::monotonic().saturating_sub(start);
        if now >= limit {
            tally.end = Some((now, "time-up".to_string()));
            return Ok(tally);
        }
        let wait = limit.saturating_sub(now).min(POLL_EVERY);
        let mut fds = [
            libc::pollfd { fd: pipe.as_raw_fd(), events: libc::POLLOUT, revents: 0 },
            libc::pollfd { fd: if peer_open { conn.as_raw_fd() } else { -1 }, events: libc::POLLIN, revents: 0 },
        ];
        match sys::poll(&mut fds, wait) {
            Ok(_) | Err(Errno(libc::EINTR)) => {}
            Err(e) => return Err(format!("poll: {e}")),
        }
        let [out, peer] = fds;
        if peer.revents != 0 {
            // Only the passer's hang-up is expected; anything else it sends is read and ignored.
            if let Ok(Received::End) | Err(_) = sys::recv_fd(conn.as_fd()) {
                peer_open = false;
                tally.left = Some((sys::monotonic().saturating_sub(start), tally.written));
            }
        }
        if out.revents == 0 {
            continue;
        }
        // Whole lines across partial writes: start where the last write stopped in the pattern.
        let at = usize::try_from(tally.written % LINE.len() as u64).unwrap_or(0);
        let chunk = lines.get(at..at + per_write).unwrap_or(LINE);
        match sys::write(pipe.as_raw_fd(), chunk) {
            Ok(n) => tally.written += n as u64,
            Err(Errno(libc::EAGAIN | libc::EINTR)) => {}
            Err(e) => {
                tally.end = Some((sys::monotonic().saturating_sub(start), e.name()));
                return Ok(tally);
            }
        }
        if !told && tally.written >= GO_AFTER {
            told = true;
            sys::send(conn.as_fd(), &[GO]).map_err(|e| format!("send the go: {e}"))?;
        }
    }
}

/// What the writer did, for its summary line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Bytes written into the passed pipe.
    pub written: u64,
    /// When the passer hung up (from the first write), and the bytes written by then.
    pub left: Option<(Duration, u64)>,
    /// When writing stopped, and why: an errno name (`EPIPE`: the pipe was cut) or `time-up`.
    pub end: Option<(Duration, String)>,
}

impl Tally {
    /// `write-passed wrote=N end=WHY end_ms=T passer_left_ms=T after_left=N cut_after_left_ms=T`;
    /// a value not known is `none`, and `cut_after_left_ms` is known only when the pipe was cut
    /// (EPIPE) after the passer left.
    pub fn summary(&self) -> String {
        let ms = |d: Duration| d.as_millis().to_string();
        let none = || "none".to_string();
        let (end_ms, why) = match &self.end {
            Some((at, why)) => (ms(*at), why.clone()),
            None => (none(), none()),
        };
        let (left_ms, after) = match self.left {
            Some((at, by_then)) => (ms(at), self.written.saturating_sub(by_then).to_string()),
            None => (none(), none()),
        };
        let cut_after = match (&self.end, self.left) {
            (Some((end, why)), Some((left, _))) if why == "EPIPE" => ms(end.saturating_sub(left)),
            _ => none(),
        };
        format!(
            "write-passed wrote={} end={why} end_ms={end_ms} passer_left_ms={left_ms} after_left={after} \
             cut_after_left_ms={cut_after}",
            self.written
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn summaries() {
        let cut = Tally {
            written: 3_000_000,
            left: Some((Duration::from_millis(1500), 2_000_000)),
            end: Some((Duration::from_millis(1750), "EPIPE".to_string())),
        };
        assert_eq!(
            cut.summary(),
            "write-passed wrote=3000000 end=EPIPE end_ms=1750 passer_left_ms=1500 after_left=1000000 \
             cut_after_left_ms=250"
        );
        let uncut = Tally { end: Some((Duration::from_secs(20), "time-up".into())), ..cut };
        assert!(uncut.summary().contains(" end=time-up end_ms=20000 "));
        assert!(uncut.summary().ends_with(" cut_after_left_ms=none"), "no cut, no time to it");
        let alone = Tally { written: 5, left: None, end: Some((Duration::ZERO, "EPIPE".into())) };
        assert!(alone.summary().ends_with(" passer_left_ms=none after_left=none cut_after_left_ms=none"));
        assert!(Tally::default().summary().contains(" end=none end_ms=none "));
    }

    /// The two modes' plumbing, in one process: a pipe's write end goes over a socket pair and
    /// the received copy writes into the same pipe; once the read end is gone, writes fail with
    /// EPIPE (SIGPIPE is ignored by std's runtime), and the flood reports it.
    #[test]
    fn a_passed_pipe_is_written_until_it_is_cut() {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut reader, writer) = pipe();
        sys::send_fd(a.as_fd(), writer.as_fd(), PASS).unwrap();
        drop(writer);
        let Received::Fd(passed) = sys::recv_fd(b.as_fd()).unwrap() else { panic!("no descriptor") };
        assert_eq!(sys::write(passed.as_raw_fd(), b"hello\n"), Ok(6));
        let mut got = [0u8; 6];
        reader.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello\n");
        // The passer hangs up; the reader goes after 2 MiB, so the go (after 1 MiB) was sent.
        let reading = std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            let mut total = 0;
            while total < 2 << 20 {
                total += reader.read(&mut buf).unwrap();
            }
        });
        let tally = flood(&b, &passed, Duration::from_secs(30)).unwrap();
        reading.join().unwrap();
        let (_, why) = tally.end.clone().unwrap();
        assert_eq!(why, "EPIPE", "{tally:?}");
        assert!(tally.written >= 2 << 20, "{tally:?}");
        let mut go = [0u8; 1];
        (&a).read_exact(&mut go).unwrap();
        assert_eq!(go, [GO]);
        drop(a);
        assert_eq!(sys::recv_fd(b.as_fd()).map(|r| matches!(r, Received::End)), Ok(true));
    }

    fn pipe() -> (io::PipeReader, OwnedFd) {
        let (r, w) = io::pipe().unwrap();
        (r, OwnedFd::from(w))
    }
}
