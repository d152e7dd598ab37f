//! Seccomp, not a missing capability, denies the dangerous calls; on both arches.
//!
//! `tests/scenarios/filter-only.toml` runs `keel-probe filter-only` twice, as container root with
//! CAP_SYS_ADMIN and CAP_SYS_PTRACE: `filtered` under keel's default profile, `unconfined` with
//! `seccomp = "unconfined"`. Every `filter-*` call must get EPERM in the first and must not in
//! the second, which is the proof that the check can fail and that the filter is what denies.

use std::time::Duration;

use keel_plan::Arch;
use keel_tests::both_arches;
use keel_tests::scenario::{Run, Scenario};

/// The calls that only the filter can deny, as the probe names its checks.
const FILTER_CHECKS: [&str; 7] = [
    "filter-mount",
    "filter-keyctl",
    "filter-ptrace",
    "filter-perf-event-open",
    "filter-unshare-user",
    "filter-io-uring-setup",
    "filter-userfaultfd",
];

/// `(verdict, check, detail)` for each `probe: ok|FAIL NAME DETAIL` line of a container.
fn verdicts<'a>(run: &'a Run, container: &str) -> Vec<(&'a str, &'a str, &'a str)> {
    run.output(container)
        .into_iter()
        .filter_map(|l| {
            let rest = l.strip_prefix("probe: ")?;
            let (verdict, rest) = rest.split_once(' ')?;
            let (check, detail) = rest.split_once(' ').unwrap_or((rest, ""));
            matches!(verdict, "ok" | "FAIL").then_some((verdict, check, detail))
        })
        .collect()
}

fn only_the_filter_denies(arch: Arch) {
    let run = Scenario::new("filter-only", arch, &[]).boot(Duration::from_secs(400));
    let console = &run.console;
    for container in ["filtered", "unconfined"] {
        let found = verdicts(&run, container);
        let granted = found.iter().find(|(_, c, _)| *c == "caps-granted");
        assert!(
            matches!(granted, Some(("ok", _, _))),
            "{arch}: {container} was not given its capabilities: {granted:?}\n{console}"
        );
        for check in FILTER_CHECKS {
            let (verdict, _, detail) = *found
                .iter()
                .find(|(_, c, _)| *c == check)
                .unwrap_or_else(|| panic!("{arch}: {container} did not report {check}:\n{console}"));
            match container {
                "filtered" => assert!(
                    verdict == "ok" && detail == "EPERM",
                    "{arch}: the default filter let {check} through: {verdict} {detail}\n{console}"
                ),
                _ => assert_eq!(
                    verdict, "FAIL",
                    "{arch}: {check} is denied with no filter ({detail}): the check cannot tell the filter's doing"
                ),
            }
            eprintln!("{arch}: {container:<10} {check:<22} {verdict} {detail}");
        }
    }
    let summary = |c: &str| run.output(c).into_iter().find(|l| l.starts_with("probe: summary")).map(str::to_string);
    let all = FILTER_CHECKS.len() + 1;
    assert_eq!(summary("filtered").as_deref(), Some(format!("probe: summary {all} ok 0 failed").as_str()));
    let failed = FILTER_CHECKS.len();
    assert_eq!(summary("unconfined").as_deref(), Some(format!("probe: summary 1 ok {failed} failed").as_str()));
    assert!(console.contains("container filtered exited with status 0"), "{arch}: filtered failed:\n{console}");
}

both_arches!(only_the_filter_denies);
