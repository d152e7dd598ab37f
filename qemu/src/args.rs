//! QEMU's command line, as a pure function of the configuration and the per-VM files.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use crate::disk::DiskFormat;
use crate::{Accel, Arch, Boot, VmConfig};

/// The files a VM run uses besides those named in its [`VmConfig`], all prepared by the caller.
#[derive(Clone, Debug)]
pub(crate) struct RunFiles {
    /// Where QEMU listens for QMP.
    pub qmp_socket: PathBuf,
    /// The disk to attach (the overlay when snapshotting) and its format.
    pub disk: Option<(PathBuf, DiskFormat)>,
    /// UEFI firmware code and this VM's private copy of the variable store.
    pub firmware: Option<(PathBuf, PathBuf)>,
}

/// QEMU's arguments (without the program name).
///
/// - No defaults, no user config, no display, no monitor: only what is listed here exists.
/// - The first serial port goes to QEMU's stdout (`-serial stdio`; stdin is /dev/null).
/// - `-no-reboot`: a guest reboot (or a kernel panic with `panic=-1`) ends QEMU with status 0
///   instead of restarting the guest.
/// - The disk is virtio-blk with QEMU's default cache mode (writeback: guest flushes reach the
///   host file, unflushed writes may not), so killing QEMU loses what a power cut would lose;
///   `cache=unsafe` would drop flushes and make power-cut tests lie.
/// - A virtio-rng device, so the guest kernel's entropy pool fills at once.
pub(crate) fn qemu_args(cfg: &VmConfig, files: &RunFiles) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    let mut push = |items: &[&str]| args.extend(items.iter().map(OsString::from));

    push(&["-no-user-config", "-nodefaults", "-display", "none", "-monitor", "none", "-no-reboot"]);
    let machine = match (cfg.arch, cfg.accel) {
        // OVMF's Secure Boot build keeps the variable store behind SMM, so the OS cannot rewrite it.
        (Arch::X86_64, _) if cfg.secure_boot => "q35,smm=on",
        (Arch::X86_64, _) => "q35",
        (Arch::Aarch64, Accel::Tcg) => "virt,gic-version=3",
        (Arch::Aarch64, Accel::Kvm) => "virt,gic-version=host",
    };
    push(&["-machine", machine]);
    let accel = match cfg.accel {
        Accel::Tcg if cfg.cpus > 1 => "tcg,thread=multi",
        Accel::Tcg => "tcg",
        Accel::Kvm => "kvm",
    };
    let cpu = match (cfg.arch, cfg.accel) {
        (Arch::X86_64, Accel::Tcg) => "max",
        // QEMU's default pointer-authentication algorithm (QARMA5) is slow to emulate; the
        // implementation-defined one is much cheaper, and the guest cannot tell the difference.
        (Arch::Aarch64, Accel::Tcg) => "max,pauth-impdef=on",
        (_, Accel::Kvm) => "host",
    };
    push(&["-accel", accel, "-cpu", cpu]);
    push(&["-smp", &cfg.cpus.to_string(), "-m", &cfg.memory_mib.to_string()]);
    push(&["-serial", "stdio"]);
    args.push("-qmp".into());
    args.push(qemu_opt("unix:", files.qmp_socket.as_os_str(), ",server=on,wait=off"));
    args.extend(["-device", "virtio-rng-pci"].map(OsString::from));

    if let Some((code, vars)) = &files.firmware {
        args.push("-drive".into());
        args.push(qemu_opt("if=pflash,format=raw,unit=0,readonly=on,file=", code.as_os_str(), ""));
        args.push("-drive".into());
        args.push(qemu_opt("if=pflash,format=raw,unit=1,file=", vars.as_os_str(), ""));
        if cfg.secure_boot && cfg.arch == Arch::X86_64 {
            // Flash writes only from SMM: the firmware then owns the Secure Boot variables.
            args.extend(["-global", "driver=cfi.pflash01,property=secure,value=on"].map(OsString::from));
        }
    }
    if let Boot::Kernel { kernel, initrd, cmdline, .. } = &cfg.boot {
        args.push("-kernel".into());
        args.push(kernel.into());
        if let Some(initrd) = initrd {
            args.push("-initrd".into());
            args.push(initrd.into());
        }
        if !cmdline.is_empty() {
            args.push("-append".into());
            args.push(cmdline.into());
        }
    }
    if let Some((disk, format)) = &files.disk {
        args.push("-drive".into());
        let prefix = format!("if=none,id=disk0,format={},file=", format.as_str());
        args.push(qemu_opt(&prefix, disk.as_os_str(), ""));
        args.extend(["-device", "virtio-blk-pci,drive=disk0"].map(OsString::from));
    }
    if let Some(net) = &cfg.net {
        // No option ROM: the firmware has no use for network boot, and Debian ships the ROM in
        // another package.
        args.extend(
            ["-netdev".to_string(), net.netdev(), "-device".into(), "virtio-net-pci,netdev=n0,romfile=".into()]
                .map(OsString::from),
        );
    }
    args.extend(cfg.extra_args.iter().map(OsString::from));
    args
}

/// `prefix + value + suffix` for a QEMU `key=value,...` option, with the commas in `value` doubled
/// as QEMU's option syntax requires.
fn qemu_opt(prefix: &str, value: &OsStr, suffix: &str) -> OsString {
    let mut bytes = prefix.as_bytes().to_vec();
    for &b in value.as_bytes() {
        if b == b',' {
            bytes.push(b',');
        }
        bytes.push(b);
    }
    bytes.extend_from_slice(suffix.as_bytes());
    OsString::from_vec(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[OsString]) -> Vec<String> {
        args.iter().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    /// The argument after each occurrence of `flag`.
    fn values_of(args: &[String], flag: &str) -> Vec<String> {
        args.windows(2).filter(|w| w[0] == flag).map(|w| w[1].clone()).collect()
    }

    fn disk_files() -> RunFiles {
        RunFiles {
            qmp_socket: "/tmp/k/qmp.sock".into(),
            disk: Some(("/tmp/k/overlay.qcow2".into(), DiskFormat::Qcow2)),
            firmware: Some(("/usr/share/OVMF/OVMF_CODE_4M.fd".into(), "/tmp/k/vars.fd".into())),
        }
    }

    #[test]
    fn x86_64_tcg_disk_boot() {
        let cfg = VmConfig::new(Arch::X86_64, Boot::Disk("/images/a.img".into()));
        let args = strings(&qemu_args(&cfg, &disk_files()));
        assert_eq!(
            args.join(" "),
            "-no-user-config -nodefaults -display none -monitor none -no-reboot \
             -machine q35 -accel tcg -cpu max -smp 1 -m 512 -serial stdio \
             -qmp unix:/tmp/k/qmp.sock,server=on,wait=off -device virtio-rng-pci \
             -drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd \
             -drive if=pflash,format=raw,unit=1,file=/tmp/k/vars.fd \
             -drive if=none,id=disk0,format=qcow2,file=/tmp/k/overlay.qcow2 -device virtio-blk-pci,drive=disk0"
        );
    }

    #[test]
    fn secure_boot_adds_smm_and_a_secure_flash_on_x86_64_only() {
        let mut cfg = VmConfig::new(Arch::X86_64, Boot::Disk("/images/a.img".into()));
        cfg.secure_boot = true;
        let args = strings(&qemu_args(&cfg, &disk_files()));
        assert_eq!(values_of(&args, "-machine"), ["q35,smm=on"]);
        assert_eq!(values_of(&args, "-global"), ["driver=cfi.pflash01,property=secure,value=on"]);
        let mut cfg = VmConfig::new(Arch::Aarch64, Boot::Disk("/images/a.img".into()));
        cfg.secure_boot = true;
        let args = strings(&qemu_args(&cfg, &disk_files()));
        assert_eq!(values_of(&args, "-machine"), ["virt,gic-version=3"]);
        assert!(values_of(&args, "-global").is_empty(), "{args:?}");
    }

    #[test]
    fn aarch64_tcg_kernel_boot_without_disk_or_firmware() {
        let boot = Boot::Kernel {
            kernel: "/k/Image".into(),
            initrd: Some("/k/initrd".into()),
            cmdline: "console=ttyAMA0 panic=-1".into(),
            disk: None,
        };
        let mut cfg = VmConfig::new(Arch::Aarch64, boot);
        cfg.cpus = 2;
        let files = RunFiles { qmp_socket: "/q".into(), disk: None, firmware: None };
        let args = strings(&qemu_args(&cfg, &files));
        assert_eq!(values_of(&args, "-machine"), ["virt,gic-version=3"]);
        assert_eq!(values_of(&args, "-accel"), ["tcg,thread=multi"]);
        assert_eq!(values_of(&args, "-cpu"), ["max,pauth-impdef=on"]);
        assert_eq!(values_of(&args, "-smp"), ["2"]);
        assert_eq!(values_of(&args, "-m"), ["1024"]);
        assert_eq!(values_of(&args, "-kernel"), ["/k/Image"]);
        assert_eq!(values_of(&args, "-initrd"), ["/k/initrd"]);
        assert_eq!(values_of(&args, "-append"), ["console=ttyAMA0 panic=-1"]);
        assert!(values_of(&args, "-drive").is_empty(), "{args:?}");
        assert!(args.contains(&"-no-reboot".to_string()));
    }

    #[test]
    fn kvm_uses_the_host_cpu() {
        for arch in Arch::ALL {
            let mut cfg = VmConfig::new(arch, Boot::Disk("/a.img".into()));
            cfg.accel = Accel::Kvm;
            let args = strings(&qemu_args(&cfg, &disk_files()));
            assert_eq!(values_of(&args, "-accel"), ["kvm"]);
            assert_eq!(values_of(&args, "-cpu"), ["host"]);
            if arch == Arch::Aarch64 {
                assert_eq!(values_of(&args, "-machine"), ["virt,gic-version=host"]);
            }
        }
    }

    #[test]
    fn kernel_boot_with_raw_disk_and_extra_args_last() {
        let boot =
            Boot::Kernel { kernel: "/k".into(), initrd: None, cmdline: String::new(), disk: Some("/d.img".into()) };
        let mut cfg = VmConfig::new(Arch::X86_64, boot);
        cfg.extra_args = vec!["-device".into(), "virtio-net-pci".into()];
        let files =
            RunFiles { qmp_socket: "/q".into(), disk: Some(("/d.img".into(), DiskFormat::Raw)), firmware: None };
        let args = strings(&qemu_args(&cfg, &files));
        assert!(values_of(&args, "-append").is_empty() && values_of(&args, "-initrd").is_empty());
        assert_eq!(values_of(&args, "-drive"), ["if=none,id=disk0,format=raw,file=/d.img"]);
        assert_eq!(args[args.len() - 2..], ["-device", "virtio-net-pci"]);
    }

    #[test]
    fn commas_in_paths_are_doubled() {
        let files = RunFiles {
            qmp_socket: "/t/a,b/qmp".into(),
            disk: Some(("/t/a,b/disk,1.img".into(), DiskFormat::Raw)),
            firmware: None,
        };
        let args = strings(&qemu_args(&VmConfig::new(Arch::X86_64, Boot::Disk("/x".into())), &files));
        assert_eq!(values_of(&args, "-qmp"), ["unix:/t/a,,b/qmp,server=on,wait=off"]);
        assert_eq!(values_of(&args, "-drive"), ["if=none,id=disk0,format=raw,file=/t/a,,b/disk,,1.img"]);
    }
}
