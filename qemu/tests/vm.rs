//! Boots real guests under QEMU (TCG) on both architectures: direct kernel boots of Debian's
//! kernel with a busybox initramfs, and UEFI firmware boots of an empty disk.

mod fixture;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use fixture::{kernel_boot, BOOT_TIMEOUT};
use keel_qemu::{run_to_exit, Arch, Boot, Error, Vm, VmConfig, POWER_DOWN_LINE};

const MARKER: &str = "KEEL-QEMU-TEST-OK";

const POWEROFF: &str = "echo KEEL-QEMU-TEST-OK\npoweroff -f";
const REBOOT: &str = "echo KEEL-QEMU-TEST-OK\nreboot -f";
const SIT: &str = "echo KEEL-QEMU-WAITING\nsleep 1000\npoweroff -f";

/// Loads the virtio block modules, writes `KEEL-WROTE-THIS` at the start of /dev/vda, reads it
/// back, and powers off, saying keel-init's final line first (`run_to_exit` judges a clean
/// power-off by it).
const WRITE_DISK: &str = r#"
mount -t devtmpfs dev /dev
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk; do
    [ -f /modules/$m.ko ] && insmod /modules/$m.ko
done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
printf KEEL-WROTE-THIS | dd of=/dev/vda conv=fsync 2>/dev/null
sync
echo "read back: $(dd if=/dev/vda bs=15 count=1 2>/dev/null)"
echo "keel: powering off now"
poweroff -f"#;

fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Boots to a marker printed by /init and a clean power-off, through the `Vm` API.
fn kernel_boot_powers_off(arch: Arch) {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = kernel_boot(arch, tmp.path(), POWEROFF, None);
    let mut vm = Vm::start(&cfg).unwrap();
    let init = vm.wait_for("Run /init as init process", BOOT_TIMEOUT).unwrap();
    let marker = vm.wait_for(MARKER, Duration::from_secs(60)).unwrap();
    assert!(marker.at >= init.at, "{marker:?} before {init:?}");

    // The guest powers off: waiting for anything else ends in VmExited, with status 0.
    match vm.wait_for("this never appears", Duration::from_secs(60)) {
        Err(Error::VmExited { status, console_tail, .. }) => {
            assert!(status.success(), "{status}");
            assert!(console_tail.contains(POWER_DOWN_LINE), "{console_tail}");
        }
        other => panic!("expected VmExited, got {other:?}"),
    }
    assert!(vm.wait_exit(Duration::from_secs(10)).unwrap().success());

    let console = vm.console();
    assert!(console.contains(POWER_DOWN_LINE) && !console.contains('\r'), "{console}");
    let lines = vm.lines();
    assert!(lines.windows(2).all(|w| w[0].at <= w[1].at), "line times go backwards");
    assert!(lines.iter().any(|l| l.text.contains(MARKER)));
    eprintln!(
        "{arch}: /init at {:.2}s, marker at {:.2}s, exit at {:.2}s",
        init.at.as_secs_f64(),
        marker.at.as_secs_f64(),
        vm.started().elapsed().as_secs_f64()
    );
}

#[test]
fn kernel_boot_powers_off_x86_64() {
    kernel_boot_powers_off(Arch::X86_64);
}

#[test]
fn kernel_boot_powers_off_aarch64() {
    kernel_boot_powers_off(Arch::Aarch64);
}

/// With -no-reboot a guest reboot also exits 0; `clean_poweroff` must tell them apart.
#[test]
fn run_to_exit_tells_a_reboot_from_a_power_off() {
    let tmp = tempfile::tempdir().unwrap();
    let outcome = run_to_exit(&kernel_boot(Arch::X86_64, tmp.path(), REBOOT, None), BOOT_TIMEOUT).unwrap();
    assert!(outcome.status.success(), "{}", outcome.status);
    assert!(outcome.console.contains(MARKER), "{}", outcome.console);
    assert!(outcome.console.contains("reboot: Restarting system"), "{}", outcome.console);
    assert!(!outcome.clean_poweroff);
}

#[test]
fn qmp_answers_and_a_timeout_kills_the_vm() {
    let tmp = tempfile::tempdir().unwrap();
    let mut vm = Vm::start(&kernel_boot(Arch::X86_64, tmp.path(), SIT, None)).unwrap();
    vm.wait_for("KEEL-QEMU-WAITING", BOOT_TIMEOUT).unwrap();

    let status = vm.qmp("query-status", None).unwrap();
    assert_eq!(status["status"], "running", "{status}");
    // The power button is pressed; busybox's shell ignores it, so the guest keeps running.
    vm.powerdown().unwrap();
    let err = vm.qmp("no-such-command", None).unwrap_err();
    assert!(matches!(&err, Error::Qmp { detail, .. } if detail.contains("CommandNotFound")), "{err:?}");
    assert_eq!(vm.qmp("query-status", None).unwrap()["status"], "running", "session recovers after an error");

    let pid = vm.pid();
    let started = Instant::now();
    match vm.wait_for("this never appears", Duration::from_secs(2)) {
        Err(Error::Timeout { waiting_for, after, console_tail, .. }) => {
            assert!(waiting_for.contains("this never appears"));
            assert_eq!(after, Duration::from_secs(2));
            assert!(console_tail.contains("KEEL-QEMU-WAITING"), "{console_tail}");
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(!process_exists(pid), "QEMU {pid} survived the timeout");
    assert!(vm.try_status().unwrap().is_some());
    assert!(matches!(vm.powerdown(), Err(Error::Qmp { .. })));
}

#[test]
fn wait_exit_timeout_kills_and_drop_kills() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = kernel_boot(Arch::X86_64, tmp.path(), SIT, None);
    let mut vm = Vm::start(&cfg).unwrap();
    let pid = vm.pid();
    assert!(matches!(vm.wait_exit(Duration::from_millis(300)), Err(Error::Timeout { .. })));
    assert!(!process_exists(pid));

    let vm = Vm::start(&cfg).unwrap();
    let pid = vm.pid();
    assert!(process_exists(pid));
    drop(vm);
    assert!(!process_exists(pid), "QEMU {pid} survived drop");
}

/// QEMU is tied to the thread that started it (PR_SET_PDEATHSIG): if that thread ends while the
/// `Vm` lives on, the kernel kills QEMU, so a killed test process never leaves QEMU behind.
#[test]
fn qemu_dies_with_the_thread_that_started_it() {
    use std::os::unix::process::ExitStatusExt;
    let tmp = tempfile::tempdir().unwrap();
    let cfg = kernel_boot(Arch::X86_64, tmp.path(), SIT, None);
    let mut vm = std::thread::spawn(move || Vm::start(&cfg).unwrap()).join().unwrap();
    let status = vm.wait_exit(Duration::from_secs(10)).expect("QEMU outlived its parent thread");
    assert_eq!(status.signal(), Some(9), "{status}");
}

#[test]
fn qemu_errors_surface_as_vm_exited_with_stderr() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = kernel_boot(Arch::X86_64, tmp.path(), POWEROFF, None);
    cfg.extra_args = vec!["-device".into(), "no-such-device-xyz".into()];
    let mut vm = Vm::start(&cfg).unwrap();
    match vm.wait_for(MARKER, Duration::from_secs(60)) {
        Err(err @ Error::VmExited { .. }) => {
            let Error::VmExited { status, stderr, .. } = &err else { unreachable!() };
            assert!(!status.success());
            assert!(stderr.contains("no-such-device-xyz"), "{stderr}");
            assert!(format!("{err:?}").contains("no-such-device-xyz"), "{err:?}");
        }
        other => panic!("expected VmExited, got {other:?}"),
    }
}

fn patterned_disk(path: &Path) -> Vec<u8> {
    let content: Vec<u8> = (0..1u32 << 20).map(|i| (i % 253) as u8).collect();
    fs::write(path, &content).unwrap();
    content
}

#[test]
fn disk_snapshot_keeps_the_image_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = tmp.path().join("disk.img");
    let before = patterned_disk(&disk);
    let cfg = kernel_boot(Arch::X86_64, tmp.path(), WRITE_DISK, Some(disk.clone()));
    assert!(cfg.disk_snapshot, "snapshot is the default");
    let outcome = run_to_exit(&cfg, BOOT_TIMEOUT).unwrap();
    assert!(outcome.clean_poweroff, "{}", outcome.console);
    assert!(outcome.console.contains("read back: KEEL-WROTE-THIS"), "the guest's write failed:\n{}", outcome.console);
    assert!(fs::read(&disk).unwrap() == before, "the base image changed");
}

#[test]
fn without_snapshot_writes_persist() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = tmp.path().join("disk.img");
    let before = patterned_disk(&disk);
    let mut cfg = kernel_boot(Arch::X86_64, tmp.path(), WRITE_DISK, Some(disk.clone()));
    cfg.disk_snapshot = false;
    let outcome = run_to_exit(&cfg, BOOT_TIMEOUT).unwrap();
    assert!(outcome.clean_poweroff, "{}", outcome.console);
    let after = fs::read(&disk).unwrap();
    assert_eq!(&after[..15], b"KEEL-WROTE-THIS");
    assert!(after[15..] == before[15..], "more than the 15 written bytes changed");
}

/// UEFI firmware starts from an empty disk and reaches its boot manager, which logs `BdsDxe:`
/// lines on the serial console (then falls back to the UEFI shell).
fn uefi_firmware_reaches_boot_manager(arch: Arch) {
    let tmp = tempfile::tempdir().unwrap();
    let disk = tmp.path().join("empty.img");
    fs::File::create(&disk).unwrap().set_len(16 << 20).unwrap();
    let mut vm = Vm::start(&VmConfig::new(arch, Boot::Disk(disk.clone()))).unwrap();
    let line = vm.wait_for("BdsDxe:", BOOT_TIMEOUT).unwrap();
    eprintln!("{arch}: firmware boot manager at {:.2}s: {}", line.at.as_secs_f64(), line.text);
    vm.kill();
    let content = fs::read(&disk).unwrap();
    assert!(content.len() == 16 << 20 && content.iter().all(|&b| b == 0), "the disk image changed");
}

#[test]
fn uefi_firmware_boots_x86_64() {
    uefi_firmware_reaches_boot_manager(Arch::X86_64);
}

#[test]
fn uefi_firmware_boots_aarch64() {
    uefi_firmware_reaches_boot_manager(Arch::Aarch64);
}
