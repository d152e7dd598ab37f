//! Errors of the runtime. Messages are short and never repeat their source: print the chain.

use std::io;
use std::path::PathBuf;

/// Why a container could not be started (or waited for).
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// `rootfs` is not one plain directory name.
    #[error("rootfs `{0}` is not a directory name")]
    InvalidRootfs(String),
    /// The container's name is not one plain name (it names its cgroup and scratch directory).
    #[error("container name `{0}` is not a plain name")]
    InvalidName(String),
    /// A `tmpfs` entry is not an absolute path of plain components.
    #[error("tmpfs `{0}` is not an absolute path without `..`")]
    InvalidTmpfs(String),
    /// `id_base` is 0 (container root would be host root) or its range runs past the last id.
    #[error("id_base {0} is not a usable id range (it must be above 0, with 65536 ids after it)")]
    IdBase(u32),
    /// A capability number keel does not know.
    #[error("unknown capability number {0}")]
    Capability(u32),
    /// The seccomp filter file could not be read.
    #[error("read the seccomp filter {path}")]
    SeccompRead {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The seccomp filter file is not in keel's format.
    #[error("decode the seccomp filter {path}")]
    SeccompFormat {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: keel_plan::seccomp::FormatError,
    },
    /// A path cannot be passed in overlayfs options (it holds `,`, `:` or `\`).
    #[error("{0} cannot be an overlay directory (it contains `,`, `:` or `\\`)")]
    OverlayPath(PathBuf),
    /// The writable root (tmpfs and overlay) could not be set up on the host.
    #[error("overlay: {what}")]
    Overlay {
        /// The step, with its path.
        what: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// statvfs failed on the container's tree.
    #[error("read the mount flags of {path}")]
    Stat {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A cgroup file or directory could not be written or made.
    #[error("cgroup: write {path}")]
    Cgroup {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// An id map of the container's user namespace could not be written or read back.
    #[error("write {path}")]
    IdMap {
        /// `/proc/<pid>/uid_map` or `gid_map`.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The id map read back is not the one written.
    #[error("{path} reads `{found}` after writing it")]
    IdMapMismatch {
        /// `/proc/<pid>/uid_map` or `gid_map`.
        path: PathBuf,
        /// What it holds.
        found: String,
    },
    /// RLIMIT_NOFILE could not be set on the container's process.
    #[error("set RLIMIT_NOFILE of the container")]
    Rlimit(#[source] io::Error),
    /// The child could not be released (the sync pipe failed).
    #[error("release the container process")]
    Release(#[source] io::Error),
    /// The caller's preparation of the new container (its network) failed.
    #[error("{0}")]
    Prepare(String),
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
    /// A volume mount cannot be honoured: bad name or target, no such volume, too many.
    #[error("volume `{name}`: {why}")]
    InvalidVolume {
        /// The volume.
        name: String,
        /// What is wrong.
        why: String,
    },
    /// A volume could not be made ready for the container (its idmapped mount, or the hand-over).
    #[error("volume `{name}`: {what}")]
    Volume {
        /// The volume.
        name: String,
        /// The step.
        what: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// `args` is empty or `args[0]` is.
    #[error("no command to run")]
    NoCommand,
    /// The working directory is one a container may not have.
    #[error("working directory `{cwd}`: {why}")]
    Workdir {
        /// The working directory asked for.
        cwd: String,
        /// Why not.
        why: &'static str,
    },
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
