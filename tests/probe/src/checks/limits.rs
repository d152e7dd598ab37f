//! The container's cgroup limits, visible inside through its cgroup namespace, with the values
//! the config asked for.

use crate::cgroup;
use crate::parse;
use crate::report::{verdict, Outcome, Report};

/// The limits that must be readable.
const LIMITS: [&str; 3] = ["memory.max", "pids.max", "cpu.max"];

/// Records cgroup-limits-visible: every limit file reads, and each of `expect` (`FILE=VALUE`,
/// the value as one word: `cpu.max=max/100000`) holds. With no expectations the check fails:
/// a limit that merely reads proves nothing.
pub fn run(report: &mut Report, expect: &[&str]) {
    report.record("cgroup-limits-visible", limits_visible(expect, cgroup::read));
}

fn limits_visible(expect: &[&str], read: impl Fn(&str) -> Result<String, String>) -> Outcome {
    let mut all = !expect.is_empty();
    let mut shown = Vec::new();
    for name in LIMITS {
        match read(name) {
            Ok(text) => shown.push(format!("{name}={}", parse::one_word(&text))),
            Err(e) => {
                all = false;
                shown.push(e);
            }
        }
    }
    let mut wrong = Vec::new();
    for e in expect {
        if !shown.iter().any(|s| s == e) {
            all = false;
            wrong.push(*e);
        }
    }
    let want = if expect.is_empty() { "; no expected values given".to_string() } else { String::new() };
    let wrong = if wrong.is_empty() { String::new() } else { format!("; want {}", wrong.join(" ")) };
    verdict(all, format!("{}{want}{wrong}", shown.join(" ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(name: &str) -> Result<String, String> {
        match name {
            "memory.max" => Ok("536870912\n".to_string()),
            "pids.max" => Ok("1024\n".to_string()),
            "cpu.max" => Ok("max 100000\n".to_string()),
            _ => Err(format!("{name}: ENOENT")),
        }
    }

    #[test]
    fn values_are_compared() {
        let all = ["memory.max=536870912", "pids.max=1024", "cpu.max=max/100000"];
        assert!(limits_visible(&all, read).is_ok());
        let e = limits_visible(&["pids.max=64"], read).unwrap_err();
        assert!(e.ends_with("; want pids.max=64"), "{e}");
        assert!(limits_visible(&[], read).is_err_and(|e| e.contains("no expected values")));
        let none = |n: &str| Err(format!("{n}: ENOENT"));
        assert!(limits_visible(&all, none).is_err());
    }
}
