//! Entropy: the builder loads `virtio_rng` (when the kernel has it), and once a hardware RNG is
//! registered the kernel's hwrng core feeds the random pool from it by itself. init only reports
//! which hwrng is in use and whether getrandom(2) would still block:
//! `keel: entropy from hwrng virtio_rng.0; random pool ready`.

use std::fs;
use std::path::Path;

use crate::{console, sys};

/// The hwrng the kernel reads (`none` without one).
pub const RNG_CURRENT: &str = "/sys/class/misc/hw_random/rng_current";

/// Print the entropy line.
pub fn report() {
    let current = fs::read_to_string(Path::new(RNG_CURRENT)).ok();
    console::say(describe(current.as_deref(), sys::random_ready()));
}

/// The line for the hwrng `current` (the contents of [`RNG_CURRENT`]) and the pool's state.
pub fn describe(current: Option<&str>, ready: bool) -> String {
    let pool = if ready { "random pool ready" } else { "random pool not ready yet (getrandom would block)" };
    match current.map(str::trim) {
        Some(name) if !name.is_empty() && name != "none" => format!("entropy from hwrng {name}; {pool}"),
        _ => format!("entropy: no hardware RNG; {pool}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes() {
        assert_eq!(describe(Some("virtio_rng.0\n"), true), "entropy from hwrng virtio_rng.0; random pool ready");
        assert_eq!(
            describe(Some("none\n"), false),
            "entropy: no hardware RNG; random pool not ready yet (getrandom would block)"
        );
        assert_eq!(describe(None, true), "entropy: no hardware RNG; random pool ready");
    }
}
