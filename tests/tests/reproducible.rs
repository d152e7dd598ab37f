//! Reproducible builds:
//! - two builds of one config give byte-identical disk images, UKIs, initramfs, provenance
//!   records and SBOMs, on each arch, and the record names the commit, the compiler and every
//!   input's sha256;
//! - keel-init rebuilt from a copy of the sources at another path, with another `CARGO_HOME`, is
//!   byte-identical on both arches, and so are the images (and their SBOMs) built with it;
//! - no path of the build machine (the checkout, cargo's and rustup's homes) is in keel-init,
//!   keel or any artifact.

use std::path::{Path, PathBuf};
use std::process::Command;

use keel_plan::Arch;
use keel_tests::{both_arches, build, keel_bin, root, sha256, text, tool};

fn two_builds_are_identical(arch: Arch) {
    let a = build("configs/hello.toml", arch, &format!("repro-{arch}-a"));
    let b = build("configs/hello.toml", arch, &format!("repro-{arch}-b"));
    assert_eq!(sha256(&a.img), sha256(&b.img), "{arch}: disk images differ");
    assert_eq!(sha256(&a.efi), sha256(&b.efi), "{arch}: UKIs differ");
    assert_eq!(sha256(&a.initrd), sha256(&b.initrd), "{arch}: initramfs differ");
    let record = format!("hello-{arch}.provenance.json");
    assert_eq!(sha256(&a.dir.join(&record)), sha256(&b.dir.join(&record)), "{arch}: provenance records differ");
    let sbom = format!("hello-{arch}.spdx.json");
    assert_eq!(sha256(&a.dir.join(&sbom)), sha256(&b.dir.join(&sbom)), "{arch}: SBOMs differ");
}

/// The provenance record names the commit and compiler keel was built from, and the sha256 of
/// every input, each checked against the file itself.
fn the_provenance_names_what_went_in(arch: Arch) {
    let b = build("configs/hello.toml", arch, &format!("provenance-{arch}"));
    let path = b.dir.join(format!("hello-{arch}.provenance.json"));
    let text = std::fs::read_to_string(&path).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let s = |p: &str| v.pointer(p).and_then(|x| x.as_str()).unwrap_or_else(|| panic!("no {p} in:\n{text}")).to_string();
    let out = |cmd: &str, args: &[&str]| String::from_utf8_lossy(&tool(cmd, args).stdout).trim().to_string();
    let root_s = root().to_string_lossy().into_owned();
    assert_eq!(s("/keel/commit"), out("git", &["-C", &root_s, "rev-parse", "HEAD"]), "{arch}: commit");
    assert_eq!(s("/keel/rustc"), out("rustc", &["--version"]), "{arch}: rustc");
    assert_eq!(s("/arch"), arch.name());
    assert_eq!(s("/keel-init/sha256"), sha256(&init_in(&root(), arch)), "{arch}: keel-init");
    assert_eq!(s("/config/sha256"), sha256(&root().join("configs/hello.toml")), "{arch}: config");
    assert_eq!(s("/uki/sha256"), sha256(&b.efi), "{arch}: UKI");
    for part in ["kernel", "stub"] {
        let file = root().join(".cache/debs").join(s(&format!("/{part}/file")));
        assert_eq!(s(&format!("/{part}/sha256")), sha256(&file), "{arch}: {part} {}", file.display());
    }
    // The image: its manifest is the arch's in the layout's index, and every digest is a blob
    // of the layout whose content hashes to it.
    let layout = root().join(".cache/oci/busybox");
    let index = std::fs::read_to_string(layout.join("index.json")).unwrap();
    let digests = v.pointer("/images/0/digests").and_then(|d| d.as_array()).cloned().unwrap_or_default();
    let whats: Vec<&str> = digests.iter().filter_map(|d| d["what"].as_str()).collect();
    assert_eq!(whats, ["manifest", "config", "layer"], "{arch}: {text}");
    assert!(index.contains(digests[0]["digest"].as_str().unwrap()), "{arch}: the manifest is not in index.json");
    for d in &digests {
        let digest = d["digest"].as_str().unwrap();
        let hex = digest.strip_prefix("sha256:").unwrap_or_else(|| panic!("{digest}"));
        assert_eq!(sha256(&layout.join("blobs/sha256").join(hex)), hex, "{arch}: blob {digest}");
    }
    // Nothing of this machine or this moment.
    let today = out("date", &["-u", "+%Y-%m-%d"]);
    assert!(!text.contains(&root_s) && !text.contains(&today), "{arch}: a path or a date in:\n{text}");
}

both_arches!(two_builds_are_identical, the_provenance_names_what_went_in);

const ARCHES: [Arch; 2] = [Arch::X86_64, Arch::Aarch64];

/// keel-init as `make init` builds it, under the checkout `dir`.
fn init_in(dir: &Path, arch: Arch) -> PathBuf {
    dir.join("target").join(arch.musl_triple()).join("release/keel-init")
}

/// cargo's home: `$CARGO_HOME`, else `~/.cargo`.
fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME").map(PathBuf::from).unwrap_or_else(|| home().join(".cargo"))
}

fn home() -> PathBuf {
    std::env::var_os("HOME").map(PathBuf::from).expect("HOME is set")
}

/// The printable runs of at least 8 bytes in `bytes`, as `strings` shows them.
fn strings(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|b| !(0x20..0x7f).contains(b))
        .filter(|run| run.len() >= 8)
        .map(|run| String::from_utf8_lossy(run).into_owned())
        .collect()
}

/// Where two binaries differ, as the strings each has and the other lacks: that names the cause
/// (an embedded path, a version) where a byte offset would not.
fn first_differing_strings(a: &[u8], b: &[u8]) -> String {
    let (sa, sb) = (strings(a), strings(b));
    let only = |x: &[String], y: &[String]| -> Vec<String> {
        let y: std::collections::BTreeSet<&String> = y.iter().collect();
        x.iter().filter(|s| !y.contains(s)).take(10).cloned().collect()
    };
    format!("only here:\n  {}\nonly there:\n  {}", only(&sa, &sb).join("\n  "), only(&sb, &sa).join("\n  "))
}

#[test]
fn a_rebuild_elsewhere_matches() {
    let tmp = tempfile::Builder::new().prefix("keel-elsewhere").tempdir().unwrap();
    // The sources as they are here (tracked files, and new ones not ignored), at another path.
    let src = tmp.path().join("another/checkout");
    std::fs::create_dir_all(&src).unwrap();
    let copy = format!(
        "git -C '{root}' ls-files -z --cached --others --exclude-standard | \
         tar -C '{root}' --null --ignore-failed-read -T - -cf - | tar -C '{src}' -xf -",
        root = root().display(),
        src = src.display()
    );
    let o = tool("bash", &["-c", &copy]);
    assert!(o.status.success(), "copying the sources failed:\n{}", text(&o));
    // Another cargo home, holding the same registry index and downloaded crates (cargo unpacks
    // them again under its own registry/src), so the build can run offline.
    let other_home = tmp.path().join("cargo-home");
    std::fs::create_dir_all(other_home.join("registry")).unwrap();
    for part in ["index", "cache"] {
        let from = cargo_home().join("registry").join(part);
        let to = other_home.join("registry").join(part);
        let linked = tool("cp", &["-al", &from.to_string_lossy(), &to.to_string_lossy()]);
        if !linked.status.success() {
            let o = tool("cp", &["-a", &from.to_string_lossy(), &to.to_string_lossy()]);
            assert!(o.status.success(), "copying {}: {}", from.display(), text(&o));
        }
    }
    // The very commands `make init` runs, in a clean environment: nothing of this make's
    // RUSTFLAGS or target directory.
    let o = Command::new("make")
        .args(["-C", &src.to_string_lossy(), "init-bins", "CARGO=cargo --offline"])
        .env("CARGO_HOME", &other_home)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET_DIR")
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL")
        .output()
        .expect("run make");
    assert!(o.status.success(), "make init-bins in {} failed:\n{}", src.display(), text(&o));

    let mut problems = Vec::new();
    for arch in ARCHES {
        let (here, there) = (init_in(&root(), arch), init_in(&src, arch));
        let (a, b) = (std::fs::read(&here).unwrap(), std::fs::read(&there).unwrap());
        eprintln!(
            "{arch}: keel-init here {} ({} B), elsewhere {} ({} B)",
            sha256(&here),
            a.len(),
            sha256(&there),
            b.len()
        );
        if a != b {
            problems.push(format!("{arch}: keel-init differs\n{}", first_differing_strings(&a, &b)));
            continue;
        }
        // The same config built with each keel-init.
        let mine = build("configs/hello.toml", arch, &format!("elsewhere-{arch}-here"));
        let out = tmp.path().join(format!("out-{arch}"));
        let o = Command::new(keel_bin())
            .args(["build", "configs/hello.toml", "--arch", arch.name(), "-o", &out.to_string_lossy()])
            .arg("--init")
            .arg(&there)
            .current_dir(root())
            .output()
            .expect("run keel");
        assert!(o.status.success(), "keel build with the other keel-init failed:\n{}", text(&o));
        for ext in ["img", "efi", "provenance.json", "spdx.json"] {
            let file = format!("hello-{arch}.{ext}");
            if sha256(&mine.dir.join(&file)) != sha256(&out.join(&file)) {
                problems.push(format!("{arch}: {file} differs"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn no_path_of_the_build_machine_is_embedded() {
    let rustup = std::env::var_os("RUSTUP_HOME").map(PathBuf::from).unwrap_or_else(|| home().join(".rustup"));
    // The checkout, cargo's and rustup's homes, and anything hidden under $HOME ("/root/." and
    // not "/root": images may hold /root itself).
    let needles: Vec<String> = [root(), cargo_home(), rustup]
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .chain([format!("{}/.", home().display())])
        .collect();
    let mut files: Vec<PathBuf> = ARCHES.iter().map(|a| init_in(&root(), *a)).collect();
    files.push(keel_bin());
    for arch in ARCHES {
        let b = build("configs/hello.toml", arch, &format!("paths-{arch}"));
        let mut outputs: Vec<PathBuf> = std::fs::read_dir(&b.dir).unwrap().map(|e| e.unwrap().path()).collect();
        outputs.sort();
        assert!(outputs.len() >= 6, "{}: too few outputs: {outputs:?}", b.dir.display());
        files.extend(outputs);
    }
    let mut found = Vec::new();
    for f in &files {
        let all = strings(&std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display())));
        for n in &needles {
            if let Some(s) = all.iter().find(|s| s.contains(n.as_str())) {
                found.push(format!("{}: `{n}` in `{s}`", f.display()));
            }
        }
    }
    eprintln!("{} files searched for {needles:?}", files.len());
    assert!(found.is_empty(), "paths of this machine are embedded:\n{}", found.join("\n"));
}
