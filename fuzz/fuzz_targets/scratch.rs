//! A directory of this process's own for the targets whose parser reads files: under
//! `$TMPDIR` (make points it at fuzz/target/tmp and empties it after each run), emptied before
//! every input so one input cannot leave files for the next.

use std::path::PathBuf;
use std::sync::OnceLock;

/// The empty scratch directory.
pub fn dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| std::env::temp_dir().join(format!("keel-fuzz-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("scratch directory");
    dir.clone()
}
