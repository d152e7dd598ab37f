//! Process state from /proc/self/status: capabilities, no_new_privs, seccomp mode.

use crate::errno::Errno;
use crate::parse;
use crate::report::{verdict, Outcome, Report};

/// The five capability sets, all of which must be empty.
const CAP_SETS: [&str; 5] = ["CapEff", "CapPrm", "CapInh", "CapBnd", "CapAmb"];

/// Records caps-none, no-new-privs and seccomp-filter.
pub fn run(report: &mut Report) {
    match std::fs::read_to_string("/proc/self/status") {
        Ok(status) => {
            report.record("caps-none", caps_none(&status));
            report.record("no-new-privs", field_is(&status, "NoNewPrivs", "1"));
            let filters = parse::status_field(&status, "Seccomp_filters").unwrap_or("?");
            let seccomp = field_is(&status, "Seccomp", "2");
            report.record("seccomp-filter", seccomp.map(|d| format!("{d} Seccomp_filters={filters}")));
        }
        Err(e) => {
            let why = format!("/proc/self/status: {}", Errno::from_io(&e));
            for name in ["caps-none", "no-new-privs", "seccomp-filter"] {
                report.record(name, Err(why.clone()));
            }
        }
    }
}

fn caps_none(status: &str) -> Outcome {
    let mut shown = Vec::new();
    let mut all_zero = true;
    for set in CAP_SETS {
        let raw = parse::status_field(status, set);
        let mask = raw.and_then(parse::hex_mask);
        all_zero &= mask == Some(0);
        shown.push(format!("{set}={}", raw.unwrap_or("?")));
    }
    verdict(all_zero, shown.join(" "))
}

fn field_is(status: &str, key: &str, want: &str) -> Outcome {
    let got = parse::status_field(status, key);
    verdict(got == Some(want), format!("{key}={}", got.unwrap_or("?")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: &str = "CapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n\
        CapBnd:\t0000000000000000\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\n";

    #[test]
    fn verdicts() {
        assert!(caps_none(NONE).is_ok());
        assert!(caps_none(&NONE.replace("CapBnd:\t0000000000000000", "CapBnd:\t0000000000200000")).is_err());
        assert!(caps_none(&NONE.replace("CapAmb:\t0000000000000000\n", "")).is_err(), "a missing set fails");
        assert!(field_is(NONE, "NoNewPrivs", "1").is_ok());
        assert!(field_is(NONE, "Seccomp", "0").is_err());
    }
}
