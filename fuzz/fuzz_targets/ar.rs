//! The `ar` archive reader of .deb packages (`deb::ar_members`).
#![no_main]

use keel_builder::kernel::deb;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(members) = deb::ar_members(data) {
        for (_, bytes) in members {
            assert!(bytes.len() <= data.len());
        }
    }
});
