//! The console: fds 1 and 2 are `/dev/console` (the serial port), where everything init says goes.
//!
//! Writes are whole lines in one `write` each, and errors are ignored: if the console is gone there
//! is nobody left to tell.

use std::fmt::Display;
use std::io::{self, Write};
use std::path::Path;

use crate::sys;

/// The kernel's console device, present in the initramfs.
pub const CONSOLE: &str = "/dev/console";

/// Make sure fds 0, 1 and 2 are open (the kernel opens the console on them when it can).
pub fn setup() {
    // Nothing to report to if this fails.
    let _ = sys::reopen_stdio(Path::new(CONSOLE));
}

/// Write `bytes` (whole lines) to the console.
pub fn write(bytes: &[u8]) {
    let mut out = io::stdout().lock();
    let _ = out.write_all(bytes);
    let _ = out.flush();
}

/// Print `keel: <msg>`.
pub fn say(msg: impl Display) {
    write(format!("keel: {msg}\n").as_bytes());
}

/// Wait until the serial port has sent everything (before powering off, which would cut it short).
pub fn drain() {
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

    #[test]
    fn chains_sources() {
        let e = keel_runtime::RuntimeError::Start {
            step: "exec /bin/nope".into(),
            source: io::Error::from_raw_os_error(libc::ENOENT),
        };
        assert_eq!(chain(&e), "exec /bin/nope: No such file or directory (os error 2)");
    }
}
