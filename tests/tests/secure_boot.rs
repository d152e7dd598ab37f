//! UEFI Secure Boot, on both arches, through `keel run --secure-boot --varstore V`.
//!
//! One build of tests/scenarios/secure-boot.toml per arch, signed by keel (`[signing]`) with the
//! test key, and a varstore that enrols the test certificate (tests/fixtures/signing/test-db.pem)
//! as PK, KEK and db, made with virt-fw-vars. The unsigned UKI is keel's with the signature
//! removed by `sbattach --remove`; sbsign signs that with Debian's snakeoil key.
//! Six boots at once:
//! - the UKI signed with the test key boots, the kernel locks itself down, keel-init reports
//!   `secure boot on, lockdown integrity` and the container's greeting appears;
//! - the unsigned image boots without `--secure-boot`, and keel-init reports `secure boot off`;
//! - one signed with Debian's snakeoil key boots with `keel run`'s default varstore;
//! - the unsigned UKI, the signed one with a byte of `.cmdline` changed afterwards, and the
//!   snakeoil-signed one under the test varstore are each refused by the firmware with "Access
//!   Denied", after which it waits at its menu, so the test kills it there.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use keel_plan::Arch;
use keel_tests::both_arches;
use keel_tests::scenario::Scenario;
use keel_tests::{keel_bin, partitions, root, text, tool};

/// How long any one boot (or refusal) may take under TCG.
const BOOT_TIMEOUT: Duration = Duration::from_secs(600);
/// What the firmware prints when it refuses an EFI binary.
const ACCESS_DENIED: &str = "Access Denied";
/// keel-init's line under Secure Boot with Debian's kernel.
const SECURE_BOOT_ON: &str = "keel: secure boot on, lockdown integrity";
/// keel-init's line without Secure Boot.
const SECURE_BOOT_OFF: &str = "keel: secure boot off, lockdown none";
/// The container's greeting.
const GREETING: &str = "greeter| booted under secure boot on";

/// The test key and certificate (public on purpose; see their README).
fn test_key() -> (PathBuf, PathBuf) {
    let dir = root().join("tests/fixtures/signing");
    (dir.join("test-db.key"), dir.join("test-db.pem"))
}

/// virt-fw-vars from the venv `make setup` fills.
fn virt_fw_vars() -> PathBuf {
    let p = root().join(".cache/venv/bin/virt-fw-vars");
    assert!(p.is_file(), "{} is missing: run `make setup` (it installs virt-firmware)", p.display());
    p
}

/// A varstore in `dir` with `cert` as PK, KEK and db and Secure Boot on: from OVMF's empty
/// varstore on x86_64; on aarch64 AAVMF_VARS.fd is all zeros (virt-fw-vars cannot read it), so
/// from the snakeoil one with its keys deleted.
fn enrol(arch: Arch, cert: &Path, dir: &Path) -> PathBuf {
    const GUID: &str = "a0baa8a3-041d-48a8-bc87-c36d121b5e3d";
    let out = dir.join("varstore.fd");
    let cert = cert.to_string_lossy();
    let mut args: Vec<String> = match arch {
        Arch::X86_64 => vec!["-i".into(), "/usr/share/OVMF/OVMF_VARS_4M.fd".into()],
        Arch::Aarch64 => ["-i", "/usr/share/AAVMF/AAVMF_VARS.snakeoil.fd", "-d", "PK", "-d", "KEK", "-d", "db"]
            .map(String::from)
            .to_vec(),
    };
    for flag in ["--set-pk", "--add-kek", "--add-db"] {
        args.extend([flag.to_string(), GUID.into(), cert.to_string()]);
    }
    args.extend(["--sb".into(), "-o".into(), out.to_string_lossy().into_owned()]);
    let o = Command::new(virt_fw_vars()).args(&args).output().expect("run virt-fw-vars");
    assert!(o.status.success() && out.is_file(), "virt-fw-vars {args:?} failed:\n{}", text(&o));
    out
}

/// The ESP of `disk` as an mtools image spec (`disk@@OFFSET`).
fn esp(disk: &Path) -> String {
    let parts = partitions(disk);
    let esp = parts.iter().find(|p| p.number == 1).expect("an ESP (partition 1)");
    format!("{}@@{}", disk.display(), esp.first * 512)
}

/// `EFI/BOOT/BOOT*.EFI` on the ESP.
fn uki_path(arch: Arch) -> String {
    format!("::/EFI/BOOT/{}", arch.efi_boot_file())
}

/// Copy the UKI out of `disk`'s ESP into `dest`.
fn read_uki(disk: &Path, arch: Arch, dest: &Path) {
    let o = tool("mcopy", &["-n", "-i", &esp(disk), &uki_path(arch), &dest.to_string_lossy()]);
    assert!(o.status.success(), "mcopy out of {} failed:\n{}", disk.display(), text(&o));
}

/// Replace the UKI on `disk`'s ESP with `uki`.
fn write_uki(disk: &Path, arch: Arch, uki: &Path) {
    let o = tool("mcopy", &["-o", "-i", &esp(disk), &uki.to_string_lossy(), &uki_path(arch)]);
    assert!(o.status.success(), "mcopy into {} failed:\n{}", disk.display(), text(&o));
}

/// A copy of the disk named `name` whose UKI is `uki`.
fn with_uki(s: &Scenario, uki: &Path, name: &str) -> PathBuf {
    let disk = s.dir.path().join(format!("{name}.img"));
    std::fs::copy(s.img(), &disk).expect("copy the disk");
    write_uki(&disk, s.arch, uki);
    disk
}

/// The scenario's UKI (signed by the builder with the test key) with its signature removed.
fn unsigned_uki(s: &Scenario) -> PathBuf {
    let dir = s.dir.path();
    let (signed, unsigned) = (dir.join("signed.efi"), dir.join("unsigned.efi"));
    read_uki(s.img(), s.arch, &signed);
    let o = tool("sbattach", &["--remove", &signed.to_string_lossy()]);
    assert!(o.status.success(), "sbattach --remove failed:\n{}", text(&o));
    std::fs::rename(&signed, &unsigned).expect("rename the unsigned UKI");
    read_uki(s.img(), s.arch, &signed);
    unsigned
}

/// A copy of the disk whose UKI is the unsigned one signed by sbsign with `key` and `cert`.
fn sbsigned_image(s: &Scenario, unsigned: &Path, key: &Path, cert: &Path, name: &str) -> PathBuf {
    let signed = s.dir.path().join(format!("{name}.efi"));
    let o = tool(
        "sbsign",
        &[
            "--key",
            &key.to_string_lossy(),
            "--cert",
            &cert.to_string_lossy(),
            "--output",
            &signed.to_string_lossy(),
            &unsigned.to_string_lossy(),
        ],
    );
    assert!(o.status.success(), "sbsign failed:\n{}", text(&o));
    with_uki(s, &signed, name)
}

/// The file offset and size of PE section `name` (e.g. `.cmdline`).
fn pe_section(pe: &[u8], name: &str) -> (usize, usize) {
    let u16_at = |o: usize| u16::from_le_bytes([pe[o], pe[o + 1]]) as usize;
    let u32_at = |o: usize| u32::from_le_bytes([pe[o], pe[o + 1], pe[o + 2], pe[o + 3]]) as usize;
    let coff = u32_at(0x3c) + 4;
    let (count, optional) = (u16_at(coff + 2), u16_at(coff + 16));
    let table = coff + 20 + optional;
    (0..count)
        .map(|i| table + 40 * i)
        .find(|&h| pe[h..h + 8].split(|&b| b == 0).next() == Some(name.as_bytes()))
        .map(|h| (u32_at(h + 20), u32_at(h + 8).min(u32_at(h + 16))))
        .unwrap_or_else(|| panic!("no {name} section in the UKI"))
}

/// A copy of the disk whose signed UKI then has one byte of `.cmdline` changed.
fn tampered_image(s: &Scenario) -> PathBuf {
    let uki = s.dir.path().join("tampered.efi");
    read_uki(s.img(), s.arch, &uki);
    let mut pe = std::fs::read(&uki).expect("read the UKI");
    let (offset, size) = pe_section(&pe, ".cmdline");
    assert!(size > 0, "an empty .cmdline");
    let cmdline = String::from_utf8_lossy(&pe[offset..offset + size]).into_owned();
    assert!(cmdline.contains("console="), ".cmdline is `{cmdline}`");
    // `c` of `console=` becomes `C`: still text, no longer what was signed.
    pe[offset] ^= 0x20;
    std::fs::write(&uki, &pe).expect("write the UKI");
    with_uki(s, &uki, "tampered")
}

/// Debian's snakeoil key (decrypted into `dir`; its password is `snakeoil`, README.Debian) and
/// certificate: enrolled in the default varstore of `keel run --secure-boot`, not in the test's.
fn snakeoil_key(arch: Arch, dir: &Path) -> (PathBuf, PathBuf) {
    let share = Path::new(match arch {
        Arch::X86_64 => "/usr/share/ovmf",
        Arch::Aarch64 => "/usr/share/qemu-efi-aarch64",
    });
    let key = dir.join("snakeoil.key");
    let encrypted = share.join("PkKek-1-snakeoil.key");
    let o = tool(
        "openssl",
        &["pkey", "-in", &encrypted.to_string_lossy(), "-passin", "pass:snakeoil", "-out", &key.to_string_lossy()],
    );
    assert!(o.status.success(), "openssl pkey failed:\n{}", text(&o));
    (key, share.join("PkKek-1-snakeoil.pem"))
}

/// How `keel run` is asked for Secure Boot.
#[derive(Clone, Copy)]
enum Varstore<'a> {
    /// Not at all.
    Off,
    /// `--secure-boot`: Debian's snakeoil varstore.
    Default,
    /// `--secure-boot --varstore FILE`.
    File(&'a Path),
}

/// What one `keel run` printed, and when.
struct Boot {
    what: &'static str,
    /// Each stdout line (the serial console) with its arrival since the start.
    lines: Vec<(Duration, String)>,
    /// keel run's exit: `Some(success)`, or `None` when the test killed it.
    exited: Option<bool>,
    /// Until it exited or was killed.
    wall: Duration,
    stderr: String,
}

impl Boot {
    fn console(&self) -> String {
        self.lines.iter().map(|(_, l)| format!("{l}\n")).collect()
    }

    fn at(&self, pattern: &str) -> Option<Duration> {
        self.lines.iter().find(|(_, l)| l.contains(pattern)).map(|(at, _)| *at)
    }
}

/// `keel run DISK` with `varstore`'s flags, to its end, or killed (with QEMU, which dies with it) at the first line containing
/// `kill_at`.
fn keel_run(what: &'static str, disk: &Path, varstore: Varstore<'_>, arch: Arch, kill_at: Option<&str>) -> Boot {
    let started = Instant::now();
    let mut command = Command::new(keel_bin());
    command.args(["run", &disk.to_string_lossy(), "--arch", arch.name(), "--accel", "tcg"]);
    command.args(["--timeout", &format!("{}s", BOOT_TIMEOUT.as_secs())]);
    match varstore {
        Varstore::Off => {}
        Varstore::Default => {
            command.arg("--secure-boot");
        }
        Varstore::File(v) => {
            command.args(["--secure-boot", "--varstore", &v.to_string_lossy()]);
        }
    }
    let mut child =
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start keel run");
    let (tx, rx) = mpsc::channel();
    let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    thread::spawn(move || {
        for line in stdout.split(b'\n').map_while(Result::ok) {
            let line = String::from_utf8_lossy(&line).replace('\r', "");
            if tx.send((started.elapsed(), line)).is_err() {
                break;
            }
        }
    });
    let mut err = child.stderr.take().expect("piped stderr");
    let stderr = thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    });
    let mut lines = Vec::new();
    let deadline = started + BOOT_TIMEOUT + Duration::from_secs(30);
    let mut killed = false;
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok((at, line)) => {
                let hit = kill_at.is_some_and(|p| line.contains(p));
                lines.push((at, line));
                if hit {
                    child.kill().expect("kill keel run");
                    killed = true;
                    break;
                }
            }
            // keel run closed its stdout: it exited.
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                killed = true;
                break;
            }
        }
    }
    let status = child.wait().expect("wait for keel run");
    let wall = started.elapsed();
    Boot { what, lines, exited: (!killed).then(|| status.success()), wall, stderr: stderr.join().unwrap_or_default() }
}

fn secure_boot(arch: Arch) {
    let s = Scenario::new("secure-boot", arch, &[]);
    let dir = s.dir.path().to_path_buf();
    let (_, cert) = test_key();
    let varstore = enrol(arch, &cert, &dir);
    let varstore_sha = keel_tests::sha256(&varstore);

    // The builder signed the scenario's UKI with the test key (`[signing]`).
    let signed = s.img().to_path_buf();
    let unsigned_efi = unsigned_uki(&s);
    let unsigned = with_uki(&s, &unsigned_efi, "unsigned");
    let tampered = tampered_image(&s);
    let (snakeoil_key, snakeoil_cert) = snakeoil_key(arch, &dir);
    let snakeoil = sbsigned_image(&s, &unsigned_efi, &snakeoil_key, &snakeoil_cert, "snakeoil");
    let o = tool("sbverify", &["--cert", &cert.to_string_lossy(), &dir.join("signed.efi").to_string_lossy()]);
    assert!(o.status.success(), "{arch}: sbverify rejects the signed UKI:\n{}", text(&o));

    let sb = Varstore::File(&varstore);
    let disks: [(&'static str, PathBuf, Varstore<'_>, Option<&str>); 6] = [
        ("signed", signed, sb, None),
        ("unsigned, without Secure Boot", unsigned.clone(), Varstore::Off, None),
        ("snakeoil-signed, default varstore", snakeoil.clone(), Varstore::Default, None),
        ("unsigned", unsigned, sb, Some(ACCESS_DENIED)),
        ("tampered .cmdline", tampered, sb, Some(ACCESS_DENIED)),
        ("snakeoil-signed, test varstore", snakeoil, sb, Some(ACCESS_DENIED)),
    ];
    let boots: Vec<Boot> = thread::scope(|scope| {
        let handles: Vec<_> = disks
            .iter()
            .map(|(what, disk, varstore, kill_at)| scope.spawn(|| keel_run(what, disk, *varstore, arch, *kill_at)))
            .collect();
        handles.into_iter().map(|h| h.join().expect("a boot thread")).collect()
    });

    for b in &boots {
        eprintln!(
            "{arch}: {} {:.1}s ({})",
            b.what,
            b.wall.as_secs_f64(),
            match b.exited {
                Some(true) => "powered off cleanly",
                Some(false) => "exited without a clean power-off",
                None => "killed at its refusal",
            }
        );
    }
    let [ok, plain, default, refused @ ..] = &boots[..] else { unreachable!() };
    let console = ok.console();
    assert_eq!(ok.exited, Some(true), "{arch}: the signed image did not power off cleanly:\n{console}\n{}", ok.stderr);
    assert!(!console.contains(ACCESS_DENIED), "{arch}: the signed image was refused:\n{console}");
    let on = ok.at(SECURE_BOOT_ON).unwrap_or_else(|| panic!("{arch}: no `{SECURE_BOOT_ON}`:\n{console}"));
    let greeting = ok.at(GREETING).unwrap_or_else(|| panic!("{arch}: no `{GREETING}`:\n{console}"));
    let locked = ok
        .at("Kernel is locked down from EFI Secure Boot")
        .unwrap_or_else(|| panic!("{arch}: the kernel did not lock itself down:\n{console}"));
    assert!(locked <= on && on <= greeting, "{arch}: out of order:\n{console}");
    assert!(ok.stderr.contains("Secure Boot with the varstore"), "{arch}: keel run said:\n{}", ok.stderr);
    eprintln!(
        "{arch}: signed: locked down at {:.1}s, `{SECURE_BOOT_ON}` at {:.1}s, greeting at {:.1}s",
        locked.as_secs_f64(),
        on.as_secs_f64(),
        greeting.as_secs_f64()
    );

    // The same image without --secure-boot: the firmware checks nothing and keel-init says so.
    let console = plain.console();
    assert_eq!(plain.exited, Some(true), "{arch}: the plain boot did not power off cleanly:\n{console}");
    assert!(plain.at(SECURE_BOOT_OFF).is_some(), "{arch}: no `{SECURE_BOOT_OFF}` without Secure Boot:\n{console}");
    assert!(plain.at(GREETING).is_some() && !console.contains("locked down"), "{arch}: plain boot:\n{console}");

    // Debian's snakeoil varstore, which `keel run --secure-boot` uses by default, trusts the
    // snakeoil key.
    let console = default.console();
    assert_eq!(default.exited, Some(true), "{arch}: the default varstore's boot failed:\n{console}");
    assert!(default.at(SECURE_BOOT_ON).is_some() && default.at(GREETING).is_some(), "{arch}: {console}");
    assert!(default.stderr.contains(".snakeoil.fd"), "{arch}: keel run said:\n{}", default.stderr);

    for b in refused {
        let console = b.console();
        let denied = b.at(ACCESS_DENIED).unwrap_or_else(|| {
            panic!("{arch}: {} was not refused (exit {:?}):\n{console}\n{}", b.what, b.exited, b.stderr)
        });
        assert_eq!(b.exited, None, "{arch}: {} ended by itself:\n{console}", b.what);
        assert!(!console.contains("Linux version"), "{arch}: {}: a kernel started:\n{console}", b.what);
        eprintln!("{arch}: {}: `{ACCESS_DENIED}` at {:.1}s", b.what, denied.as_secs_f64());
    }
    // keel run booted copies: the varstore given is as it was.
    assert_eq!(keel_tests::sha256(&varstore), varstore_sha, "{arch}: keel run wrote to the varstore");
}

both_arches!(secure_boot);
