//! OCI image layouts (`Layout::resolve`): index.json, nested image indexes, the manifest and
//! the image config, each blob's digest verified, as `keel build` reads them.
//!
//! Input: documents separated by `\n--\n`: index.json, then blobs 1 to 9. A digest cannot be
//! guessed, so in every document `@N` stands for the hex sha256 of blob N and `$N` for its
//! size; blobs are written from the last, so a document can name the blobs after it (and the
//! manifest blob its config blob).
#![no_main]

mod scratch;

use keel_builder::image::oci::Layout;
use keel_plan::Arch;
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

fuzz_target!(|data: &[u8]| {
    let dir = scratch::dir();
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("blobs");
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).expect("oci-layout");
    let docs: Vec<&[u8]> = split(data, b"\n--\n").take(10).collect();
    // (hex, size) of blobs 1..=9, filled from the last.
    let mut known: Vec<Option<(String, usize)>> = vec![None; 10];
    for i in (0..docs.len()).rev() {
        let doc = substitute(docs[i], &known);
        if i == 0 {
            std::fs::write(dir.join("index.json"), &doc).expect("index.json");
        } else {
            let hex = hex::encode(Sha256::digest(&doc));
            std::fs::write(blobs.join(&hex), &doc).expect("blob");
            known[i] = Some((hex, doc.len()));
        }
    }
    if let Ok(layout) = Layout::open(&dir) {
        let _ = layout.resolve(None, Arch::X86_64);
    }
});

fn split<'a>(data: &'a [u8], sep: &'a [u8]) -> impl Iterator<Item = &'a [u8]> {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let r = rest?;
        match r.windows(sep.len()).position(|w| w == sep) {
            Some(at) => {
                rest = Some(&r[at + sep.len()..]);
                Some(&r[..at])
            }
            None => rest.take(),
        }
    })
}

fn substitute(doc: &[u8], known: &[Option<(String, usize)>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(doc.len());
    let mut i = 0;
    while i < doc.len() {
        let blob = doc.get(i + 1).filter(|d| d.is_ascii_digit()).and_then(|d| known[usize::from(d - b'0')].as_ref());
        match (doc[i], blob) {
            (b'@', Some((hex, _))) => out.extend_from_slice(hex.as_bytes()),
            (b'$', Some((_, size))) => out.extend_from_slice(size.to_string().as_bytes()),
            (c, _) => {
                out.push(c);
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    out
}
