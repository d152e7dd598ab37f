//! `NAME-ARCH.spdx.json`: what an image is made of, as an SPDX 2.3 JSON document, for scanners
//! that match packages against vulnerability databases. It lists the kernel package with its
//! source package and `Built-Using` (what CVEs are filed against), the systemd-stub package,
//! keel-init and the crates it is built from (from Cargo.lock when keel was built), and each
//! container's image: its digests, its layers and, where the image has `/var/lib/dpkg/status`,
//! its Debian packages.
//!
//! Like the provenance record it holds no wall-clock time, host name or path: `created` is
//! `SOURCE_DATE_EPOCH` if set, else the time of keel's commit, and the namespace ends in the
//! sha256 of the provenance record, which names every input. The same inputs give the same
//! bytes. The structs are written here because `spdx-rs` models SPDX 2.2 only.

use serde::Serialize;

use crate::image::dpkg;
use crate::provenance::VERSION;
use crate::resolve::ImageSource;

mod crates {
    include!(concat!(env!("OUT_DIR"), "/init_crates.rs"));
}

/// The time of keel's commit, seconds since the epoch (0 outside a git checkout).
pub const COMMIT_TIME: &str = env!("KEEL_COMMIT_TIME");

/// Why the SBOM cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum SbomError {
    /// `SOURCE_DATE_EPOCH` is set to something that is not a time.
    #[error("SOURCE_DATE_EPOCH `{0}` is not a whole number of seconds since 1970")]
    BadEpoch(String),
}

/// `created`'s time: `SOURCE_DATE_EPOCH` if set (an error if it is not a number), else keel's
/// commit time.
pub fn epoch() -> Result<u64, SbomError> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v.trim().parse().map_err(|_| SbomError::BadEpoch(v)),
        Err(_) => Ok(COMMIT_TIME.parse().unwrap_or(0)),
    }
}

/// keel-init's crates for `arch`: (name, version, from crates.io, Cargo.lock's sha256).
pub fn init_crates(arch: keel_plan::Arch) -> &'static [(&'static str, &'static str, bool, &'static str)] {
    match arch {
        keel_plan::Arch::X86_64 => crates::X86_64,
        keel_plan::Arch::Aarch64 => crates::AARCH64,
    }
}

/// A pinned Debian package: its control fields and the sha256 of the `.deb`.
pub struct Deb<'a> {
    /// Its control stanza.
    pub control: &'a dpkg::Package,
    /// sha256 of the `.deb`.
    pub sha256: &'a str,
}

/// Everything the document lists.
pub struct Inputs<'a> {
    /// The config's `name`.
    pub name: &'a str,
    /// The target.
    pub arch: keel_plan::Arch,
    /// Seconds since the epoch for `created` (see [`epoch`]).
    pub epoch: u64,
    /// sha256 of the provenance record: names the document.
    pub provenance_sha256: &'a str,
    /// sha256 of the UKI.
    pub uki_sha256: &'a str,
    /// The kernel package.
    pub kernel: Deb<'a>,
    /// The stub: its package, or the sha256 of a bare stub file.
    pub stub: Result<Deb<'a>, &'a str>,
    /// sha256 of keel-init.
    pub init_sha256: &'a str,
    /// Each container's image.
    pub images: &'a [ImageSource],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    spdx_version: &'static str,
    data_license: &'static str,
    #[serde(rename = "SPDXID")]
    spdx_id: &'static str,
    name: String,
    document_namespace: String,
    creation_info: CreationInfo,
    packages: Vec<Package>,
    relationships: Vec<Relationship>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CreationInfo {
    created: String,
    creators: Vec<String>,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct Package {
    #[serde(rename = "SPDXID")]
    spdx_id: String,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    version_info: Option<String>,
    download_location: &'static str,
    files_analyzed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    source_info: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    primary_package_purpose: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    checksums: Vec<Checksum>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    external_refs: Vec<ExternalRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    comment: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Checksum {
    algorithm: &'static str,
    checksum_value: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExternalRef {
    reference_category: &'static str,
    reference_type: &'static str,
    reference_locator: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Relationship {
    spdx_element_id: String,
    relationship_type: &'static str,
    related_spdx_element: String,
}

/// The packages and relationships as they are added; SPDX ids are numbered in order.
#[derive(Default)]
struct Builder {
    packages: Vec<Package>,
    relationships: Vec<Relationship>,
}

impl Builder {
    /// Add `p` (its `spdx_id` made unique from `kind` and its name); returns the id.
    fn add(&mut self, kind: &str, mut p: Package) -> String {
        let name: String =
            p.name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '-' }).collect();
        p.spdx_id = format!("SPDXRef-{}-{kind}-{name}", self.packages.len() + 1);
        p.download_location = "NOASSERTION";
        let id = p.spdx_id.clone();
        self.packages.push(p);
        id
    }

    fn relate(&mut self, a: &str, kind: &'static str, b: &str) {
        self.relationships.push(Relationship {
            spdx_element_id: a.to_string(),
            relationship_type: kind,
            related_spdx_element: b.to_string(),
        });
    }

    /// A pinned package, its source package and each `Built-Using` package (the last two as
    /// packages it is GENERATED_FROM); returns the package's id.
    fn deb(&mut self, deb: &Deb<'_>, purpose: &'static str) -> String {
        let c = deb.control;
        let built_using = c.built_using.as_deref().map(dpkg::built_using).unwrap_or_default();
        let mut info = format!("built from Debian source package {} {}", c.source, c.source_version);
        if let Some(b) = &c.built_using {
            info.push_str(&format!("; Built-Using: {b}"));
        }
        let id = self.add(
            "deb",
            Package {
                name: c.name.clone(),
                version_info: Some(c.version.clone()),
                source_info: Some(info),
                primary_package_purpose: Some(purpose),
                checksums: sha256(deb.sha256),
                external_refs: purl(deb_purl(&c.name, &c.version, &c.arch, None)),
                ..Package::default()
            },
        );
        for (name, version) in std::iter::once((c.source.clone(), c.source_version.clone())).chain(built_using) {
            let src = self.add(
                "source",
                Package {
                    name: name.clone(),
                    version_info: Some(version.clone()),
                    primary_package_purpose: Some("SOURCE"),
                    external_refs: purl(deb_purl(&name, &version, "source", None)),
                    comment: Some("a Debian source package".into()),
                    ..Package::default()
                },
            );
            self.relate(&id, "GENERATED_FROM", &src);
        }
        id
    }
}

/// A SHA256 checksum from `sha256:HEX` or `HEX`; none for another algorithm.
fn sha256(digest: &str) -> Vec<Checksum> {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        vec![Checksum { algorithm: "SHA256", checksum_value: hex.to_ascii_lowercase() }]
    } else {
        Vec::new()
    }
}

fn purl(locator: String) -> Vec<ExternalRef> {
    vec![ExternalRef { reference_category: "PACKAGE-MANAGER", reference_type: "purl", reference_locator: locator }]
}

/// Percent-encode all but the characters purl leaves as they are.
fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `pkg:deb/debian/NAME@VERSION?arch=ARCH[&upstream=SOURCE]`.
fn deb_purl(name: &str, version: &str, arch: &str, upstream: Option<&str>) -> String {
    let mut p = format!("pkg:deb/debian/{}@{}", enc(name), enc(version));
    if !arch.is_empty() {
        p.push_str(&format!("?arch={}", enc(arch)));
    }
    if let Some(u) = upstream {
        p.push_str(if arch.is_empty() { "?" } else { "&" });
        p.push_str(&format!("upstream={}", enc(u)));
    }
    p
}

impl Inputs<'_> {
    /// The document as pretty JSON with a final newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        let stem = format!("{}-{}", self.name, self.arch);
        let mut b = Builder::default();
        let image = b.add(
            "image",
            Package {
                name: stem.clone(),
                version_info: Some(format!("keel {VERSION}")),
                primary_package_purpose: Some("OPERATING-SYSTEM"),
                comment: Some(format!("the disk image {stem}.img that keel built")),
                ..Package::default()
            },
        );
        let uki = b.add(
            "uki",
            Package {
                name: format!("{stem}.efi"),
                primary_package_purpose: Some("FIRMWARE"),
                checksums: sha256(self.uki_sha256),
                comment: Some("the unified kernel image: stub, kernel, initramfs with keel-init".into()),
                ..Package::default()
            },
        );
        b.relate(&image, "CONTAINS", &uki);
        let kernel = b.deb(&self.kernel, "OPERATING-SYSTEM");
        b.relate(&uki, "CONTAINS", &kernel);
        let stub = match &self.stub {
            Ok(deb) => b.deb(deb, "FIRMWARE"),
            Err(sum) => b.add(
                "stub",
                Package {
                    name: "systemd-stub".into(),
                    primary_package_purpose: Some("FIRMWARE"),
                    checksums: sha256(sum),
                    comment: Some("a bare stub file, not from a package".into()),
                    ..Package::default()
                },
            ),
        };
        b.relate(&uki, "CONTAINS", &stub);
        let init = b.add(
            "init",
            Package {
                name: "keel-init".into(),
                version_info: Some(VERSION.into()),
                primary_package_purpose: Some("APPLICATION"),
                checksums: sha256(self.init_sha256),
                comment: Some("keel's PID 1, in the initramfs".into()),
                ..Package::default()
            },
        );
        b.relate(&uki, "CONTAINS", &init);
        for (name, version, registry, sum) in init_crates(self.arch) {
            if *name == "keel-init" {
                continue;
            }
            let id = b.add(
                "crate",
                Package {
                    name: name.to_string(),
                    version_info: Some(version.to_string()),
                    primary_package_purpose: Some("LIBRARY"),
                    checksums: sha256(sum),
                    // Only crates.io crates get a purl: keel's own crates are not published.
                    external_refs: if *registry {
                        purl(format!("pkg:cargo/{}@{}", enc(name), enc(version)))
                    } else {
                        Vec::new()
                    },
                    comment: (!registry).then(|| "a crate of keel's own workspace".into()),
                    ..Package::default()
                },
            );
            b.relate(&init, "DEPENDS_ON", &id);
        }
        for src in self.images {
            let mut checksums = Vec::new();
            let mut notes = Vec::new();
            for (what, digest) in &src.digests {
                if *what == "manifest" || (*what == "config" && checksums.is_empty()) {
                    checksums = sha256(digest);
                }
                if !what.starts_with("layer") {
                    notes.push(format!("{what} {digest}"));
                }
            }
            let id = b.add(
                "container",
                Package {
                    name: src.reference.clone(),
                    version_info: src.digests.first().map(|(_, d)| d.clone()),
                    primary_package_purpose: Some("CONTAINER"),
                    checksums,
                    comment: Some(format!("the image of container `{}`; {}", src.container, notes.join(", "))),
                    ..Package::default()
                },
            );
            b.relate(&image, "CONTAINS", &id);
            for (n, (what, digest)) in src.digests.iter().filter(|(w, _)| w.starts_with("layer")).enumerate() {
                let layer = b.add(
                    "layer",
                    Package {
                        name: format!("{} layer {}", src.container, n + 1),
                        version_info: Some(digest.clone()),
                        primary_package_purpose: Some("ARCHIVE"),
                        checksums: sha256(digest),
                        comment: Some(format!("{what} {digest}, bottom layer first")),
                        ..Package::default()
                    },
                );
                b.relate(&id, "CONTAINS", &layer);
            }
            for p in &src.packages {
                let upstream = (p.source != p.name).then_some(p.source.as_str());
                let pkg = b.add(
                    "deb",
                    Package {
                        name: p.name.clone(),
                        version_info: Some(p.version.clone()),
                        source_info: Some(format!(
                            "built from Debian source package {} {}",
                            p.source, p.source_version
                        )),
                        primary_package_purpose: Some("LIBRARY"),
                        external_refs: purl(deb_purl(&p.name, &p.version, &p.arch, upstream)),
                        ..Package::default()
                    },
                );
                b.relate(&id, "CONTAINS", &pkg);
            }
        }
        let doc = Document {
            spdx_version: "SPDX-2.3",
            data_license: "CC0-1.0",
            spdx_id: "SPDXRef-DOCUMENT",
            name: stem.clone(),
            document_namespace: format!("https://keel.invalid/spdx/{stem}-{}", self.provenance_sha256),
            creation_info: CreationInfo {
                created: keel_plan::time::iso8601(i64::try_from(self.epoch).unwrap_or(i64::MAX)),
                creators: vec![format!("Tool: keel-{VERSION}")],
            },
            packages: Vec::new(),
            relationships: Vec::new(),
        };
        let mut relationships = vec![Relationship {
            spdx_element_id: doc.spdx_id.into(),
            relationship_type: "DESCRIBES",
            related_spdx_element: image,
        }];
        relationships.append(&mut b.relationships);
        let doc = Document { packages: b.packages, relationships, ..doc };
        let mut out = serde_json::to_vec_pretty(&doc).unwrap_or_default();
        out.push(b'\n');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purls_encode_versions() {
        assert_eq!(
            deb_purl("libc6", "2.36-9+deb12u4", "amd64", Some("glibc")),
            "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&upstream=glibc"
        );
        assert_eq!(deb_purl("x", "1:2.0", "", None), "pkg:deb/debian/x@1%3A2.0");
    }

    #[test]
    fn the_init_crates_are_known_for_both_arches() {
        for arch in [keel_plan::Arch::X86_64, keel_plan::Arch::Aarch64] {
            let c = init_crates(arch);
            assert!(c.iter().any(|(n, _, r, s)| *n == "rustls" && *r && s.len() == 64), "{c:?}");
            assert!(c.iter().any(|(n, _, r, _)| *n == "keel-plan" && !*r));
            assert!(!c.iter().any(|(n, ..)| *n == "tempfile"), "a dev-dependency is listed");
        }
    }
}
