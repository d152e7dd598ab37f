//! The systemd-stub PE image (`uki::build_uki`): its headers and section table, read to add
//! the UKI's sections after the stub's own (and the kernel's machine).
#![no_main]

use keel_builder::uki::{self, UkiParts};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The kernel is a PE image too, of the stub's machine: the input serves as both.
    let parts =
        UkiParts { osrel: b"ID=keel\n", cmdline: b"console=ttyS0", uname: b"6.1.0", linux: data, initrd: b"\x07" };
    if let Ok(uki) = uki::build_uki(data, &parts) {
        // What keel builds, it can read back.
        assert_eq!(uki::section_data(&uki, ".cmdline"), Some(parts.cmdline));
    }
});
