//! keel-qemu: boot a disk image (through UEFI firmware) or a kernel (directly) under QEMU, capture
//! the serial console with timestamps, wait for console lines, power down through QMP, and kill
//! QEMU when time runs out or the [`Vm`] is dropped.
//!
//! ```no_run
//! use std::time::Duration;
//! use keel_qemu::{Arch, Boot, Vm, VmConfig};
//!
//! let cfg = VmConfig::new(Arch::X86_64, Boot::Disk("out/hello-x86_64.img".into()));
//! let mut vm = Vm::start(&cfg)?;
//! let line = vm.wait_for("Hello from keel!", Duration::from_secs(300))?;
//! println!("greeted {:.1}s after start", line.at.as_secs_f64());
//! vm.wait_exit(Duration::from_secs(60))?;
//! # Ok::<(), keel_qemu::Error>(())
//! ```
//!
//! # The virtual machine
//!
//! - x86_64: `q35`; aarch64: `virt` with GICv3. `-cpu max` under TCG, `-cpu host` under KVM.
//! - TCG unless [`Accel::Kvm`] is asked for explicitly (or through `KEEL_ACCEL=kvm` with
//!   [`Accel::from_env_or_default`]): `/dev/kvm` on keel's build machines is nested PVM, which
//!   hangs stock kernels, so its presence is never taken as a reason to use it.
//! - `-nodefaults`, no display, no monitor; the first serial port (`ttyS0` / `ttyAMA0`) is
//!   captured; a virtio-rng device; the disk, if any, as virtio-blk (`/dev/vda`) in QEMU's default
//!   writeback cache mode, so a kill loses what a power cut would.
//! - `-no-reboot`: a guest reboot ends QEMU (status 0) instead of restarting the guest.
//!   [`RunOutcome::clean_poweroff`] tells a power-off from a reboot by the kernel's
//!   [`POWER_DOWN_LINE`].
//! - Disk boots use UEFI firmware ([`Firmware::find`]: OVMF / AAVMF, Debian paths first) with a
//!   private copy of its variable store. Direct kernel boots use none.
//! - With [`VmConfig::secure_boot`], the firmware enforces UEFI Secure Boot
//!   ([`Firmware::find_secure_boot`]: `OVMF_CODE_4M.secboot.fd` with `OVMF_VARS_4M.snakeoil.fd`,
//!   or `AAVMF_CODE.fd` with `AAVMF_VARS.snakeoil.fd`); x86_64 adds `smm=on` and a secure
//!   pflash. Set [`VmConfig::firmware`] to boot with another varstore (other enrolled keys).
//! - With [`VmConfig::disk_snapshot`] (the default) the disk image is never written: the VM gets a
//!   qcow2 overlay backed by it.
//!
//! # Programs and overrides
//!
//! [`find_qemu`] looks in `KEEL_QEMU_X86_64` / `KEEL_QEMU_AARCH64`, then `PATH`, `/usr/bin`,
//! `/usr/local/bin`, `/usr/libexec`. [`find_qemu_img`] likewise with `KEEL_QEMU_IMG`. Firmware
//! overrides: `KEEL_FIRMWARE_CODE[_X86_64|_AARCH64]` with `KEEL_FIRMWARE_VARS[...]`.

#![warn(missing_docs)]

mod arch;
mod args;
mod binary;
mod config;
mod console;
mod disk;
mod error;
mod firmware;
mod net;
mod qmp;
#[allow(unsafe_code)]
mod sys;
mod vm;

pub use arch::{Accel, Arch, ParseError};
pub use binary::{find_qemu, find_qemu_img, qemu_env_var, QEMU_IMG_ENV};
pub use config::{Boot, VmConfig};
pub use console::Line;
pub use error::{Error, Result, TAIL_LINES};
pub use firmware::Firmware;
pub use net::{GuestForward, Publish, UserNet};
pub use vm::{powered_off_cleanly, run_to_exit, RunOutcome, Vm, POWER_DOWN_LINE};
