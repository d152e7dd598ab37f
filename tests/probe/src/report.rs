//! Output: every line goes to stdout in one write(2), so lines from a container never interleave
//! or sit in a buffer when the process dies.

use crate::errno::Errno;
use crate::sys;

/// Writes `probe: TEXT\n` to stdout. Newlines inside `text` become spaces: one report, one line.
pub fn say(text: &str) {
    let mut line = String::with_capacity(text.len() + 8);
    line.push_str("probe: ");
    line.extend(text.chars().map(|c| if c == '\n' { ' ' } else { c }));
    line.push('\n');
    write_all(line.as_bytes());
}

/// Writes `bytes` to fd 1: one write(2) unless the kernel takes less (then the rest follows).
/// Errors are dropped: there is nowhere else to report them.
fn write_all(mut bytes: &[u8]) {
    while !bytes.is_empty() {
        match sys::write(1, bytes) {
            Ok(0) => return,
            Ok(n) => bytes = bytes.get(n..).unwrap_or_default(),
            Err(Errno(libc::EINTR)) => continue,
            Err(_) => return,
        }
    }
}

/// What one check found: `Ok(detail)` passes, `Err(detail)` fails.
pub type Outcome = Result<String, String>;

/// Counts checks as they are printed.
#[derive(Debug)]
pub struct Report {
    ok: u32,
    failed: u32,
    /// Where lines go: [`say`], or a stand-in in unit tests.
    out: fn(&str),
}

impl Default for Report {
    fn default() -> Self {
        Report { ok: 0, failed: 0, out: say }
    }
}

impl Report {
    /// Prints `probe: ok NAME DETAIL` or `probe: FAIL NAME DETAIL` and counts it.
    pub fn record(&mut self, name: &str, outcome: Outcome) {
        match outcome {
            Ok(detail) => {
                self.ok += 1;
                (self.out)(&format!("ok {name} {detail}"));
            }
            Err(detail) => {
                self.failed += 1;
                (self.out)(&format!("FAIL {name} {detail}"));
            }
        }
    }

    /// Prints `probe: summary N ok M failed`; the exit code is 0 if nothing failed, else 1.
    pub fn finish(self) -> i32 {
        (self.out)(&format!("summary {} ok {} failed", self.ok, self.failed));
        i32::from(self.failed != 0)
    }
}

/// `Ok(detail)` if `pass`, else `Err(detail)`.
pub fn verdict(pass: bool, detail: String) -> Outcome {
    if pass {
        Ok(detail)
    } else {
        Err(detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_exit_code() {
        let quiet = || Report { ok: 0, failed: 0, out: |_| {} };
        let mut r = quiet();
        r.record("a", Ok("fine".into()));
        assert_eq!((r.ok, r.failed), (1, 0));
        r.record("b", Err("broken".into()));
        assert_eq!((r.ok, r.failed), (1, 1));
        assert_eq!(r.finish(), 1);
        assert_eq!(quiet().finish(), 0);
        assert_eq!(verdict(false, "x".into()), Err("x".to_string()));
    }
}
