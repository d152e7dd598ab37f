//! Container output on the console: each line as `<name>| <line>`.

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

/// The console line for `line` of container `name`: `name| line\n`.
pub fn prefixed(name: &str, line: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + line.len() + 3);
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"| ");
    out.extend_from_slice(line);
    out.push(b'\n');
    out
}

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
}
