//! Text from containers made safe to show on a terminal.

/// Append `line` to `out` with every control character but tab escaped: C0 and DEL as
/// `\xNN`, C1 (U+0080–U+009F, which some terminals take as CSI and the like) as `\u{NN}`, and
/// each byte that is not UTF-8 as `\xNN`. Everything else, backslashes included, is kept.
pub fn escape(line: &[u8], out: &mut Vec<u8>) {
    use std::io::Write;
    for chunk in line.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\t' || !c.is_control() {
                let mut b = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            } else if (c as u32) < 0x80 {
                let _ = write!(out, "\\x{:02x}", c as u32);
            } else {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::escape;

    fn escaped(b: &[u8]) -> String {
        let mut out = Vec::new();
        escape(b, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn terminal_controls_are_escaped_and_text_is_kept() {
        assert_eq!(escaped(b"\x1b[2J\rclear\x07"), "\\x1b[2J\\x0dclear\\x07");
        assert_eq!(escaped("tab\tand \u{9b}31m".as_bytes()), "tab\tand \\u{9b}31m");
        assert_eq!(escaped(b"bad \xff utf-8 \\ kept"), "bad \\xff utf-8 \\ kept");
        assert_eq!(escaped("grüße, 世界".as_bytes()), "grüße, 世界");
    }
}
