//! Errors of the runtime. Messages are short and never repeat their source: print the chain.

use std::io;
use std::path::PathBuf;

/// Why a container could not be started (or waited for).
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// `rootfs` is not one plain directory name.
    #[error("rootfs `{0}` is not a directory name")]
    InvalidRootfs(String),
    /// The container's tree is not there.
    #[error("root tree {path} is missing or not a directory")]
    MissingRoot {
        /// Where the tree should be.
        path: PathBuf,
    },
    /// A directory the runtime mounts over is missing or a symlink.
    #[error("{path} must be a directory (the runtime mounts over it)")]
    MountPoint {
        /// The offending path, on the host.
        path: PathBuf,
    },
    /// `args` is empty or `args[0]` is.
    #[error("no command to run")]
    NoCommand,
    /// A string passed to the kernel contains a NUL byte.
    #[error("{what} contains a NUL byte")]
    Nul {
        /// Which string.
        what: String,
    },
    /// A pipe could not be made.
    #[error("create a pipe")]
    Pipe(#[source] io::Error),
    /// A host file the container needs could not be opened.
    #[error("open {path}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The container's process could not be created.
    #[error("clone the container process")]
    Clone(#[source] io::Error),
    /// The container's process failed before `exec`, at `step`.
    #[error("{step}")]
    Start {
        /// The step that failed, e.g. `pivot_root` or `exec /bin/sh`.
        step: String,
        /// The errno the step failed with.
        #[source]
        source: io::Error,
    },
    /// The child's start report could not be read.
    #[error("read the start report")]
    Report(#[source] io::Error),
    /// The child's start report is malformed.
    #[error("the start report is cut short ({0} bytes)")]
    ShortReport(usize),
    /// waitpid failed.
    #[error("wait for pid {pid}")]
    Wait {
        /// The process waited for.
        pid: i32,
        /// Why.
        #[source]
        source: io::Error,
    },
}
