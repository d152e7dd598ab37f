//! The container's cgroup limits, visible inside through its cgroup namespace.

use crate::cgroup;
use crate::parse;
use crate::report::{verdict, Outcome, Report};

/// The limits that must be readable.
const LIMITS: [&str; 3] = ["memory.max", "pids.max", "cpu.max"];

/// Records cgroup-limits-visible.
pub fn run(report: &mut Report) {
    report.record("cgroup-limits-visible", limits_visible());
}

fn limits_visible() -> Outcome {
    let mut all = true;
    let mut shown = Vec::new();
    for name in LIMITS {
        match cgroup::read(name) {
            Ok(text) => shown.push(format!("{name}={}", parse::one_word(&text))),
            Err(e) => {
                all = false;
                shown.push(e);
            }
        }
    }
    verdict(all, shown.join(" "))
}
