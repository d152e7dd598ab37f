//! The seccomp filter file keel-init loads for a container (`keel_plan::seccomp::decode`).
#![no_main]

use keel_plan::seccomp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(programs) = seccomp::decode(data) {
        assert_eq!(seccomp::decode(&seccomp::encode(&programs)).ok(), Some(programs));
    }
});
