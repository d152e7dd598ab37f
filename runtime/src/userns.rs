//! The container's user namespace, from the parent's side: its id maps.
//!
//! Container ids `0..ID_RANGE` are host ids `id_base..id_base + ID_RANGE`, for users and groups
//! alike, so container root is the unprivileged host uid `id_base`. The builder stores each tree
//! with its owners already shifted by `id_base`, so files show their image owners inside and the
//! root needs no idmapped mount (volumes, shared between ranges, get one: `crate::volumes`). The
//! parent is real root in the parent namespace, so it writes
//! `gid_map` itself and leaves `setgroups` allowed (the container may call setgroups(2)).

use std::fs;
use std::path::PathBuf;

use keel_plan::ID_RANGE;

use crate::error::RuntimeError;

/// One container's id map: `0 <base> <ID_RANGE>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    base: u32,
}

impl IdMap {
    /// The map for `id_base`. Refuses 0 (container root would be host root) and a range that
    /// would run past the last id.
    pub fn new(id_base: u32) -> Result<IdMap, RuntimeError> {
        if id_base == 0 || id_base.checked_add(ID_RANGE).is_none() {
            return Err(RuntimeError::IdBase(id_base));
        }
        Ok(IdMap { base: id_base })
    }

    /// The line written to `uid_map` and `gid_map`.
    pub fn line(self) -> String {
        format!("0 {} {ID_RANGE}\n", self.base)
    }

    /// Write `/proc/<pid>/uid_map` and `gid_map` (each in one write, as the kernel requires), and
    /// read them back.
    pub(crate) fn apply(self, pid: libc::pid_t) -> Result<(), RuntimeError> {
        let line = self.line();
        for file in ["uid_map", "gid_map"] {
            let path = PathBuf::from(format!("/proc/{pid}/{file}"));
            fs::write(&path, &line).map_err(|source| RuntimeError::IdMap { path: path.clone(), source })?;
            let back =
                fs::read_to_string(&path).map_err(|source| RuntimeError::IdMap { path: path.clone(), source })?;
            if !same_map(&back, &line) {
                return Err(RuntimeError::IdMapMismatch { path, found: back.trim().to_string() });
            }
        }
        Ok(())
    }
}

/// The kernel pads the map's columns with spaces when it prints it back.
fn same_map(read: &str, written: &str) -> bool {
    read.split_whitespace().eq(written.split_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_range_is_checked() {
        assert!(matches!(IdMap::new(0), Err(RuntimeError::IdBase(0))));
        assert!(matches!(IdMap::new(u32::MAX - ID_RANGE + 1), Err(RuntimeError::IdBase(_))));
        assert_eq!(IdMap::new(u32::MAX - ID_RANGE).unwrap().line(), format!("0 {} 65536\n", u32::MAX - ID_RANGE));
        assert_eq!(IdMap::new(65_536).unwrap().line(), "0 65536 65536\n");
    }

    #[test]
    fn maps_are_compared_by_columns() {
        assert!(same_map("         0      65536      65536\n", "0 65536 65536\n"));
        assert!(!same_map("         0          0 4294967295\n", "0 65536 65536\n"));
    }
}
