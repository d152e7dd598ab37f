//! The two things a VM is chosen by before anything else: guest architecture and accelerator.

use std::fmt;
use std::str::FromStr;

/// Guest CPU architecture. Local to this crate so it depends on no other keel crate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arch {
    /// x86_64 (`amd64`), booted on the `q35` machine.
    X86_64,
    /// aarch64 (`arm64`), booted on the `virt` machine.
    Aarch64,
}

impl Arch {
    /// Both architectures, x86_64 first.
    pub const ALL: [Arch; 2] = [Arch::X86_64, Arch::Aarch64];

    /// The architecture this program was built for, if it is one of ours.
    pub fn host() -> Option<Arch> {
        if cfg!(target_arch = "x86_64") {
            Some(Arch::X86_64)
        } else if cfg!(target_arch = "aarch64") {
            Some(Arch::Aarch64)
        } else {
            None
        }
    }

    /// The kernel's name for it: `x86_64` or `aarch64`.
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    /// The QEMU system emulator's file name, e.g. `qemu-system-aarch64`.
    pub fn qemu_binary_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "qemu-system-x86_64",
            Arch::Aarch64 => "qemu-system-aarch64",
        }
    }

    /// The guest device name of the serial port we capture, for `console=` on a kernel command
    /// line: `ttyS0` (16550 on q35) or `ttyAMA0` (PL011 on virt).
    pub fn serial_console(self) -> &'static str {
        match self {
            Arch::X86_64 => "ttyS0",
            Arch::Aarch64 => "ttyAMA0",
        }
    }

    /// Default guest memory: 512 MiB on x86_64, 1024 MiB on aarch64 (its kernel image alone is
    /// ~30 MiB uncompressed and AAVMF wants more room).
    pub fn default_memory_mib(self) -> u32 {
        match self {
            Arch::X86_64 => 512,
            Arch::Aarch64 => 1024,
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Arch {
    type Err = ParseError;

    /// Accepts `x86_64`/`amd64` and `aarch64`/`arm64`, in any letter case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "x86_64" | "amd64" => Ok(Arch::X86_64),
            "aarch64" | "arm64" => Ok(Arch::Aarch64),
            _ => {
                Err(ParseError { what: "architecture", value: s.to_owned(), expected: "x86_64, amd64, aarch64, arm64" })
            }
        }
    }
}

/// How QEMU executes guest code.
///
/// TCG (emulation) is the default everywhere. KVM is only ever used when asked for: on keel's build
/// machines `/dev/kvm` exists but is nested PVM virtualization, under which stock guest kernels hang,
/// so the presence of `/dev/kvm` says nothing about whether KVM works.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Accel {
    /// Software emulation; works for both architectures on any host.
    #[default]
    Tcg,
    /// Hardware virtualization through `/dev/kvm`; guest arch must equal the host's.
    Kvm,
}

impl Accel {
    /// The environment variable [`Accel::from_env_or_default`] reads.
    pub const ENV: &'static str = "KEEL_ACCEL";

    /// `KEEL_ACCEL` (`tcg` or `kvm`), or [`Accel::Tcg`] when it is unset or empty. A value that is
    /// neither is an error rather than a silent fallback.
    pub fn from_env_or_default() -> Result<Accel, ParseError> {
        Accel::from_env_value(std::env::var(Accel::ENV).ok().as_deref())
    }

    /// The rule behind [`Accel::from_env_or_default`], given the variable's value.
    pub(crate) fn from_env_value(value: Option<&str>) -> Result<Accel, ParseError> {
        match value.map(str::trim) {
            None | Some("") => Ok(Accel::Tcg),
            Some(v) => v.parse(),
        }
    }

    /// `tcg` or `kvm`.
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Tcg => "tcg",
            Accel::Kvm => "kvm",
        }
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Accel {
    type Err = ParseError;

    /// Accepts `tcg` and `kvm`, in any letter case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "tcg" => Ok(Accel::Tcg),
            "kvm" => Ok(Accel::Kvm),
            _ => Err(ParseError { what: "accelerator", value: s.to_owned(), expected: "tcg, kvm" }),
        }
    }
}

/// A string that names no [`Arch`] or [`Accel`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{value}` (expected one of: {expected})")]
pub struct ParseError {
    what: &'static str,
    value: String,
    expected: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_names_round_trip() {
        for arch in Arch::ALL {
            assert_eq!(arch.to_string().parse::<Arch>().unwrap(), arch);
        }
        assert_eq!("amd64".parse::<Arch>().unwrap(), Arch::X86_64);
        assert_eq!("ARM64".parse::<Arch>().unwrap(), Arch::Aarch64);
        let err = "riscv64".parse::<Arch>().unwrap_err().to_string();
        assert!(err.contains("riscv64") && err.contains("arm64"), "{err}");
    }

    #[test]
    fn accel_parses_and_defaults_to_tcg() {
        assert_eq!("kvm".parse::<Accel>().unwrap(), Accel::Kvm);
        assert_eq!("TCG".parse::<Accel>().unwrap(), Accel::Tcg);
        assert_eq!(Accel::Kvm.to_string(), "kvm");
        assert_eq!(Accel::default(), Accel::Tcg);
        assert_eq!(Accel::from_env_value(None).unwrap(), Accel::Tcg);
        assert_eq!(Accel::from_env_value(Some(" ")).unwrap(), Accel::Tcg);
        assert_eq!(Accel::from_env_value(Some("kvm")).unwrap(), Accel::Kvm);
        assert!(Accel::from_env_value(Some("kmv")).is_err());
    }
}
