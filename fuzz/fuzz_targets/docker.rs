//! docker-archive tarballs: the member table (`Archive::open`), manifest.json and the config
//! (`docker::resolve`), and each layer member read to its end.
#![no_main]

mod scratch;

use std::io::Read;
use std::sync::Arc;

use keel_builder::image::docker::{self, Archive};
use keel_plan::Arch;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = scratch::dir().join("image.tar");
    std::fs::write(&path, data).expect("write the archive");
    let Ok(archive) = Archive::open(&path) else { return };
    let archive = Arc::new(archive);
    let Ok(resolved) = docker::resolve(archive.clone(), None, Arch::X86_64) else { return };
    for name in &resolved.layers {
        if let Ok(mut member) = archive.open_member(name) {
            let _ = std::io::copy(&mut member.by_ref().take(1 << 20), &mut std::io::sink());
        }
    }
});
