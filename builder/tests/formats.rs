//! The binary format writers (UKI, FAT32 ESP, GPT disk) checked with the standard tools:
//! objdump, fsck.fat, mtools, sgdisk. Inputs are the pinned Debian packages in `.cache/debs`
//! (`make setup`). Nothing skips: a missing tool or package fails with what to run.
//!
//! Set `KEEL_FORMATS_KEEP=<dir>` to keep the assembled disks (`uki-<arch>.img`, a UKI whose
//! initramfs prints `UKI-OK` and powers off) for booting by hand under QEMU: these tests boot
//! nothing.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use keel_builder::disk::{self, PartKind};
use keel_builder::esp;
use keel_builder::initramfs::{self, Entry};
use keel_builder::sink::{FileSink, OffsetSink, Sink};
use keel_builder::uki::{self, UkiParts};
use object::{Object, ObjectSection};

const MIB: u64 = 1 << 20;

#[derive(Clone, Copy, Debug)]
enum Arch {
    X86_64,
    Aarch64,
}

impl Arch {
    fn deb(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Aarch64 => "arm64",
        }
    }
    fn stub(self) -> &'static str {
        match self {
            Arch::X86_64 => "linuxx64.efi.stub",
            Arch::Aarch64 => "linuxaa64.efi.stub",
        }
    }
    fn boot_file(self) -> &'static str {
        match self {
            Arch::X86_64 => "EFI/BOOT/BOOTX64.EFI",
            Arch::Aarch64 => "EFI/BOOT/BOOTAA64.EFI",
        }
    }
    fn console(self) -> &'static str {
        match self {
            Arch::X86_64 => "ttyS0",
            Arch::Aarch64 => "ttyAMA0",
        }
    }
    fn objdump_format(self) -> &'static str {
        match self {
            Arch::X86_64 => "pei-x86-64",
            Arch::Aarch64 => "pei-aarch64-little",
        }
    }
}

fn debs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cache/debs")
}

/// The first file of the .deb named `<package>_*_<arch>.deb` whose path ends with `suffix`.
fn from_deb(package: &str, arch: Arch, suffix: &str) -> Vec<u8> {
    let dir = debs();
    let deb = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}: run `make setup`", dir.display()))
        .map(|e| e.unwrap().path())
        .find(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with(&format!("{package}_")) && n.ends_with(&format!("_{}.deb", arch.deb()))
        })
        .unwrap_or_else(|| panic!("no {package} {} .deb in {}: run `make setup`", arch.deb(), dir.display()));
    let bytes = std::fs::read(&deb).unwrap();
    let mut tar = tar::Archive::new(keel_builder::kernel::deb::data_tar(&bytes).unwrap());
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_string_lossy().ends_with(suffix) {
            let mut out = Vec::new();
            entry.read_to_end(&mut out).unwrap();
            return out;
        }
    }
    panic!("{} has no file ending in {suffix}", deb.display())
}

fn stub(arch: Arch) -> Vec<u8> {
    from_deb("systemd-boot-efi", arch, &format!("/{}", arch.stub()))
}

/// The kernel as the UKI takes it: an EFI PE image (an arm64 Image gunzipped if need be).
/// Read once per arch: unpacking the kernel .deb is the slow part of these tests.
fn kernel(arch: Arch) -> &'static [u8] {
    static KERNELS: [OnceLock<Vec<u8>>; 2] = [OnceLock::new(), OnceLock::new()];
    KERNELS[arch as usize].get_or_init(|| {
        let deb = format!("linux-image-6.1.0-56-{}", arch.deb());
        let k = from_deb(&deb, arch, &format!("/boot/vmlinuz-6.1.0-56-{}", arch.deb()));
        if !k.starts_with(&[0x1f, 0x8b]) {
            return k;
        }
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&k[..]).read_to_end(&mut out).unwrap();
        out
    })
}

fn tool(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{cmd}` ({e}): run `make setup` to install the test tools"))
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Whether two files hold the same bytes (compared directly: sha2 is slow in debug builds).
fn same(a: &Path, b: &Path) -> bool {
    std::fs::read(a).unwrap() == std::fs::read(b).unwrap()
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

// ---------------------------------------------------------------------------------------------
// UKI

fn check_uki(arch: Arch) {
    let stub = stub(arch);
    let linux = kernel(arch);
    let initrd: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let parts = UkiParts {
        osrel: b"ID=keel\nNAME=keel\n",
        cmdline: b"console=ttyS0 panic=-1",
        uname: b"6.1.0-56",
        linux,
        initrd: &initrd,
    };
    let uki_bytes = uki::build_uki(&stub, &parts).unwrap();
    assert_eq!(uki::build_uki(&stub, &parts).unwrap(), uki_bytes, "not deterministic");
    assert_eq!(uki::machine(&uki_bytes).unwrap().to_string(), format!("{arch:?}").to_lowercase());

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("uki.efi");
    std::fs::write(&path, &uki_bytes).unwrap();

    // objdump (binutils' own PE reader) sees the stub's sections and ours, at our offsets.
    let o = tool("objdump", &["-h", &s(&path)]);
    let out = text(&o);
    assert!(o.status.success() && o.stderr.is_empty(), "objdump -h:\n{out}");
    assert!(out.contains(&format!("file format {}", arch.objdump_format())), "objdump -h:\n{out}");
    let table = uki::section_table(&uki_bytes).unwrap();
    let stub_sections = uki::section_table(&stub).unwrap().len();
    let added: Vec<_> = table[stub_sections..].iter().map(|s| s.name.as_str()).collect();
    assert_eq!(added, [".osrel", ".cmdline", ".uname", ".initrd", ".linux"]);
    for (name, payload) in [
        (".osrel", parts.osrel),
        (".cmdline", parts.cmdline),
        (".uname", parts.uname),
        (".initrd", parts.initrd),
        (".linux", parts.linux),
    ] {
        let info = table.iter().find(|s| s.name == name).unwrap();
        let line = out
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .unwrap_or_else(|| panic!("objdump -h does not list {name}:\n{out}"));
        let f: Vec<_> = line.split_whitespace().collect();
        let hex = |t: &str| u64::from_str_radix(t, 16).unwrap();
        assert_eq!(hex(f[2]), payload.len() as u64, "{name} size: {line}");
        assert_eq!(hex(f[3]), u64::from(info.virtual_address), "{name} VMA: {line}");
        assert_eq!(hex(f[5]), u64::from(info.raw_offset), "{name} file offset: {line}");
        let at = info.raw_offset as usize;
        assert_eq!(&uki_bytes[at..at + payload.len()], payload, "{name} payload");
        assert_eq!(uki::section_data(&uki_bytes, name).unwrap(), payload, "{name} via section_data");
    }
    let p = text(&tool("objdump", &["-p", &s(&path)]));
    let size_of_image = p.lines().find(|l| l.starts_with("SizeOfImage")).unwrap();
    let last = table.last().unwrap();
    let want = u64::from(last.virtual_address + last.virtual_size);
    let got = u64::from_str_radix(size_of_image.split_whitespace().nth(1).unwrap(), 16).unwrap();
    assert!(got >= want && got - want < 0x1000, "{size_of_image} vs end of .linux {want:#x}");

    // A second, independent reader: the `object` crate.
    let pe = object::read::pe::PeFile64::parse(&uki_bytes[..]).unwrap();
    let names: Vec<String> = pe.sections().map(|s| s.name().unwrap().to_string()).collect();
    assert!(names.ends_with(&[".osrel", ".cmdline", ".uname", ".initrd", ".linux"].map(String::from)), "{names:?}");
}

#[test]
fn uki_x86_64() {
    check_uki(Arch::X86_64);
}

#[test]
fn uki_aarch64() {
    check_uki(Arch::Aarch64);
}

#[test]
fn pe_checksum_matches_the_x86_64_stubs_own() {
    // Debian's x86_64 stub carries a real PE checksum: our algorithm must reproduce it.
    let stub = stub(Arch::X86_64);
    let lfanew = u32::from_le_bytes(stub[0x3c..0x40].try_into().unwrap()) as usize;
    let at = lfanew + 4 + 20 + 64;
    let stored = u32::from_le_bytes(stub[at..at + 4].try_into().unwrap());
    assert_ne!(stored, 0);
    assert_eq!(uki::pe_checksum(&stub, at), stored);
}

#[test]
fn uki_refuses_a_kernel_of_the_other_arch() {
    let stub = stub(Arch::X86_64);
    let linux = kernel(Arch::Aarch64);
    let e = uki::build_uki(&stub, &UkiParts { osrel: b"", cmdline: b"", uname: b"", linux, initrd: b"" }).unwrap_err();
    assert_eq!(e.to_string(), "kernel is for aarch64 but the stub for x86_64");
}

// ---------------------------------------------------------------------------------------------
// ESP

/// A fresh zero-filled file of `size` bytes with a FAT32 written into it.
fn fat_file(dir: &Path, name: &str, size: u64, files: &[(&str, &[u8])]) -> PathBuf {
    let path = dir.join(name);
    let f = File::create(&path).unwrap();
    f.set_len(size).unwrap();
    esp::write_fat32(&mut FileSink::new(&f), size, "KEEL-ESP", 0xC0FF_EE00, files).unwrap();
    path
}

fn fsck_clean(path: &Path) -> String {
    let o = tool("fsck.fat", &["-n", "-v", &s(path)]);
    let t = text(&o);
    assert!(o.status.success(), "fsck.fat -n -v failed:\n{t}");
    for bad in ["differ", "Reclaim", "nvalid", "wrong", "orrupt", "Free cluster", "bad", "Bad", "truncat"] {
        assert!(!t.contains(bad), "fsck.fat -n -v says `{bad}`:\n{t}");
    }
    assert!(t.contains("32 bit entries"), "not FAT32:\n{t}");
    t
}

fn mcopy_out(image: &str, file: &str) -> Vec<u8> {
    let o = tool("mcopy", &["-n", "-i", image, &format!("::{file}"), "-"]);
    assert!(o.status.success(), "mcopy {file}: {}", text(&o));
    o.stdout
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(2_654_435_761).rotate_left(u32::from(seed)) as u8).collect()
}

#[test]
fn esp_at_several_sizes_is_fsck_clean_and_readable() {
    let dir = tempfile::tempdir().unwrap();
    let boot = pattern(3 * MIB as usize + 123, 3);
    let one = pattern(512, 5);
    let many: Vec<(String, Vec<u8>)> =
        (0..20).map(|i| (format!("MANY/F{i:02}.BIN"), pattern(100 * i, i as u8))).collect();
    let mut files: Vec<(&str, &[u8])> = vec![
        ("EFI/BOOT/BOOTX64.EFI", &boot),
        ("EFI/KEEL/EMPTY.TXT", b""),
        ("EFI/KEEL/ONE.BIN", &one),
        ("README", b"keel\n"),
    ];
    files.extend(many.iter().map(|(p, d)| (p.as_str(), d.as_slice())));
    for size in [esp::min_fat32_size(), 64 * MIB, 200 * MIB, 300 * MIB] {
        let img = fat_file(dir.path(), &format!("esp-{size}.img"), size, &files);
        let report = fsck_clean(&img);
        let cluster = if size > 260 * MIB { 4096 } else { 512 };
        assert!(report.contains(&format!("{cluster} bytes per cluster")), "{report}");
        let image = s(&img);
        for (path, data) in &files {
            assert_eq!(&mcopy_out(&image, path), data, "{path} at ESP size {size}");
        }
        let label = text(&tool("mlabel", &["-s", "-i", &image, "::"]));
        assert!(label.contains("KEEL-ESP"), "mlabel: {label}");
        let listing = text(&tool("mdir", &["-/", "-b", "-i", &image, "::"]));
        let mut got: Vec<&str> = listing.lines().filter(|l| !l.ends_with('/')).collect();
        got.sort();
        let mut want: Vec<String> = files.iter().map(|(p, _)| format!("::/{p}")).collect();
        want.sort();
        assert_eq!(got, want, "mdir -/ -b:\n{listing}");
    }
}

#[test]
fn esp_empty_and_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let a = fat_file(dir.path(), "a.img", 64 * MIB, &[]);
    fsck_clean(&a);
    let files: &[(&str, &[u8])] = &[("EFI/BOOT/BOOTAA64.EFI", &[1u8; 5000])];
    let b = fat_file(dir.path(), "b.img", 64 * MIB, files);
    let c = fat_file(dir.path(), "c.img", 64 * MIB, files);
    fsck_clean(&b);
    assert!(same(&b, &c), "not deterministic");
    assert!(!same(&a, &b));
}

#[test]
fn esp_exactly_full_is_fsck_clean() {
    let dir = tempfile::tempdir().unwrap();
    let size = esp::min_fat32_size();
    // 66512 clusters of 512 bytes at the minimum size: one is the root directory.
    let data = pattern(66511 * 512, 2);
    let img = fat_file(dir.path(), "full.img", size, &[("FULL.BIN", &data)]);
    let report = fsck_clean(&img);
    assert!(report.contains("66512/66512 clusters"), "{report}");
    assert_eq!(mcopy_out(&s(&img), "FULL.BIN"), data);
}

#[test]
fn esp_sized_for_a_payload_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(45 * MIB as usize, 1);
    let size = esp::fat32_size_for(data.len() as u64);
    let img = fat_file(dir.path(), "sized.img", size, &[("EFI/BOOT/BOOTAA64.EFI", &data)]);
    fsck_clean(&img);
    assert_eq!(mcopy_out(&s(&img), "EFI/BOOT/BOOTAA64.EFI"), data);
}

// ---------------------------------------------------------------------------------------------
// GPT

fn disk_file(path: &Path, layout: &disk::Layout) -> File {
    let f = File::create(path).unwrap();
    f.set_len(layout.disk_size).unwrap();
    disk::write_gpt(&mut FileSink::new(&f), layout).unwrap();
    f
}

#[test]
fn gpt_is_valid_named_and_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let layout = disk::plan(b"web", 40 * MIB, 100 * MIB + 5, 64 * MIB);
    let a = dir.path().join("a.img");
    let b = dir.path().join("b.img");
    disk_file(&a, &layout);
    disk_file(&b, &disk::plan(b"web", 40 * MIB, 100 * MIB + 5, 64 * MIB));
    assert!(same(&a, &b), "not deterministic");

    let img = s(&a);
    let v = tool("sgdisk", &["-v", &img]);
    assert!(v.status.success() && text(&v).contains("No problems found"), "sgdisk -v:\n{}", text(&v));
    let p = text(&tool("sgdisk", &["-p", &img]));
    assert!(p.contains(&format!("Disk identifier (GUID): {}", layout.disk_guid)), "{p}");
    for (n, name, code, mib) in
        [(1, "keel-esp", "EF00", 40), (2, "keel-images", "8300", 101), (3, "keel-data", "8300", 64)]
    {
        let line = p
            .lines()
            .find(|l| l.split_whitespace().next() == Some(&n.to_string()))
            .unwrap_or_else(|| panic!("no partition {n}:\n{p}"));
        let f: Vec<_> = line.split_whitespace().collect();
        assert_eq!((f[3], f[4], f[5], f[6]), (format!("{mib}.0").as_str(), "MiB", code, name), "{line}");
        let part = &layout.parts[n - 1];
        assert_eq!(f[1].parse::<u64>().unwrap(), part.first_lba);
        assert_eq!(f[1].parse::<u64>().unwrap() % 2048, 0, "not 1 MiB aligned: {line}");
        let i = text(&tool("sgdisk", &["-i", &n.to_string(), &img]));
        assert!(i.contains(&format!("Partition unique GUID: {}", part.unique_guid)), "{i}");
        assert!(i.contains(&format!("Partition GUID code: {}", part.type_guid)), "{i}");
        assert!(i.contains(&format!("Partition name: '{name}'")), "{i}");
        let flags = if part.kind == PartKind::Images { "1000000000000000" } else { "0000000000000000" };
        assert!(i.contains(&format!("Attribute flags: {flags}")), "{i}");
    }
    // The disk ends 1 MiB after the last partition; the backup GPT is in that last MiB.
    assert_eq!(layout.disk_size, (1 + 40 + 101 + 64 + 1) * MIB);
}

// ---------------------------------------------------------------------------------------------
// All three: a disk holding a UKI, checked with sgdisk, fsck.fat and mtools. Nothing here
// boots it: keep it with KEEL_FORMATS_KEEP to boot it by hand.

/// An initramfs with busybox whose /init prints UKI-OK and powers off.
fn test_initramfs(arch: Arch) -> Vec<u8> {
    let busybox = from_deb("busybox-static", arch, "/bin/busybox");
    let entries = vec![
        Entry::dir("bin"),
        Entry::file("bin/busybox", 0o755, busybox),
        Entry::dir("dev"),
        Entry { path: "dev/console".into(), mode: 0o600, kind: initramfs::Kind::CharDev(5, 1) },
        Entry::file("init", 0o755, b"#!/bin/busybox sh\necho UKI-OK\n/bin/busybox poweroff -f\n".to_vec()),
    ];
    initramfs::build(&entries).unwrap()
}

fn check_uki_disk(arch: Arch) {
    let initrd = test_initramfs(arch);
    let linux = kernel(arch);
    let cmdline = format!("console={} panic=-1", arch.console());
    let uki_bytes = uki::build_uki(
        &stub(arch),
        &UkiParts { osrel: b"ID=keel\n", cmdline: cmdline.as_bytes(), uname: b"6.1.0-56", linux, initrd: &initrd },
    )
    .unwrap();
    let layout = disk::plan(b"uki-test", esp::fat32_size_for(uki_bytes.len() as u64), MIB, MIB);
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join(format!("uki-{arch:?}.img").to_lowercase());
    let f = disk_file(&img, &layout);
    let esp_part = layout.part(PartKind::Esp).unwrap();
    {
        let mut sink = FileSink::new(&f);
        let mut at = OffsetSink::new(&mut sink as &mut dyn Sink, esp_part.offset());
        esp::write_fat32(&mut at, esp_part.size(), "KEEL-ESP", 1, &[(arch.boot_file(), &uki_bytes)]).unwrap();
    }
    drop(f);

    let v = tool("sgdisk", &["-v", &s(&img)]);
    assert!(text(&v).contains("No problems found"), "sgdisk -v:\n{}", text(&v));
    // The ESP as a file of its own for fsck.fat; mtools reads it in place at its offset.
    let all = std::fs::read(&img).unwrap();
    let part_file = dir.path().join("esp.img");
    std::fs::write(&part_file, &all[esp_part.offset() as usize..(esp_part.offset() + esp_part.size()) as usize])
        .unwrap();
    fsck_clean(&part_file);
    let in_place = format!("{}@@{}", s(&img), esp_part.offset());
    assert!(mcopy_out(&in_place, arch.boot_file()) == uki_bytes, "UKI read back from the disk differs");

    if let Some(keep) = std::env::var_os("KEEL_FORMATS_KEEP") {
        let dst = Path::new(&keep).join(img.file_name().unwrap());
        std::fs::copy(&img, &dst).unwrap();
        eprintln!("kept {}", dst.display());
    }
}

#[test]
fn uki_disk_is_valid_and_reads_back_x86_64() {
    check_uki_disk(Arch::X86_64);
}

#[test]
fn uki_disk_is_valid_and_reads_back_aarch64() {
    check_uki_disk(Arch::Aarch64);
}
