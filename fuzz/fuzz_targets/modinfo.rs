//! A kernel module's `.modinfo` (`modinfo::read`): the ELF object, then its fields.
#![no_main]

use keel_builder::kernel::modinfo;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = modinfo::read(data);
});
