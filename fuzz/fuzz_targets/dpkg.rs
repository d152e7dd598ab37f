//! A Debian package database (`dpkg::installed`), as an image's `/var/lib/dpkg/status` holds it,
//! and the `Built-Using` field of each package.
#![no_main]

use keel_builder::image::dpkg;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(packages) = dpkg::installed(data) {
        for p in packages {
            let _ = p.built_using.as_deref().map(dpkg::built_using);
        }
    }
});
