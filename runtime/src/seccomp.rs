//! seccomp: the container's compiled filter programs ([`keel_plan::seccomp`] file format), read
//! and decoded by the parent before the clone, installed by the child as its last step before
//! exec (after every mount and identity change, which the filter may forbid). `no_new_privs` is
//! set before ([`crate::caps::no_new_privs_step`]), so no privilege is needed to install them.

use std::path::{Path, PathBuf};

use keel_plan::seccomp::{decode, Insn};

use crate::child::{Op, Program, Step};
use crate::error::RuntimeError;

/// The programs of the filter file at `path`, in install order; none for `None` (unconfined).
pub(crate) fn load(path: Option<&str>) -> Result<Vec<Program>, RuntimeError> {
    let Some(path) = path else { return Ok(Vec::new()) };
    let path = PathBuf::from(path);
    let bytes = std::fs::read(&path).map_err(|source| RuntimeError::SeccompRead { path: path.clone(), source })?;
    programs(&path, &bytes)
}

fn programs(path: &Path, bytes: &[u8]) -> Result<Vec<Program>, RuntimeError> {
    let decoded = decode(bytes).map_err(|source| RuntimeError::SeccompFormat { path: path.to_path_buf(), source })?;
    Ok(decoded.into_iter().map(|p| Program(p.iter().map(sock_filter).collect())).collect())
}

fn sock_filter(i: &Insn) -> libc::sock_filter {
    libc::sock_filter { code: i.code, jt: i.jt, jf: i.jf, k: i.k }
}

/// One step per program, in order.
pub(crate) fn steps(programs: Vec<Program>) -> Vec<Step> {
    let n = programs.len();
    programs
        .into_iter()
        .enumerate()
        .map(|(i, p)| Step::new(format!("install seccomp filter {} of {n}", i + 1), Op::Seccomp(p)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_plan::seccomp::encode;

    #[test]
    fn files_are_decoded_into_kernel_programs() {
        let a = vec![Insn { code: 0x20, jt: 0, jf: 0, k: 0 }, Insn { code: 0x06, jt: 0, jf: 0, k: 0x7fff_0000 }];
        let b = vec![Insn { code: 0x06, jt: 1, jf: 2, k: 0x0005_0001 }];
        let t = tempfile::tempdir().unwrap();
        let file = t.path().join("default");
        std::fs::write(&file, encode(&[a, b])).unwrap();
        let p = load(file.to_str()).unwrap();
        assert_eq!(p.len(), 2);
        let first = &p[0].0;
        assert_eq!((first[1].code, first[1].k), (0x06, 0x7fff_0000));
        assert_eq!((p[1].0[0].jt, p[1].0[0].jf), (1, 2));
        let s = steps(p);
        assert_eq!(s[1].what, "install seccomp filter 2 of 2");
        assert!(load(None).unwrap().is_empty());
    }

    #[test]
    fn unreadable_or_damaged_files_are_errors_before_any_clone() {
        let t = tempfile::tempdir().unwrap();
        let missing = t.path().join("missing");
        assert!(matches!(load(missing.to_str()), Err(RuntimeError::SeccompRead { .. })));
        let bad = t.path().join("bad");
        std::fs::write(&bad, b"KEELBPF1\x01\x00").unwrap();
        match load(bad.to_str()) {
            Err(RuntimeError::SeccompFormat { path, .. }) => assert_eq!(path, bad),
            other => panic!("{other:?}"),
        }
    }
}
