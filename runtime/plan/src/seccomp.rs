//! The file format of compiled seccomp filters, shared by the builder (writer) and the runtime
//! (reader): the magic `KEELBPF1`, then for each program a little-endian `u32` instruction count
//! followed by that many 8-byte classic-BPF instructions (`struct sock_filter`: `u16 code`,
//! `u8 jt`, `u8 jf`, `u32 k`, little-endian, as on both supported arches). Programs are
//! installed in file order; when two return the same action, the later one's data wins.

/// First bytes of every filter file.
pub const MAGIC: &[u8; 8] = b"KEELBPF1";
/// The kernel's limit on instructions per program (BPF_MAXINSNS).
pub const MAX_INSNS: usize = 4096;

/// One classic-BPF instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// Opcode.
    pub code: u16,
    /// Jump offset if true.
    pub jt: u8,
    /// Jump offset if false.
    pub jf: u8,
    /// Operand.
    pub k: u32,
}

/// Encode `programs` in the file format.
pub fn encode(programs: &[Vec<Insn>]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    for p in programs {
        out.extend_from_slice(&(p.len() as u32).to_le_bytes());
        for i in p {
            out.extend_from_slice(&i.code.to_le_bytes());
            out.push(i.jt);
            out.push(i.jf);
            out.extend_from_slice(&i.k.to_le_bytes());
        }
    }
    out
}

/// A filter file that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError(pub String);

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not a keel seccomp filter file: {}", self.0)
    }
}

impl std::error::Error for FormatError {}

/// Decode a filter file into its programs.
pub fn decode(bytes: &[u8]) -> Result<Vec<Vec<Insn>>, FormatError> {
    let rest = bytes.strip_prefix(MAGIC.as_slice()).ok_or_else(|| FormatError("bad magic".into()))?;
    let mut rest = rest;
    let mut programs = Vec::new();
    while !rest.is_empty() {
        let (count, tail) = rest.split_first_chunk::<4>().ok_or_else(|| FormatError("truncated count".into()))?;
        let count = u32::from_le_bytes(*count) as usize;
        if count == 0 || count > MAX_INSNS {
            return Err(FormatError(format!("program of {count} instructions")));
        }
        let len = count * 8;
        if tail.len() < len {
            return Err(FormatError("truncated program".into()));
        }
        let (body, tail) = tail.split_at(len);
        let insns = body
            .chunks_exact(8)
            .map(|c| Insn {
                code: u16::from_le_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        programs.push(insns);
        rest = tail;
    }
    if programs.is_empty() {
        return Err(FormatError("no programs".into()));
    }
    Ok(programs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_damage() {
        let a = vec![Insn { code: 0x20, jt: 0, jf: 0, k: 4 }, Insn { code: 0x06, jt: 0, jf: 0, k: 0x7fff_0000 }];
        let b = vec![Insn { code: 0x06, jt: 1, jf: 2, k: 0x0005_0026 }];
        let bytes = encode(&[a.clone(), b.clone()]);
        assert_eq!(decode(&bytes).unwrap(), vec![a, b]);
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode(b"KEELBPF0").is_err());
        assert!(decode(MAGIC).is_err());
        let mut zero = MAGIC.to_vec();
        zero.extend_from_slice(&0u32.to_le_bytes());
        assert!(decode(&zero).is_err());
    }
}
