//! Images made by real tools, not by keel's own writer: tests/fixtures/make-debian-oci packs
//! Debian's base-files, libc6 and dash with umoci (four gzip layers: a whiteout made by umoci
//! and an opaque directory written by GNU tar), copies them with skopeo to zstd layers and to
//! docker-archive tarballs, and puts both arches in one docker-archive.
//!
//! - Every format flattens to the same tree, with the whiteout and the opaque directory
//!   applied, and the image config's Entrypoint, Cmd, Env, WorkingDir and User as defaults.
//! - `keel check` accepts them; it refuses a docker-archive with a changed byte, the wrong
//!   arch, or several images and no reference.
//! - A host with one container per format boots on each arch under TCG; each container runs
//!   the image's default command (dash, shell builtins only) and reports what it sees.

use std::path::{Path, PathBuf};
use std::time::Duration;

use keel_builder::image::{self, tree::Kind, tree::Node, ImageRef};
use keel_plan::Arch;
use keel_tests::scenario::Scenario;
use keel_tests::{both_arches, keel, kernel_toml, root, text};
use sha2::{Digest, Sha256};

/// Where `make setup` puts the fixture.
fn fixture() -> PathBuf {
    let d = root().join(".cache/oci/debian");
    assert!(
        d.join(".complete").is_file(),
        "{} is missing: run `make setup` (tests/fixtures/make-debian-oci makes it)",
        d.display()
    );
    d
}

fn deb_arch(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "amd64",
        Arch::Aarch64 => "arm64",
    }
}

/// (container name, image reference) for every format of the fixture.
fn formats(arch: Arch) -> Vec<(&'static str, String)> {
    let d = fixture().display().to_string();
    let a = deb_arch(arch);
    vec![
        ("umoci", format!("oci:{d}/debian:debian-{a}")),
        ("zstd", format!("oci:{d}/debian-zstd:debian-{a}")),
        ("docker", format!("docker-archive:{d}/debian-{a}.tar")),
        ("multi", format!("docker-archive:{d}/debian-multi.tar:keel/debian:{a}")),
    ]
}

/// A config named `name` with one container per (name, image), written to `dir/NAME.toml`.
fn write_config(dir: &Path, name: &str, containers: &[(&str, String)]) -> PathBuf {
    let mut c = format!("version = 1\nname = \"{name}\"\n\n{}cmdline = \"quiet\"\n", kernel_toml());
    for (n, image) in containers {
        // A failing container must fail the test, not restart until the timeout.
        c.push_str(&format!("\n[[container]]\nname = \"{n}\"\nimage = \"{image}\"\nrestart = \"no\"\n"));
    }
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, c).unwrap();
    path
}

/// A digest of a whole tree: every path with its kind, mode, owner, time and content.
fn fingerprint(node: &Node, path: &str, h: &mut Sha256) {
    let m = &node.meta;
    h.update(format!("{path}\0{:o}\0{}\0{}\0{}\0", m.mode, m.uid, m.gid, m.mtime));
    match &node.kind {
        Kind::Dir(children) => {
            h.update(b"d");
            for (name, child) in children {
                fingerprint(child, &format!("{path}/{name}"), h);
            }
        }
        Kind::File(data) => {
            h.update(b"f");
            h.update(Sha256::digest(data.as_slice()));
        }
        Kind::Symlink(t) => h.update(format!("l{t}")),
        Kind::Fifo => h.update(b"p"),
    }
}

fn names_in(tree: &mut image::tree::Tree, dir: &str) -> Vec<String> {
    match tree.lookup(dir) {
        Ok(Node { kind: Kind::Dir(c), .. }) => c.keys().cloned().collect(),
        other => panic!("{dir} is not a directory in the image: {other:?}"),
    }
}

/// `/etc/debian_version` of the image, as the fixture packed it.
fn debian_version(arch: Arch) -> String {
    let (_, r) = &formats(arch)[0];
    let img = image::inspect(&ImageRef::parse(r, Path::new("/")).unwrap(), arch).unwrap();
    let (mut tree, _) = image::flatten(&img).unwrap();
    match tree.lookup("etc/debian_version") {
        Ok(Node { kind: Kind::File(d), .. }) => String::from_utf8_lossy(d).trim().to_string(),
        other => panic!("no /etc/debian_version: {other:?}"),
    }
}

#[test]
fn every_format_flattens_to_the_same_tree_with_its_defaults() {
    for arch in [Arch::X86_64, Arch::Aarch64] {
        let mut prints = Vec::new();
        for (name, r) in formats(arch) {
            let what = format!("{arch} {name} ({r})");
            let img = image::inspect(&ImageRef::parse(&r, Path::new("/")).unwrap(), arch)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            let d = &img.defaults;
            assert_eq!(d.entrypoint, ["/bin/dash", "-c"], "{what}");
            assert_eq!(d.cmd.len(), 1, "{what}: {:?}", d.cmd);
            assert!(d.cmd[0].contains("report=done"), "{what}: {:?}", d.cmd);
            assert!(d.env.iter().any(|e| e == "FOO=bar"), "{what}: {:?}", d.env);
            assert_eq!(d.workdir.as_deref(), Some("/opt"), "{what}");
            assert_eq!(d.user.as_deref(), Some("1000:1000"), "{what}");

            let (mut tree, stats) = image::flatten(&img).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(stats.layers, 4, "{what}");
            assert_eq!(stats.whiteouts, 2, "{what}: one whiteout and one opaque marker");
            assert!(tree.lookup("etc/debian_version").is_ok(), "{what}: no /etc/debian_version");
            assert!(matches!(tree.lookup("bin/dash"), Ok(Node { kind: Kind::File(_), .. })), "{what}: no dash");
            assert!(tree.lookup("etc/keel-doomed").is_err(), "{what}: the whiteout was not applied");
            assert!(tree.lookup("etc/.wh.keel-doomed").is_err(), "{what}: the whiteout itself is in the tree");
            assert_eq!(names_in(&mut tree, "opt/keel-opaque"), ["new"], "{what}: the opaque marker was not applied");
            let mut h = Sha256::new();
            fingerprint(&tree.root, "", &mut h);
            prints.push((name, hex::encode(h.finalize())));
        }
        let first = &prints[0].1;
        assert!(prints.iter().all(|(_, p)| p == first), "{arch}: the formats give different trees: {prints:?}");
    }
}

#[test]
fn keel_check_accepts_every_format() {
    let dir = tempfile::tempdir().unwrap();
    for arch in [Arch::X86_64, Arch::Aarch64] {
        let cfg = write_config(dir.path(), "real", &formats(arch));
        let o = keel(&["check", &cfg.to_string_lossy(), "--arch", arch.name()]);
        let out = text(&o);
        assert!(o.status.success(), "{arch}: keel check failed:\n{out}");
        assert!(out.contains(": ok (") && out.contains("4 container(s)"), "{arch}: {out}");
    }
}

/// `keel check` of one container with `image` must exit 2 naming the image key, with `want`
/// in the message.
fn check_refuses(dir: &Path, image: &str, arch: Arch, want: &str) {
    let cfg = write_config(dir, "refused", &[("c", image.to_string())]);
    let o = keel(&["check", &cfg.to_string_lossy(), "--arch", arch.name()]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(2), "{image}: want exit 2:\n{out}");
    assert!(out.contains("key `container[0].image`"), "{image}: the error does not name the key:\n{out}");
    assert!(out.contains(want), "{image}: want `{want}` in:\n{out}");
}

#[test]
fn docker_archives_are_verified_and_chosen_by_reference() {
    let d = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let multi = d.join("debian-multi.tar").display().to_string();
    check_refuses(tmp.path(), &format!("docker-archive:{multi}"), Arch::X86_64, "holds 2 images");
    check_refuses(tmp.path(), &format!("docker-archive:{multi}"), Arch::X86_64, "keel/debian:arm64");
    check_refuses(tmp.path(), &format!("docker-archive:{multi}:keel/debian:riscv64"), Arch::X86_64, "no image tagged");
    check_refuses(tmp.path(), &format!("docker-archive:{multi}:keel/debian:arm64"), Arch::X86_64, "image is for arm64");
    let amd64 = d.join("debian-amd64.tar");
    check_refuses(tmp.path(), &format!("docker-archive:{}", amd64.display()), Arch::Aarch64, "image is for amd64");

    // One byte changed inside an (uncompressed) layer member: its diff_id no longer matches.
    let mut bytes = std::fs::read(&amd64).unwrap();
    let at = bytes.windows(7).position(|w| w == b"doomed\n").expect("layer 2 holds /etc/keel-doomed");
    bytes[at] = b'D';
    let tampered = tmp.path().join("tampered.tar");
    std::fs::write(&tampered, bytes).unwrap();
    check_refuses(tmp.path(), &format!("docker-archive:{}", tampered.display()), Arch::X86_64, "failed verification");
}

/// Build a host with one container per format but `multi` (no `command`: the image's defaults
/// run), boot it, and check what each container reports.
fn real_images_boot(arch: Arch) {
    let version = debian_version(arch);
    let containers: Vec<_> = formats(arch).into_iter().filter(|(n, _)| *n != "multi").collect();
    let s = Scenario::new("realimages", arch, &[("debarch", deb_arch(arch))]);
    let run = s.boot(Duration::from_secs(400));
    let console = &run.console;
    for (c, image) in &containers {
        let lines: Vec<&str> = run.output(c).into_iter().map(str::trim_end).collect();
        for want in [
            format!("debian={version}"),
            "doomed=gone".to_string(),
            "opaque=new".to_string(),
            "foo=bar pwd=/opt".to_string(),
            "uid=1000".to_string(),
            "report=done".to_string(),
        ] {
            assert!(lines.iter().any(|l| *l == want), "{arch}: {c} ({image}) did not print `{want}`:\n{console}");
        }
        run.expect(&format!("container {c} exited with status 0"));
    }
    eprintln!("{arch}: three real images booted in {:.1}s", run.wall.as_secs_f64());
}

both_arches!(real_images_boot);
