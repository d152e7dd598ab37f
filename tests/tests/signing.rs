//! Authenticode signing of the UKI (`[signing]`), checked with Debian's tools, on each arch:
//! - `sbverify` accepts the signed UKI with the test certificate and refuses it with another;
//! - `osslsigncode verify` agrees, and its digests are keel's;
//! - keel's Authenticode digest of the unsigned UKI is the one sbsign signs;
//! - `sbattach --remove` gives back the unsigned UKI of the same config byte for byte;
//! - two signed builds are identical, the ESP carries the signed UKI, and both the build's
//!   report and the provenance record say it is signed and with which certificate.

use std::path::{Path, PathBuf};

use keel_plan::Arch;
use keel_tests::{both_arches, build, extract, keel, partitions, root, sha256, text, tool, Built};

fn fixture(name: &str) -> String {
    root().join("tests/fixtures/signing").join(name).to_string_lossy().into_owned()
}

/// configs/hello.toml with `[signing]` (the test key), written into `dir`.
fn signed_config(dir: &Path) -> PathBuf {
    let good = std::fs::read_to_string(root().join("configs/hello.toml")).unwrap();
    let cache = root().join(".cache").to_string_lossy().into_owned();
    let signing = format!("\n[signing]\nkey = \"{}\"\ncert = \"{}\"\n", fixture("test-db.key"), fixture("test-db.pem"));
    let path = dir.join("hello.toml");
    std::fs::write(&path, good.replace("../.cache", &cache) + &signing).unwrap();
    path
}

/// The sha256 of the test certificate in DER, as `openssl x509 -outform DER` writes it.
fn cert_der_sha256(dir: &Path) -> String {
    let der = dir.join("cert.der");
    let o =
        tool("openssl", &["x509", "-in", &fixture("test-db.pem"), "-outform", "DER", "-out", &der.to_string_lossy()]);
    assert!(o.status.success(), "{}", text(&o));
    sha256(&der)
}

fn signed_build(config: &Path, arch: Arch, out: &str) -> (Built, String) {
    let dir = root().join("target/keel-tests").join(out);
    let _ = std::fs::remove_dir_all(&dir);
    let o = keel(&["build", &config.to_string_lossy(), "--arch", arch.name(), "-o", &dir.to_string_lossy()]);
    assert!(o.status.success(), "signed build ({arch}) failed:\n{}", text(&o));
    let stem = format!("hello-{arch}");
    let built = Built {
        img: dir.join(format!("{stem}.img")),
        efi: dir.join(format!("{stem}.efi")),
        initrd: dir.join(format!("{stem}.initrd")),
        dir,
    };
    (built, text(&o))
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn signed_uki(arch: Arch) {
    let tmp = tempfile::tempdir().unwrap();
    let config = signed_config(tmp.path());
    let unsigned = build("configs/hello.toml", arch, &format!("signing-{arch}-unsigned"));
    let (signed, report) = signed_build(&config, arch, &format!("signing-{arch}-a"));
    let (again, _) = signed_build(&config, arch, &format!("signing-{arch}-b"));
    let cert_sha256 = cert_der_sha256(tmp.path());

    // Deterministic: no signing time, and RSA PKCS#1 v1.5 is deterministic.
    assert_eq!(sha256(&signed.efi), sha256(&again.efi), "{arch}: two signed UKIs differ");
    assert_eq!(sha256(&signed.img), sha256(&again.img), "{arch}: two signed disk images differ");
    assert_ne!(sha256(&signed.efi), sha256(&unsigned.efi), "{arch}: the UKI is not signed");

    // sbverify: the test certificate verifies it, another does not.
    let o = tool("sbverify", &["--cert", &fixture("test-db.pem"), &s(&signed.efi)]);
    assert!(o.status.success() && text(&o).contains("Signature verification OK"), "{arch}: sbverify:\n{}", text(&o));
    // It warns about the aarch64 stub's gap (see below), and hashes as EDK2 does all the same.
    assert_eq!(text(&o).contains("gap in section table"), arch == Arch::Aarch64, "{arch}: sbverify:\n{}", text(&o));
    let other = root().join("tests/bad-configs/api-tls-rsa/server.pem");
    let o = tool("sbverify", &["--cert", &s(&other), &s(&signed.efi)]);
    assert!(!o.status.success(), "{arch}: sbverify accepted another certificate:\n{}", text(&o));
    let o = tool("sbverify", &["--cert", &fixture("test-db.pem"), &s(&unsigned.efi)]);
    assert!(!o.status.success(), "{arch}: sbverify accepted the unsigned UKI:\n{}", text(&o));

    // osslsigncode: the digest in the signature is keel's. On x86_64 it computes the same one and
    // the signature verifies. The aarch64 stub leaves a gap between its last section and the
    // UKI's first (docs/architecture.md, "Signing"): the Authenticode digest (EDK2, sbsign,
    // keel) leaves the gap out, osslsigncode hashes the file from SizeOfHeaders on in one piece,
    // so it computes another digest and refuses the signature.
    let unsigned_bytes = std::fs::read(&unsigned.efi).unwrap();
    let digest = hex::encode(keel_builder::sign::pe::authenticode_digest(&unsigned_bytes).unwrap());
    let o = tool("osslsigncode", &["verify", "-CAfile", &fixture("test-db.pem"), "-in", &s(&signed.efi)]);
    let t = text(&o);
    let field = |name: &str| {
        t.lines()
            .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().trim_start_matches(':').trim().to_lowercase()))
            .unwrap_or_else(|| panic!("{arch}: no `{name}` in osslsigncode verify:\n{t}"))
    };
    assert_eq!(field("Current message digest"), digest, "{arch}: osslsigncode:\n{t}");
    let gap = gap_after_sections(&unsigned_bytes);
    match arch {
        Arch::X86_64 => {
            assert_eq!(gap, None, "x86_64: a gap between sections");
            assert_eq!(field("Calculated message digest"), digest, "{arch}: osslsigncode:\n{t}");
            assert!(o.status.success() && t.contains("Signature verification: ok"), "{arch}: osslsigncode:\n{t}");
            assert!(t.contains("Succeeded"), "{arch}: osslsigncode verify:\n{t}");
        }
        Arch::Aarch64 => {
            let (from, to) = gap.expect("aarch64: no gap between sections");
            // The stub's own sections end before the file does: the gap is the stub's tail.
            assert!(from < to && to - from < 64 << 10, "{arch}: gap {from:#x}..{to:#x}");
            assert_eq!(
                field("Calculated message digest").split_whitespace().next(),
                Some(contiguous_digest(&unsigned_bytes).as_str()),
                "{t}"
            );
            assert!(
                t.contains("MISMATCH") && t.contains("Failed") && !o.status.success(),
                "{arch}: osslsigncode:\n{t}"
            );
        }
    }

    // sbsign, given the same unsigned UKI, signs the same digest.
    let detached = tmp.path().join("sbsign.p7");
    let o = tool(
        "sbsign",
        &[
            "--key",
            &fixture("test-db.key"),
            "--cert",
            &fixture("test-db.pem"),
            "--detached",
            "--output",
            &s(&detached),
            &s(&unsigned.efi),
        ],
    );
    assert!(o.status.success(), "{arch}: sbsign:\n{}", text(&o));
    let p7 = hex::encode(std::fs::read(&detached).unwrap());
    assert!(p7.contains(&format!("0420{digest}")), "{arch}: sbsign signed another digest than keel's {digest}");

    // Removing the signature gives back the unsigned UKI of the same config.
    let copy = tmp.path().join("removed.efi");
    std::fs::copy(&signed.efi, &copy).unwrap();
    let o = tool("sbattach", &["--remove", &s(&copy)]);
    assert!(o.status.success(), "{arch}: sbattach --remove:\n{}", text(&o));
    assert_eq!(sha256(&copy), sha256(&unsigned.efi), "{arch}: sbattach --remove is not the unsigned UKI");

    // The ESP boots the signed UKI.
    let esp = partitions(&signed.img).into_iter().find(|p| p.number == 1).unwrap();
    let fs = tmp.path().join("esp");
    extract(&signed.img, &esp, &fs);
    let boot = tmp.path().join("boot.efi");
    let path = format!("::EFI/BOOT/{}", arch.efi_boot_file());
    let o = tool("mcopy", &["-n", "-i", &s(&fs), &path, &s(&boot)]);
    assert!(o.status.success(), "{arch}: mcopy {path}: {}", text(&o));
    assert_eq!(sha256(&boot), sha256(&signed.efi), "{arch}: the ESP's UKI is not the signed one");

    // The report and the provenance name the certificate.
    let line = format!("uki: signed (Authenticode) with CN=keel test db, cert sha256 {cert_sha256}");
    assert!(report.lines().any(|l| l == line), "{arch}: no `{line}` in:\n{report}");
    assert!(report.lines().any(|l| l.trim_start().starts_with("sign ")), "{arch}: no sign step in:\n{report}");
    let record = signed.dir.join(format!("hello-{arch}.provenance.json"));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    assert_eq!(v.pointer("/uki/sha256").and_then(|x| x.as_str()), Some(sha256(&signed.efi).as_str()));
    assert_eq!(v.pointer("/uki/signed/cert_sha256").and_then(|x| x.as_str()), Some(cert_sha256.as_str()));
    assert_eq!(v.pointer("/uki/signed/unsigned_sha256").and_then(|x| x.as_str()), Some(sha256(&unsigned.efi).as_str()));
    let unsigned_record = unsigned.dir.join(format!("hello-{arch}.provenance.json"));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&unsigned_record).unwrap()).unwrap();
    assert!(v.pointer("/uki/signed").is_none(), "{arch}: an unsigned UKI recorded as signed");

    // The key is nowhere in the output.
    let key_der = tool("openssl", &["pkey", "-in", &fixture("test-db.key"), "-outform", "DER"]).stdout;
    assert!(key_der.len() > 1000, "{arch}: openssl pkey");
    let key_pem = std::fs::read(fixture("test-db.key")).unwrap();
    for f in std::fs::read_dir(&signed.dir).unwrap() {
        let f = f.unwrap().path();
        let bytes = std::fs::read(&f).unwrap();
        for needle in [&key_der[key_der.len() - 64..], &key_pem[40..104]] {
            assert!(!bytes.windows(needle.len()).any(|w| w == needle), "{arch}: key material in {}", f.display());
        }
    }
}

/// The file range between the end of the stub's sections and the start of the next section
/// (by file offset), if sections do not follow each other.
fn gap_after_sections(pe: &[u8]) -> Option<(usize, usize)> {
    let mut sections = keel_builder::uki::section_table(pe).unwrap();
    sections.sort_by_key(|s| s.raw_offset);
    sections.windows(2).find_map(|w| {
        let end = (w[0].raw_offset + w[0].raw_size) as usize;
        (end != w[1].raw_offset as usize).then_some((end, w[1].raw_offset as usize))
    })
}

/// SHA-256 of the headers without the checksum and security directory, then the whole file
/// from SizeOfHeaders on: what osslsigncode 2.5 computes.
fn contiguous_digest(pe: &[u8]) -> String {
    use sha2::Digest;
    let l = keel_builder::uki::sign_layout(pe).unwrap();
    let dir = l.security_dir.unwrap();
    let mut h = sha2::Sha256::new();
    h.update(&pe[..l.checksum]);
    h.update(&pe[l.checksum + 4..dir]);
    h.update(&pe[dir + 8..]);
    hex::encode(h.finalize())
}

both_arches!(signed_uki);

/// The `--json` report says the UKI is signed, and with which certificate.
#[test]
fn json_report_names_the_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let config = signed_config(tmp.path());
    let out = tmp.path().join("out");
    let o = keel(&["build", &s(&config), "--arch", "x86_64", "-o", &s(&out), "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    assert_eq!(j["signed"]["cert_sha256"].as_str(), Some(cert_der_sha256(tmp.path()).as_str()), "{j}");
    assert_eq!(j["signed"]["common_name"].as_str(), Some("keel test db"), "{j}");
    let steps: Vec<&str> =
        j["timings"]["steps"].as_array().unwrap().iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(steps, ["kernel", "images", "initramfs", "disk", "verity", "uki", "sign", "sbom"]);
}
