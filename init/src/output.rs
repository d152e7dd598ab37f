//! Container output on the console: each line as `<name>| <line>`, with its control characters
//! escaped, so that what a container prints can neither move the cursor, rewrite a line
//! (`\r`), nor start a line of its own: every console line that does not begin with `NAME| `
//! is keel-init's or the kernel's.

/// Longer lines are broken up (so a container that never writes a newline cannot grow init).
pub const MAX_LINE: usize = 4096;

/// Splits a byte stream into lines, keeping the unfinished last one for the next chunk.
#[derive(Debug, Default)]
pub struct Lines {
    partial: Vec<u8>,
    /// The last line was broken up for length: its newline ends nothing new.
    broken: bool,
}

impl Lines {
    /// Feed `data`; `emit` gets each finished line, without its newline.
    pub fn push(&mut self, data: &[u8], mut emit: impl FnMut(&[u8])) {
        for piece in data.split_inclusive(|&b| b == b'\n') {
            match piece.strip_suffix(b"\n") {
                Some(line) => {
                    self.partial.extend_from_slice(line);
                    if !(self.broken && self.partial.is_empty()) {
                        emit(&self.partial);
                    }
                    self.partial.clear();
                    self.broken = false;
                }
                None => {
                    self.partial.extend_from_slice(piece);
                    if self.partial.len() >= MAX_LINE {
                        emit(&self.partial);
                        self.partial.clear();
                        self.broken = true;
                    }
                }
            }
        }
    }

    /// End of stream: emit the unfinished last line, if any.
    pub fn finish(&mut self, mut emit: impl FnMut(&[u8])) {
        if !self.partial.is_empty() {
            emit(&self.partial);
            self.partial.clear();
        }
    }
}

/// The console line for `line` of container `name`: `name| line\n`, escaped by [`escape`].
pub fn prefixed(name: &str, line: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + line.len() + 3);
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"| ");
    escape(line, &mut out);
    out.push(b'\n');
    out
}

pub use keel_plan::text::escape;

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(chunks: &[&[u8]]) -> Vec<String> {
        let mut lines = Lines::default();
        let mut out = Vec::new();
        for c in chunks {
            lines.push(c, |l| out.push(String::from_utf8_lossy(l).into_owned()));
        }
        lines.finish(|l| out.push(String::from_utf8_lossy(l).into_owned()));
        out
    }

    #[test]
    fn splits_lines_across_chunks() {
        assert_eq!(feed(&[b"hello\nwor", b"ld\n", b"\n", b"last"]), ["hello", "world", "", "last"]);
        assert_eq!(feed(&[b"a\nb\nc\n"]), ["a", "b", "c"]);
        assert_eq!(feed(&[b""]), Vec::<String>::new());
    }

    #[test]
    fn bounds_long_lines() {
        let long = vec![b'x'; MAX_LINE + 10];
        let out = feed(&[&long, b"\n", b"\n"]);
        assert_eq!(out.iter().map(String::len).collect::<Vec<_>>(), [MAX_LINE + 10, 0]);
        let out = feed(&[&long[..MAX_LINE / 2], &long[..MAX_LINE / 2], b"tail\n"]);
        assert_eq!(out.iter().map(String::len).collect::<Vec<_>>(), [MAX_LINE, 4]);
    }

    #[test]
    fn prefixes_with_the_name() {
        assert_eq!(prefixed("hello", b"Hello from keel!"), b"hello| Hello from keel!\n");
        assert_eq!(prefixed("web", b""), b"web| \n");
    }

    /// Finding 7 of the hardening review: a container cannot forge or hide console lines.
    #[test]
    fn control_characters_are_escaped() {
        let line = |b: &[u8]| String::from_utf8(prefixed("web", b)).unwrap();
        assert_eq!(line(b"\x1b[2J\x1b[Hkeel: all fine"), "web| \\x1b[2J\\x1b[Hkeel: all fine\n");
        assert_eq!(line(b"ok\rkeel: reboot: Power down"), "web| ok\\x0dkeel: reboot: Power down\n");
        assert_eq!(line("a\u{9b}31m".as_bytes()), "web| a\\u{9b}31m\n");
        assert_eq!(line(b"\xff\x9b bytes"), "web| \\xff\\x9b bytes\n");
        assert_eq!(line(b"\x7f\x00"), "web| \\x7f\\x00\n");
        assert_eq!(line("tab\there, caf\u{e9}, C:\\path".as_bytes()), "web| tab\there, caf\u{e9}, C:\\path\n");
    }
}
