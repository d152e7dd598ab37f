//! What to boot and on what virtual machine.

use std::path::PathBuf;

use crate::{Accel, Arch, Error, Firmware, Result};

/// What the VM boots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Boot {
    /// A whole disk image (raw, or qcow2 detected by its magic), booted by UEFI firmware (OVMF or
    /// AAVMF) from its EFI system partition. Attached as a virtio-blk disk.
    Disk(PathBuf),
    /// Direct kernel boot: QEMU loads the kernel (and initramfs) itself, with no UEFI firmware
    /// (SeaBIOS on x86_64, nothing on aarch64).
    Kernel {
        /// A bzImage (x86_64) or an arm64 `Image`.
        kernel: PathBuf,
        /// An initramfs, if any.
        initrd: Option<PathBuf>,
        /// The kernel command line, e.g. `console=ttyS0 panic=-1` (see [`Arch::serial_console`]).
        cmdline: String,
        /// A disk attached as virtio-blk (`/dev/vda`), if any.
        disk: Option<PathBuf>,
    },
}

impl Boot {
    /// The disk image this boot attaches, if any.
    pub fn disk(&self) -> Option<&PathBuf> {
        match self {
            Boot::Disk(disk) => Some(disk),
            Boot::Kernel { disk, .. } => disk.as_ref(),
        }
    }
}

/// A VM to start: [`VmConfig::new`] gives the defaults; set fields to change them.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct VmConfig {
    /// Guest architecture.
    pub arch: Arch,
    /// Accelerator. Default [`Accel::Tcg`]; use [`Accel::from_env_or_default`] to honour
    /// `KEEL_ACCEL`.
    pub accel: Accel,
    /// What to boot.
    pub boot: Boot,
    /// Guest memory in MiB. Default [`Arch::default_memory_mib`] (512 x86_64, 1024 aarch64).
    pub memory_mib: u32,
    /// Virtual CPUs. Default 1: under TCG on small build machines, parallel VMs beat wide ones.
    pub cpus: u32,
    /// Default `true`: the VM writes into a temporary qcow2 overlay and the disk image never
    /// changes. `false` boots the image file itself, so guest writes persist (persistence and
    /// power-cut tests).
    pub disk_snapshot: bool,
    /// Default `false`. `true` copies console bytes to our stdout as they arrive, and QEMU's stderr
    /// to our stderr (for `keel run`).
    pub serial_echo: bool,
    /// Default `None`: the console is read as fast as QEMU writes it. `Some(bytes_per_second)`
    /// reads it no faster, as a real serial line drains (115200 baud is about 11,520 B/s). QEMU
    /// then holds the UART busy and the guest's console writes back up, as on hardware; tests
    /// use it to show that a guest does not stall on a slow console.
    pub serial_rate: Option<u32>,
    /// UEFI firmware to use for a [`Boot::Disk`]; `None` (default) finds it with
    /// [`Firmware::find`]. When set for a [`Boot::Kernel`], that boot goes through this firmware too.
    pub firmware: Option<Firmware>,
    /// Default `false`. `true` boots through UEFI Secure Boot: the firmware runs only EFI
    /// binaries signed by a key in the varstore's db. With `firmware` unset that is
    /// [`Firmware::find_secure_boot`] (Debian's snakeoil keys); set `firmware` to keep its code
    /// and bring a varstore of your own. On x86_64 the machine gets SMM and a secure flash
    /// (`smm=on`, `cfi.pflash01.secure=on`), without which OVMF's Secure Boot build does not start.
    pub secure_boot: bool,
    /// The QEMU system emulator; `None` (default) finds it with [`find_qemu`](crate::find_qemu).
    pub qemu: Option<PathBuf>,
    /// A virtio NIC on QEMU's restricted user network; `None` (default): no NIC at all.
    pub net: Option<crate::UserNet>,
    /// Extra arguments appended to QEMU's command line as they are.
    pub extra_args: Vec<String>,
}

impl VmConfig {
    /// A VM booting `boot` on `arch` with the defaults documented on each field.
    pub fn new(arch: Arch, boot: Boot) -> VmConfig {
        VmConfig {
            arch,
            accel: Accel::Tcg,
            boot,
            memory_mib: arch.default_memory_mib(),
            cpus: 1,
            disk_snapshot: true,
            serial_echo: false,
            serial_rate: None,
            firmware: None,
            secure_boot: false,
            qemu: None,
            net: None,
            extra_args: Vec::new(),
        }
    }

    /// Checks what can be checked before QEMU runs, so mistakes get a clear error instead of a
    /// QEMU exit.
    pub(crate) fn validate(&self) -> Result<()> {
        if self.cpus == 0 {
            return Err(Error::Config("cpus must be at least 1".into()));
        }
        if self.serial_rate == Some(0) {
            return Err(Error::Config("serial_rate must be at least 1 byte per second".into()));
        }
        if self.memory_mib < 32 {
            return Err(Error::Config(format!("memory_mib {} is too small (at least 32)", self.memory_mib)));
        }
        if self.secure_boot && self.firmware.is_none() && matches!(self.boot, Boot::Kernel { .. }) {
            return Err(Error::Config(
                "secure_boot needs UEFI firmware: boot a disk, or set firmware for the kernel boot".into(),
            ));
        }
        let mut files: Vec<(&str, &PathBuf)> = Vec::new();
        match &self.boot {
            Boot::Disk(disk) => files.push(("disk image", disk)),
            Boot::Kernel { kernel, initrd, disk, .. } => {
                files.push(("kernel", kernel));
                files.extend(initrd.iter().map(|i| ("initrd", i)));
                files.extend(disk.iter().map(|d| ("disk image", d)));
            }
        }
        for (what, path) in files {
            if !path.is_file() {
                return Err(Error::Config(format!("{what} {} is not a file", path.display())));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let cfg = VmConfig::new(Arch::Aarch64, Boot::Disk("/x.img".into()));
        assert_eq!((cfg.accel, cfg.memory_mib, cfg.cpus), (Accel::Tcg, 1024, 1));
        assert!(cfg.disk_snapshot && !cfg.serial_echo && !cfg.secure_boot);
        assert_eq!(VmConfig::new(Arch::X86_64, Boot::Disk("/x.img".into())).memory_mib, 512);
    }

    #[test]
    fn validate_names_the_missing_file() {
        let tmp = tempfile::tempdir().unwrap();
        let kernel = tmp.path().join("vmlinuz");
        std::fs::write(&kernel, b"k").unwrap();
        let boot = |initrd: Option<PathBuf>| Boot::Kernel {
            kernel: kernel.clone(),
            initrd,
            cmdline: String::new(),
            disk: None,
        };
        assert!(VmConfig::new(Arch::X86_64, boot(None)).validate().is_ok());
        let err = VmConfig::new(Arch::X86_64, boot(Some(tmp.path().join("nope")))).validate().unwrap_err();
        assert!(err.to_string().contains("initrd") && err.to_string().contains("nope"), "{err}");
        let mut cfg = VmConfig::new(Arch::X86_64, boot(None));
        cfg.cpus = 0;
        assert!(matches!(cfg.validate(), Err(Error::Config(_))));
        let mut cfg = VmConfig::new(Arch::X86_64, boot(None));
        cfg.secure_boot = true;
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("secure_boot needs UEFI firmware"), "{err}");
    }
}
