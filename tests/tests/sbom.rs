//! The SBOM (`NAME-ARCH.spdx.json`, builder/src/sbom.rs), no boot:
//! - configs/hello.toml's and a Debian image's SBOMs pass `pyspdxtools` (spdx-tools, installed
//!   by `make setup` into .cache/venv; its absence fails the test);
//! - they list the kernel package with its version and source package `linux`, the
//!   systemd-boot-efi package, keel-init and its crates, each image with its layers, and the
//!   Debian image's packages (base-files, libc6, dash) with purls;
//! - two builds give the same bytes, and `created` follows SOURCE_DATE_EPOCH;
//! - a malformed `/var/lib/dpkg/status` is a config error naming the file and line.

use std::path::{Path, PathBuf};
use std::process::Command;

use keel_plan::Arch;
use keel_tests::{build, busybox_image, kernel_toml, root, text};
use serde_json::Value;

/// The validator `make setup` installs.
fn pyspdxtools() -> PathBuf {
    let p = root().join(".cache/venv/bin/pyspdxtools");
    assert!(p.is_file(), "{} is missing: run `make setup` (it installs spdx-tools)", p.display());
    p
}

/// `pyspdxtools -i FILE` must accept the document.
fn validate(file: &Path) {
    let o = Command::new(pyspdxtools()).arg("-i").arg(file).output().expect("run pyspdxtools");
    assert!(o.status.success(), "pyspdxtools refuses {}:\n{}", file.display(), text(&o));
}

fn read(file: &Path) -> Value {
    let bytes = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

fn packages(doc: &Value) -> &Vec<Value> {
    doc["packages"].as_array().expect("packages")
}

/// The one package named `name`.
fn package<'a>(doc: &'a Value, name: &str) -> &'a Value {
    let all: Vec<&Value> = packages(doc).iter().filter(|p| p["name"] == name).collect();
    assert!(!all.is_empty(), "no package `{name}` among {:?}", names(doc));
    all[0]
}

fn names(doc: &Value) -> Vec<&str> {
    packages(doc).iter().filter_map(|p| p["name"].as_str()).collect()
}

fn purl(p: &Value) -> &str {
    p["externalRefs"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["referenceType"] == "purl"))
        .and_then(|r| r["referenceLocator"].as_str())
        .unwrap_or_else(|| panic!("no purl: {p}"))
}

/// Whether `a TYPE b` is among the relationships.
fn related(doc: &Value, a: &Value, kind: &str, b: &Value) -> bool {
    doc["relationships"].as_array().expect("relationships").iter().any(|r| {
        r["spdxElementId"] == a["SPDXID"] && r["relationshipType"] == kind && r["relatedSpdxElement"] == b["SPDXID"]
    })
}

/// What every SBOM of x86_64 holds: the image described, the kernel, the stub, keel-init.
fn check_common(doc: &Value, stem: &str) {
    assert_eq!(doc["spdxVersion"], "SPDX-2.3");
    let image = package(doc, stem);
    let describes = doc["relationships"].as_array().unwrap().iter().any(|r| {
        r["spdxElementId"] == "SPDXRef-DOCUMENT"
            && r["relationshipType"] == "DESCRIBES"
            && r["relatedSpdxElement"] == image["SPDXID"]
    });
    assert!(describes, "the document does not describe {stem}");
    // Every relationship names packages that are there.
    let ids: Vec<&Value> = packages(doc).iter().map(|p| &p["SPDXID"]).collect();
    for r in doc["relationships"].as_array().unwrap() {
        assert!(ids.contains(&&r["relatedSpdxElement"]), "dangling: {r}");
    }

    let kernel = package(doc, "linux-image-6.1.0-56-amd64");
    assert_eq!(kernel["versionInfo"], "6.1.192-2");
    assert_eq!(purl(kernel), "pkg:deb/debian/linux-image-6.1.0-56-amd64@6.1.192-2?arch=amd64");
    let source = package(doc, "linux");
    assert_eq!(purl(source), "pkg:deb/debian/linux@6.1.192-2?arch=source");
    assert!(related(doc, kernel, "GENERATED_FROM", source), "the kernel is not GENERATED_FROM linux");
    assert!(kernel["sourceInfo"].as_str().unwrap().contains("Built-Using: linux (= 6.1.192-2)"), "{kernel}");
    assert!(names(doc).contains(&"linux-signed-amd64"), "no signed source package: {:?}", names(doc));

    let stub = package(doc, "systemd-boot-efi");
    assert!(purl(stub).starts_with("pkg:deb/debian/systemd-boot-efi@252."), "{stub}");
    assert!(related(doc, stub, "GENERATED_FROM", package(doc, "systemd")));

    let init = package(doc, "keel-init");
    for krate in ["rustls", "ring", "libc", "serde_json"] {
        let c = package(doc, krate);
        assert!(purl(c).starts_with(&format!("pkg:cargo/{krate}@")), "{c}");
        assert!(related(doc, init, "DEPENDS_ON", c), "keel-init does not depend on {krate}");
    }
    assert!(!names(doc).contains(&"tempfile"), "a dev-dependency of keel-init is listed");
}

#[test]
fn hello_sbom_is_valid_and_complete() {
    let a = build("configs/hello.toml", Arch::X86_64, "sbom-hello-a");
    let b = build("configs/hello.toml", Arch::X86_64, "sbom-hello-b");
    let file = a.dir.join("hello-x86_64.spdx.json");
    validate(&file);
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(bytes, std::fs::read(b.dir.join("hello-x86_64.spdx.json")).unwrap(), "two builds differ");
    let doc = read(&file);
    check_common(&doc, "hello-x86_64");
    let image = package(&doc, "oci:../.cache/oci/busybox:hello");
    assert_eq!(image["primaryPackagePurpose"], "CONTAINER");
    let layer = package(&doc, "hello layer 1");
    assert!(related(&doc, image, "CONTAINS", layer));
    assert_eq!(layer["checksums"][0]["algorithm"], "SHA256", "{layer}");
    assert!(layer["versionInfo"].as_str().unwrap().starts_with("sha256:"), "{layer}");
}

#[test]
fn debian_sbom_lists_the_image_packages() {
    let dir = tempfile::tempdir().unwrap();
    let debian = root().join(".cache/oci/debian");
    let config = format!(
        "version = 1\nname = \"debsbom\"\n\n{}\n[[container]]\nname = \"deb\"\nimage = \"oci:{}/debian:debian-amd64\"\n\n\
         [[container]]\nname = \"bb\"\nimage = \"{}\"\n",
        kernel_toml(),
        debian.display(),
        busybox_image()
    );
    let path = dir.path().join("debsbom.toml");
    std::fs::write(&path, config).unwrap();
    let path = path.to_string_lossy().into_owned();
    let a = build(&path, Arch::X86_64, "sbom-debian-a");
    let file = a.dir.join("debsbom-x86_64.spdx.json");
    validate(&file);
    let doc = read(&file);
    check_common(&doc, "debsbom-x86_64");
    let image = package(&doc, &format!("oci:{}/debian:debian-amd64", debian.display()));
    for (name, want) in [
        ("base-files", "pkg:deb/debian/base-files@12."),
        ("libc6", "pkg:deb/debian/libc6@2.36-"),
        ("dash", "pkg:deb/debian/dash@0.5.12-2?arch=amd64"),
    ] {
        let p = package(&doc, name);
        assert!(purl(p).starts_with(want), "{name}: {}", purl(p));
        assert!(related(&doc, image, "CONTAINS", p), "the image does not contain {name}");
    }
    assert!(purl(package(&doc, "libc6")).ends_with("?arch=amd64&upstream=glibc"), "libc6's source is not glibc");
    // Four layers, bottom first.
    for n in 1..=4 {
        assert!(related(&doc, image, "CONTAINS", package(&doc, &format!("deb layer {n}"))), "no layer {n}");
    }

    // Another build, with SOURCE_DATE_EPOCH: only `created` differs.
    let out = root().join("target/keel-tests/sbom-debian-epoch");
    let _ = std::fs::remove_dir_all(&out);
    let o = Command::new(keel_tests::keel_bin())
        .args(["build", &path, "--arch", "x86_64", "-o"])
        .arg(&out)
        .env("SOURCE_DATE_EPOCH", "86400")
        .current_dir(root())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let mut again = read(&out.join("debsbom-x86_64.spdx.json"));
    assert_eq!(again["creationInfo"]["created"], "1970-01-02T00:00:00Z");
    again["creationInfo"]["created"] = doc["creationInfo"]["created"].clone();
    assert_eq!(again, doc, "a build with SOURCE_DATE_EPOCH differs in more than `created`");

    let o = Command::new(keel_tests::keel_bin())
        .args(["build", &path, "--arch", "x86_64", "-o"])
        .arg(root().join("target/keel-tests/sbom-debian-bad-epoch"))
        .env("SOURCE_DATE_EPOCH", "yesterday")
        .current_dir(root())
        .output()
        .unwrap();
    assert!(!o.status.success() && text(&o).contains("SOURCE_DATE_EPOCH `yesterday`"), "{}", text(&o));
    assert!(!root().join("target/keel-tests/sbom-debian-bad-epoch").exists(), "a failed build left its output dir");
}

/// An image's package database is untrusted input: a malformed one is refused, by line, as a
/// problem of the container's image.
#[test]
fn a_bad_dpkg_status_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("root");
    std::fs::create_dir_all(image.join("var/lib/dpkg")).unwrap();
    std::fs::write(image.join("var/lib/dpkg/status"), "Package: a\nVersion: 1\n\n continued\n").unwrap();
    let config = format!(
        "version = 1\nname = \"badstatus\"\n\n{}\n[[container]]\nname = \"c\"\nimage = \"dir:{}\"\ncommand = [\"/x\"]\n",
        kernel_toml(),
        image.display()
    );
    let path = dir.path().join("badstatus.toml");
    std::fs::write(&path, config).unwrap();
    let o = keel_tests::keel(&["check", &path.to_string_lossy()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("key `container[0].image`: /var/lib/dpkg/status: line 4: a continuation line"),
        "{}",
        text(&o)
    );
}
