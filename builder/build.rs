//! Record what built keel, for the provenance record of every image (src/provenance.rs): the git
//! commit of the checkout, its time and the rustc version; and, for the SBOM (src/sbom.rs), the
//! crates keel-init is built from for each target, from `cargo metadata` over Cargo.lock.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let o = Command::new(cmd).args(args).output().ok().filter(|o| o.status.success())?;
    Some(String::from_utf8_lossy(&o.stdout).trim().to_string()).filter(|s| !s.is_empty())
}

fn main() {
    let commit = output("git", &["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=KEEL_COMMIT={commit}");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = output(&rustc, &["--version"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=KEEL_RUSTC={version}");
    let time = output("git", &["log", "-1", "--format=%ct"]).unwrap_or_else(|| "0".into());
    println!("cargo:rustc-env=KEEL_COMMIT_TIME={time}");
    init_crates();
    // Run again when HEAD moves: a commit, a checkout or a reset.
    for path in ["HEAD", "packed-refs"] {
        if let Some(p) = output("git", &["rev-parse", "--git-path", path]) {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    if let Some(r) =
        output("git", &["symbolic-ref", "-q", "HEAD"]).and_then(|r| output("git", &["rev-parse", "--git-path", &r]))
    {
        println!("cargo:rerun-if-changed={r}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}

/// keel-init's crates for each target it is built for, as Rust source in OUT_DIR/init_crates.rs:
/// the closure of its normal dependencies (no build or dev dependencies) with each crate's
/// version, whether it comes from crates.io, and its Cargo.lock checksum.
fn init_crates() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let root = Path::new(&manifest).join("..");
    for f in ["Cargo.lock", "Cargo.toml", "init/Cargo.toml", "runtime/Cargo.toml"] {
        println!("cargo:rerun-if-changed={}", root.join(f).display());
    }
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).expect("Cargo.lock");
    let lock: toml::Value = toml::from_str(&lock).expect("Cargo.lock is TOML");
    let mut sums = BTreeMap::new();
    for p in lock.get("package").and_then(|p| p.as_array()).into_iter().flatten() {
        let field = |k: &str| p.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_string();
        if !field("checksum").is_empty() {
            sums.insert((field("name"), field("version")), field("checksum"));
        }
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut src = String::new();
    for (name, triple) in [("X86_64", "x86_64-unknown-linux-musl"), ("AARCH64", "aarch64-unknown-linux-musl")] {
        let o = Command::new(&cargo)
            .args(["metadata", "--format-version", "1", "--offline", "--locked", "--filter-platform", triple])
            .arg("--manifest-path")
            .arg(root.join("Cargo.toml"))
            .output()
            .expect("run cargo metadata");
        assert!(
            o.status.success(),
            "cargo metadata: {}(`make setup` fetches every crate Cargo.lock names)",
            String::from_utf8_lossy(&o.stderr)
        );
        let m: Value = serde_json::from_slice(&o.stdout).expect("cargo metadata's JSON");
        let packages: BTreeMap<&str, &Value> =
            m["packages"].as_array().into_iter().flatten().filter_map(|p| Some((p["id"].as_str()?, p))).collect();
        let nodes: BTreeMap<&str, &Value> = m["resolve"]["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| Some((n["id"].as_str()?, n)))
            .collect();
        let start = packages.iter().find(|(_, p)| p["name"] == "keel-init").map(|(id, _)| *id).expect("keel-init");
        let mut seen = BTreeSet::new();
        let mut todo = vec![start];
        while let Some(id) = todo.pop() {
            if !seen.insert(id) {
                continue;
            }
            for d in nodes.get(id).and_then(|n| n["deps"].as_array()).into_iter().flatten() {
                let normal = d["dep_kinds"].as_array().into_iter().flatten().any(|k| k["kind"].is_null());
                if let (true, Some(pkg)) = (normal, d["pkg"].as_str()) {
                    todo.push(pkg);
                }
            }
        }
        let mut crates: Vec<(String, String, bool, String)> = seen
            .iter()
            .map(|id| {
                let p = packages[id];
                let s = |k: &str| p[k].as_str().unwrap_or_default().to_string();
                let registry = s("source").starts_with("registry+");
                let sum = sums.get(&(s("name"), s("version"))).cloned().unwrap_or_default();
                (s("name"), s("version"), registry, sum)
            })
            .collect();
        crates.sort();
        src.push_str(&format!("/// keel-init's crates for {triple}: (name, version, from crates.io, sha256).\n"));
        src.push_str(&format!("pub const {name}: &[(&str, &str, bool, &str)] = &{crates:?};\n"));
    }
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    std::fs::write(Path::new(&out).join("init_crates.rs"), src).expect("write init_crates.rs");
}
