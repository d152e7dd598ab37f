//! `keel new NAME`: a starter config that `keel check` accepts and `keel build` builds with no
//! edits, pinning the packages `make setup` downloads; it never overwrites a file.

use std::path::Path;
use std::process::{Command, Output};

use keel_tests::{keel_bin, root, sha256, text};

/// Run keel in `dir`.
fn keel_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(keel_bin()).args(args).current_dir(dir).output().expect("run keel")
}

#[test]
fn a_new_config_checks_and_builds_as_written() {
    // Inside the repo, so the cache is found above the current directory even when this keel
    // lives elsewhere ($KEEL_BIN).
    std::fs::create_dir_all(root().join("target")).unwrap();
    let dir = tempfile::tempdir_in(root().join("target")).unwrap();
    let d = dir.path();
    let o = keel_in(d, &["new", "demo", "--arch", "x86_64"]);
    assert!(o.status.success(), "keel new failed:\n{}", text(&o));
    let log = text(&o);
    assert!(log.contains(&format!("using the package cache {}", root().join(".cache").display())), "{log}");
    let cfg = std::fs::read_to_string(d.join("demo.toml")).unwrap();
    assert!(cfg.contains("name = \"demo\"") && cfg.contains("package.x86_64 = ") && cfg.contains("stub.x86_64 = "));
    assert!(cfg.contains("/.cache/oci/busybox:hello\""), "{cfg}");
    assert!(cfg.lines().filter(|l| l.starts_with('#')).count() >= 5, "no comments:\n{cfg}");

    let o = keel_in(d, &["check", "demo.toml"]);
    assert!(o.status.success(), "keel check of the new config failed:\n{}\n{cfg}", text(&o));
    assert!(text(&o).starts_with("demo.toml: ok (x86_64, "), "{}", text(&o));

    let o = keel_in(d, &["build", "demo.toml"]);
    assert!(o.status.success(), "keel build of the new config failed:\n{}\n{cfg}", text(&o));
    for ext in ["img", "efi", "vmlinuz", "initrd", "cmdline"] {
        assert!(d.join(format!("out/demo-x86_64.{ext}")).is_file(), "no out/demo-x86_64.{ext}");
    }

    // Never overwritten.
    let o = keel_in(d, &["new", "demo"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("demo.toml already exists"), "{}", text(&o));
    assert_eq!(std::fs::read_to_string(d.join("demo.toml")).unwrap(), cfg);
}

#[test]
fn given_packages_are_pinned_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let debs = root().join(".cache/debs");
    let kernel = debs.join("linux-image-6.1.0-56-arm64_6.1.192-2_arm64.deb");
    let stub = debs.join("systemd-boot-efi_252.39-1~deb12u2_arm64.deb");
    let (k, s) = (kernel.to_string_lossy().into_owned(), stub.to_string_lossy().into_owned());

    // An arm64 kernel for x86_64 is refused, and nothing is written.
    let o = keel_in(d, &["new", "edge", "--arch", "x86_64", "--kernel", &k, "--stub", &s]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--kernel: ") && text(&o).contains("for arm64"), "{}", text(&o));
    assert!(!d.join("edge.toml").exists());

    let o = keel_in(d, &["new", "edge", "--arch", "aarch64", "--kernel", &k, "--stub", &s]);
    assert!(o.status.success(), "{}", text(&o));
    let cfg = std::fs::read_to_string(d.join("edge.toml")).unwrap();
    assert!(cfg.contains("arch = \"aarch64\""), "{cfg}");
    for (key, file) in [("package.aarch64", &kernel), ("stub.aarch64", &stub)] {
        let line = cfg.lines().find(|l| l.starts_with(key)).unwrap_or_else(|| panic!("no {key}:\n{cfg}"));
        assert!(line.contains(&format!("sha256 = \"{}\"", sha256(file))), "{line}");
    }

    // Bad names are refused.
    for bad in ["Demo", "no/slash", ""] {
        let o = keel_in(d, &["new", bad]);
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", text(&o));
    }
}
