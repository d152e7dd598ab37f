//! The crate's error type.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use crate::Arch;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How many console lines the timeout and exit errors carry.
pub const TAIL_LINES: usize = 20;

/// Everything that can go wrong while finding, starting, driving or stopping a VM.
///
/// `Debug` prints the same text as `Display` followed by the chain of causes, so a test's
/// `.expect()` or `unwrap()` shows the console tail readably instead of an escaped struct.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No QEMU program (`qemu-system-*` or `qemu-img`) was found.
    #[error("{program} not found (searched: {}); install QEMU or set {hint}", paths(searched))]
    QemuNotFound {
        /// The program looked for.
        program: String,
        /// Every path tried, in order.
        searched: Vec<PathBuf>,
        /// How to point keel at one by hand.
        hint: String,
    },

    /// No UEFI firmware (code + vars template pair) was found for a disk boot.
    #[error("no UEFI firmware for {arch} (searched: {}); install {package} or set KEEL_FIRMWARE_CODE and KEEL_FIRMWARE_VARS", paths(searched), package = firmware_package(*arch))]
    FirmwareNotFound {
        /// The guest architecture.
        arch: Arch,
        /// Every code file tried, in order.
        searched: Vec<PathBuf>,
    },

    /// No Secure Boot firmware (code + a varstore with keys enrolled) was found.
    #[error("no UEFI Secure Boot firmware for {arch} (searched: {}); install {package}", paths(searched), package = firmware_package(*arch))]
    SecureBootFirmwareNotFound {
        /// The guest architecture.
        arch: Arch,
        /// Every code file tried, in order.
        searched: Vec<PathBuf>,
    },

    /// The [`VmConfig`](crate::VmConfig) cannot work (missing file, zero CPUs, ...).
    #[error("invalid VM configuration: {0}")]
    Config(String),

    /// QEMU could not be started at all.
    #[error("cannot start {}", program.display())]
    Spawn {
        /// The program run.
        program: PathBuf,
        /// Why `exec` failed.
        source: io::Error,
    },

    /// Some other file or process operation failed.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The operating system's error.
        source: io::Error,
    },

    /// Something did not happen in time. The VM has been killed.
    #[error("timed out after {:.1}s waiting for {waiting_for}{}{}", after.as_secs_f64(), section("console", console_tail), section("qemu stderr", stderr))]
    Timeout {
        /// What was awaited: a console pattern, or the VM's exit.
        waiting_for: String,
        /// How long was waited.
        after: Duration,
        /// The last [`TAIL_LINES`] console lines.
        console_tail: String,
        /// The last lines QEMU wrote to its stderr.
        stderr: String,
    },

    /// QEMU exited while a console pattern was awaited.
    #[error(
        "VM exited ({status}) while waiting for {waiting_for}{}{}",
        section("console", console_tail),
        section("qemu stderr", stderr)
    )]
    VmExited {
        /// What was awaited.
        waiting_for: String,
        /// QEMU's exit status.
        status: ExitStatus,
        /// The last [`TAIL_LINES`] console lines.
        console_tail: String,
        /// The last lines QEMU wrote to its stderr (bad arguments, missing files, ...).
        stderr: String,
    },

    /// A QMP command could not be sent, or QEMU answered with an error.
    #[error("QMP `{command}`: {detail}")]
    Qmp {
        /// The command executed (`qmp_capabilities` for the handshake).
        command: String,
        /// What went wrong, e.g. `GenericError: ...` from QEMU.
        detail: String,
    },

    /// The copy-on-write overlay over a disk image could not be created.
    #[error("cannot create a copy-on-write overlay over {}: {detail}", image.display())]
    Overlay {
        /// The base image.
        image: PathBuf,
        /// `qemu-img`'s complaint.
        detail: String,
    },
}

impl Error {
    /// Wraps an I/O error with what was being done.
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Error {
        Error::Io { context: context.into(), source }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")?;
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

fn paths(list: &[PathBuf]) -> String {
    let names: Vec<String> = list.iter().map(|p| p.display().to_string()).collect();
    names.join(", ")
}

fn firmware_package(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "ovmf",
        Arch::Aarch64 => "qemu-efi-aarch64",
    }
}

/// `"\n--- title ---\n" + text`, or nothing when `text` is empty.
fn section(title: &str, text: &str) -> String {
    if text.trim().is_empty() {
        String::new()
    } else {
        format!("\n--- {title} (last lines) ---\n{}", text.trim_end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_message_carries_the_tail_and_skips_empty_stderr() {
        let err = Error::Timeout {
            waiting_for: "`login:`".into(),
            after: Duration::from_millis(2500),
            console_tail: "line one\nline two\n".into(),
            stderr: String::new(),
        };
        let text = format!("{err:?}");
        assert!(text.starts_with("timed out after 2.5s waiting for `login:`\n--- console"), "{text}");
        assert!(text.ends_with("line one\nline two"), "{text}");
        assert!(!text.contains("stderr"), "{text}");
    }

    #[test]
    fn debug_prints_the_cause_chain() {
        let err = Error::io("reading /nowhere", io::Error::from(io::ErrorKind::NotFound));
        assert_eq!(format!("{err:?}"), format!("reading /nowhere: {}", io::Error::from(io::ErrorKind::NotFound)));
    }
}
