//! Artifact tests: build configs/hello.toml for both arches and check every artifact with the
//! standard tools (sgdisk, fsck.fat, mtools, e2fsck, zstd, cpio, objdump).

use keel_plan::Arch;
use keel_tests::{extract, hello, partitions, text, tool};

fn check_disk(arch: Arch) {
    let b = hello(arch);
    let img = b.img.to_string_lossy().into_owned();

    // GPT: sgdisk finds no problem, and the three partitions are there by name.
    let v = tool("sgdisk", &["-v", &img]);
    assert!(v.status.success() && text(&v).contains("No problems found"), "sgdisk -v:\n{}", text(&v));
    let parts = partitions(&b.img);
    let names: Vec<_> = parts.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names.len(), 3, "partitions: {parts:?}");
    assert!(names.contains(&"keel-images") && names.contains(&"keel-data"), "partitions: {names:?}");
    // A second, independent reader: the `gpt` crate sees the same table.
    let disk = gpt::GptConfig::new().writable(false).open(&b.img).expect("the gpt crate reads the disk");
    let by_gpt: Vec<(String, u64, u64)> =
        disk.partitions().values().map(|p| (p.name.clone(), p.first_lba, p.last_lba)).collect();
    let by_sgdisk: Vec<(String, u64, u64)> = parts.iter().map(|p| (p.name.clone(), p.first, p.last)).collect();
    assert_eq!(by_gpt, by_sgdisk, "the gpt crate and sgdisk disagree");

    let tmp = tempfile::tempdir().unwrap();
    for p in &parts {
        let f = tmp.path().join(format!("part{}", p.number));
        extract(&b.img, p, &f);
        let fs = f.to_string_lossy().into_owned();
        if p.number == 1 {
            // ESP: fsck.fat clean, the UKI at the removable-media default boot path.
            let o = tool("fsck.fat", &["-n", "-v", &fs]);
            let t = text(&o);
            assert!(o.status.success(), "fsck.fat -n:\n{t}");
            assert!(t.contains("32 bit entries"), "ESP is not FAT32:\n{t}");
            let copy = tmp.path().join("boot.efi");
            let path = format!("::EFI/BOOT/{}", arch.efi_boot_file());
            let o = tool("mcopy", &["-n", "-i", &fs, &path, &copy.to_string_lossy()]);
            assert!(o.status.success(), "mcopy {path}: {}", text(&o));
            assert_eq!(keel_tests::sha256(&copy), keel_tests::sha256(&b.efi), "ESP boot file is not the UKI");
        } else {
            let o = tool("e2fsck", &["-f", "-n", &fs]);
            assert!(o.status.success(), "e2fsck -fn {} ({}):\n{}", p.name, p.number, text(&o));
            let o = tool("dumpe2fs", &["-h", &fs]);
            assert!(text(&o).contains(&format!("Filesystem volume name:   {}", p.name)), "{}", text(&o));
        }
    }
    // The container's tree is on keel-images, named after it, with every owner shifted into the
    // container's id range (the plan's id_base): root-owned files of the image belong to id_base.
    let images = parts.iter().find(|p| p.name == "keel-images").unwrap();
    let f = tmp.path().join(format!("part{}", images.number));
    let o = tool("debugfs", &["-R", "stat /hello/bin/busybox", &f.to_string_lossy()]);
    let stat = text(&o);
    assert!(stat.contains("Type: regular"), "busybox missing from the container tree:\n{stat}");
    let plan = cpio_extract(&b.initrd, "etc/keel/plan");
    let plan = keel_plan::Plan::from_bytes(plan.as_bytes()).expect("plan");
    let base = plan.containers[0].id_base;
    assert!(base >= keel_plan::ID_RANGE, "container id base {base} overlaps host ids");
    assert!(stat.contains(&format!("User: {base:>5}")) || stat.contains(&format!("User: {base} ")), "{stat}");
    assert!(stat.contains(&format!("Group: {base:>5}")) || stat.contains(&format!("Group: {base} ")), "{stat}");
}

/// One file out of the initramfs.
fn cpio_extract(initrd: &std::path::Path, path: &str) -> String {
    cpio_listing(initrd, &["-i", "--quiet", "--to-stdout", path])
}

/// `zstd -dc INITRD | cpio ARGS`, through duct's pipes.
fn cpio_listing(initrd: &std::path::Path, args: &[&str]) -> String {
    let o = duct::cmd("zstd", ["-dc".as_ref(), initrd.as_os_str()])
        .pipe(duct::cmd("cpio", args))
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .expect("run zstd | cpio (make setup installs them)");
    assert!(o.status.success(), "zstd -dc | cpio {args:?}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn check_initramfs(arch: Arch) {
    let b = hello(arch);
    let listing = cpio_listing(&b.initrd, &["-t", "--quiet"]);
    let mut modules = 0;
    for entry in listing.lines() {
        let allowed = matches!(
            entry,
            "dev"
                | "dev/console"
                | "etc"
                | "etc/keel"
                | "etc/keel/plan"
                | "etc/keel/seccomp"
                | "etc/keel/seccomp/default"
                | "init"
                | "lib"
                | "lib/modules"
        );
        let module = entry.starts_with("lib/modules/") && entry.ends_with(".ko");
        modules += usize::from(module);
        assert!(allowed || module, "unexpected initramfs entry `{entry}`:\n{listing}");
    }
    for must in [
        "init",
        "etc/keel/plan",
        "etc/keel/seccomp/default",
        "dev/console",
        "lib/modules/virtio_blk.ko",
        "lib/modules/ext4.ko",
    ] {
        assert!(listing.lines().any(|l| l == must), "initramfs lacks {must}:\n{listing}");
    }
    assert!(modules >= 5, "only {modules} modules:\n{listing}");
    let long = cpio_listing(&b.initrd, &["-tv", "--quiet"]);
    // /dev/console is a character device 5:1.
    let console =
        long.lines().find(|l| l.ends_with(" dev/console")).unwrap_or_else(|| panic!("no dev/console:\n{long}"));
    let fields: Vec<&str> = console.split_whitespace().collect();
    assert!(
        console.starts_with("crw") && fields.get(4) == Some(&"5,") && fields.get(5) == Some(&"1"),
        "dev/console: {console}"
    );
    // Exactly one executable: init.
    let executables: Vec<&str> =
        long.lines().filter(|l| l.starts_with('-') && l.as_bytes().get(3) == Some(&b'x')).collect();
    assert_eq!(executables.len(), 1, "executables in the initramfs: {executables:?}");
    assert!(executables[0].ends_with(" init"), "the executable is not init: {executables:?}");
    // Execute-only for all but root (CVE-2019-5736 pattern): a container process that gets the
    // kernel to run /init (`#!/proc/self/exe`) can neither read it through /proc/PID/exe nor
    // dump it, since exec of an unreadable file clears the dumpable flag.
    assert!(executables[0].starts_with("-rwx--x--x "), "init is not mode 0711: {}", executables[0]);
}

fn check_uki(arch: Arch) {
    let b = hello(arch);
    let o = tool("objdump", &["-h", &b.efi.to_string_lossy()]);
    let t = text(&o);
    assert!(o.status.success(), "objdump -h: {t}");
    for s in [".osrel", ".cmdline", ".uname", ".linux", ".initrd"] {
        assert!(t.lines().any(|l| l.split_whitespace().nth(1) == Some(s)), "UKI lacks {s}:\n{t}");
    }
    let fmt = match arch {
        Arch::X86_64 => "pei-x86-64",
        Arch::Aarch64 => "pei-aarch64-little",
    };
    assert!(t.contains(fmt), "UKI is not {fmt}:\n{t}");
}

#[test]
fn disk_x86_64() {
    check_disk(Arch::X86_64);
}

#[test]
fn disk_aarch64() {
    check_disk(Arch::Aarch64);
}

#[test]
fn initramfs_x86_64() {
    check_initramfs(Arch::X86_64);
}

#[test]
fn initramfs_aarch64() {
    check_initramfs(Arch::Aarch64);
}

#[test]
fn uki_x86_64() {
    check_uki(Arch::X86_64);
}

#[test]
fn uki_aarch64() {
    check_uki(Arch::Aarch64);
}

/// keel-init is static and within its 2 MiB budget (the API's TLS stack included); the hello
/// disk allocates under 40 MiB.
#[test]
fn sizes() {
    use std::os::unix::fs::MetadataExt;
    for arch in Arch::ALL {
        let init = keel_tests::root().join("target").join(arch.musl_triple()).join("release/keel-init");
        let md = std::fs::metadata(&init).unwrap_or_else(|e| panic!("{}: {e} (run `make build`)", init.display()));
        assert!(md.len() <= 2 << 20, "keel-init for {arch} is {} bytes, over its 2 MiB budget", md.len());
        let o = tool("file", &[&init.to_string_lossy()]);
        assert!(text(&o).contains("statically linked") || text(&o).contains("static-pie"), "{}", text(&o));
        let b = hello(arch);
        let allocated = std::fs::metadata(&b.img).unwrap().blocks() * 512;
        assert!(allocated < 40 << 20, "hello-{arch}.img allocates {allocated} bytes");
        eprintln!("{arch}: keel-init {} bytes, hello disk allocates {} KiB", md.len(), allocated >> 10);
    }
}
