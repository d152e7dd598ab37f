//! A Debian linux-image package (`Kernel::from_deb`): the ar archive, its data.tar (plain, gzip,
//! xz or zstd), the kernel, modules.builtin and each module's `.modinfo`.
#![no_main]

use keel_builder::kernel::Kernel;
use keel_plan::Arch;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Kernel::from_deb(data, Arch::X86_64, |_| {});
});
