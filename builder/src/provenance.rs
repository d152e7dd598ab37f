//! `NAME-ARCH.provenance.json`: how an image was made, so that someone holding only keel's
//! repository and the config can see what to rebuild from and compare: keel's version and git
//! commit, the rustc that built keel, and the sha256 of keel-init and of every input (kernel
//! package, stub, each image's manifest, config and layers). It holds no time, host name or
//! path of the build machine, so it is as reproducible as the image.

use serde_json::{json, Value};

use crate::config::FileRef;
use crate::resolve::ImageSource;
use crate::verity::Verity;

/// keel's version, from Cargo.toml.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git commit keel was built from (`unknown` outside a git checkout).
pub const COMMIT: &str = env!("KEEL_COMMIT");
/// `rustc --version` of the compiler that built keel.
pub const RUSTC: &str = env!("KEEL_RUSTC");

/// Everything the record lists.
pub struct Record<'a> {
    /// The config's `name`.
    pub name: &'a str,
    /// The target arch.
    pub arch: &'a str,
    /// sha256 of the config file.
    pub config_sha256: &'a str,
    /// sha256 of keel-init.
    pub init_sha256: &'a str,
    /// The pinned kernel package.
    pub kernel: &'a FileRef,
    /// The pinned stub.
    pub stub: &'a FileRef,
    /// Each container's image.
    pub images: &'a [ImageSource],
    /// sha256 of the UKI written.
    pub uki_sha256: &'a str,
    /// keel-images' dm-verity metadata, when verity is on.
    pub verity: Option<&'a Verity>,
    /// Its signature, if it is signed.
    pub signed: Option<&'a crate::build::Signed>,
}

/// A pinned file by its file name (never its path on this machine) and sha256.
fn pinned(f: &FileRef) -> Value {
    let file = f.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    json!({ "key": f.key, "file": file, "sha256": f.sha256 })
}

impl Record<'_> {
    /// The record as pretty JSON with a final newline; keys in a fixed order.
    pub fn to_bytes(&self) -> Vec<u8> {
        let images: Vec<Value> = self
            .images
            .iter()
            .map(|i| {
                json!({
                    "container": i.container,
                    "image": i.reference,
                    "digests": i.digests.iter().map(|(what, d)| json!({ "what": what, "digest": d })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let mut uki = json!({ "sha256": self.uki_sha256 });
        // Only a signed UKI has the field, so an unsigned build's record is as it always was.
        if let Some(s) = self.signed {
            uki["signed"] = json!({
                "format": "authenticode",
                "cert_sha256": s.cert_sha256,
                "unsigned_sha256": s.unsigned_sha256,
            });
        }
        let v = json!({
            "keel": { "version": VERSION, "commit": COMMIT, "rustc": RUSTC },
            "config": { "name": self.name, "sha256": self.config_sha256 },
            "arch": self.arch,
            "keel-init": { "sha256": self.init_sha256 },
            "kernel": pinned(self.kernel),
            "stub": pinned(self.stub),
            "images": images,
            "uki": uki,
            "verity": self.verity.map(Verity::json),
        });
        let mut out = serde_json::to_vec_pretty(&v).unwrap_or_default();
        out.push(b'\n');
        out
    }
}
