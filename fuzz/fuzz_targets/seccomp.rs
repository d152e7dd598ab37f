//! A user's seccomp profile (`ProfileData::parse`), and what it accepts compiled for both
//! arches as `keel build` does.
#![no_main]

use std::path::Path;

use keel_builder::seccomp::{compile_programs, ProfileData};
use keel_plan::Arch;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(profile) = ProfileData::parse(text, Path::new("fuzz.toml")) else { return };
    for arch in [Arch::X86_64, Arch::Aarch64] {
        let _ = compile_programs(&profile, arch);
    }
});
