//! The plan decoder keel-init runs at boot (`Plan::from_bytes`).
#![no_main]

use keel_plan::Plan;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(plan) = Plan::from_bytes(data) {
        // Whatever it accepts, it writes back the same.
        assert_eq!(Plan::from_bytes(&plan.to_bytes()).ok(), Some(plan));
    }
});
