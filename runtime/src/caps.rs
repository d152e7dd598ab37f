//! Capabilities: the container keeps only the ones its plan lists.
//!
//! The clone into a new user namespace gives the child every capability *in that namespace*; it
//! needs them to mount and pivot. Before it changes identity, every capability not kept is dropped
//! from the bounding set (so no exec can regain it) and the ambient set is cleared; after, the
//! effective, permitted and inheritable sets are set to the kept ones. That holds for container
//! root (uid 0 inside). A process with another uid has lost its permitted set at setuid(2) and, with
//! no ambient capabilities, gets none at exec: kept capabilities apply to container root only,
//! as with Docker. With nothing kept, CapEff, CapPrm, CapInh, CapBnd and CapAmb are all 0.

use keel_plan::caps;

use crate::child::{Op, Step};
use crate::error::RuntimeError;

/// The kept capabilities as a mask (bit n = capability n); refuses numbers keel does not know.
pub(crate) fn mask(kept: &[u32]) -> Result<u64, RuntimeError> {
    kept.iter().try_fold(0u64, |m, &c| if c <= caps::LAST { Ok(m | 1 << c) } else { Err(RuntimeError::Capability(c)) })
}

/// Before the identity change: bounding set reduced to `keep`, ambient set cleared.
pub(crate) fn bounding_steps(keep: u64) -> Vec<Step> {
    vec![
        Step::new(format!("drop capabilities from the bounding set (keep {keep:#x})"), Op::DropBounding(keep)),
        Step::new("clear the ambient capabilities", Op::ClearAmbient),
    ]
}

/// After the identity change: effective = permitted = inheritable = `keep` for container root,
/// empty for any other uid.
pub(crate) fn capset_step(keep: u64, uid: u32) -> Step {
    let mask = if uid == 0 { keep } else { 0 };
    Step::new(format!("set capabilities to {mask:#x}"), Op::SetCaps(mask))
}

/// No exec may gain privileges (setuid bits, file capabilities); also what lets an unprivileged
/// process install a seccomp filter.
pub(crate) fn no_new_privs_step() -> Step {
    Step::new("set no_new_privs", Op::NoNewPrivs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(mask(&[]).unwrap(), 0);
        let net_bind = caps::by_name("NET_BIND_SERVICE").unwrap();
        assert_eq!(mask(&[net_bind, 0]).unwrap(), 1 << 10 | 1);
        assert_eq!(mask(&[caps::LAST]).unwrap(), 1 << 40);
        assert!(matches!(mask(&[caps::LAST + 1]), Err(RuntimeError::Capability(41))));
        assert!(matches!(mask(&[64]), Err(RuntimeError::Capability(64))));
    }

    #[test]
    fn only_root_keeps_capabilities() {
        assert!(matches!(capset_step(1 << 10, 0).op, Op::SetCaps(0x400)));
        assert!(matches!(capset_step(1 << 10, 1000).op, Op::SetCaps(0)));
    }
}
