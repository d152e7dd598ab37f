//! Isolation proven from inside a booted host, on both arches.
//!
//! - `configs/isolation.toml`: keel-probe runs as a container with every default and checks,
//!   one line per check, that it has its own namespaces, no capabilities, no_new_privs, a seccomp
//!   filter that denies the dangerous calls, no host block devices, masked /proc and read-only
//!   root and /sys. Any `FAIL` line fails the test; so does a missing check. The mount and
//!   network namespace inodes it prints are compared with the ones keel-init prints for itself.
//! - `configs/hostile.toml`: a fork bomb, a memory hog and a CPU spinner beside a heartbeat, on
//!   both arches. The limits hold (their values read from the cgroup inside), the OOM kill is
//!   reported by name, with the kernel's limit, and for the hog alone, the spinner's CPU share is
//!   measured, and the heartbeat keeps its schedule. The hog check fails on an unlimited hog.

use std::collections::BTreeMap;
use std::time::Duration;

use keel_plan::Arch;
use keel_tests::both_arches;
use keel_tests::scenario::{Run, Scenario};

/// Checks the probe must report as `ok` (a probe that skips one fails the test).
const REQUIRED_CHECKS: &[&str] = &[
    "ns-pid",
    "ns-mnt",
    "ns-uts",
    "ns-ipc",
    "ns-net",
    "ns-cgroup",
    "ns-user",
    "root-not-host-root",
    "caps-none",
    "no-new-privs",
    "seccomp-filter",
    "deny-mount",
    "deny-reboot",
    "deny-init-module",
    "deny-finit-module",
    "deny-kexec-load",
    "deny-bpf",
    "deny-perf-event-open",
    "deny-keyctl",
    "deny-ptrace",
    "deny-unshare-user",
    "deny-open-by-handle-at",
    "deny-mknod-block",
    "deny-swapon",
    "deny-clock-settime",
    "deny-af-packet",
    "no-block-devices",
    "proc-kcore-masked",
    "proc-sysrq-masked",
    "masked-paths",
    "read-only-paths",
    "rootfs-read-only",
    "sys-read-only",
    "tmp-writable",
    "cgroup-limits-visible",
    "allowed-syscalls",
    "net-interfaces",
    "net-raw-socket",
    "net-ping",
    "net-bind-80",
];

/// Build a config of the repo and boot it to its power-off (a clean one, or the test fails).
fn boot(config: &str, arch: Arch) -> Run {
    Scenario::from_repo(config, arch).boot(Duration::from_secs(400))
}

/// `kind -> inode` from keel-init's `keel: init namespaces: mnt:[1] net:[2] …` line.
fn init_namespaces(console: &str) -> BTreeMap<String, String> {
    let line = console.lines().find_map(|l| l.split_once("keel: init namespaces: ").map(|(_, r)| r));
    let line = line.unwrap_or_else(|| panic!("keel-init did not print its namespaces:\n{console}"));
    line.split_whitespace().filter_map(|ns| ns.split_once(':')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn checker_finds_no_hole(arch: Arch) {
    let run = boot("configs/isolation.toml", arch);
    let console = &run.console;
    let lines = run.output("check");
    let mut ok = Vec::new();
    for l in &lines {
        if let Some(rest) = l.strip_prefix("probe: ok ") {
            ok.push(rest.split_whitespace().next().unwrap_or_default().to_string());
        }
        assert!(!l.starts_with("probe: FAIL"), "{arch}: the checker found a hole: {l}\n{console}");
    }
    for check in REQUIRED_CHECKS {
        assert!(ok.iter().any(|c| c == check), "{arch}: check `{check}` did not pass:\n{console}");
    }
    let summary = lines.iter().find(|l| l.starts_with("probe: summary")).expect("no summary line");
    assert!(summary.ends_with(" 0 failed"), "{arch}: {summary}");

    // The probe's mount and network namespaces are not keel-init's.
    let init = init_namespaces(console);
    for kind in ["mnt", "net", "pid", "user", "uts", "ipc", "cgroup"] {
        let mine = lines
            .iter()
            .find_map(|l| l.strip_prefix(&format!("probe: ns {kind} ")))
            .unwrap_or_else(|| panic!("{arch}: the probe printed no {kind} namespace:\n{console}"));
        let host = init.get(kind).unwrap_or_else(|| panic!("{arch}: keel-init printed no {kind} namespace"));
        assert!(!mine.contains(host.as_str()), "{arch}: container shares the host's {kind} namespace {host}");
    }
    assert!(console.contains("container check exited with status 0"), "{arch}: checker failed:\n{console}");
    for l in lines.iter().filter(|l| ["masked-paths", "read-only-paths", "cgroup-limits"].iter().any(|c| l.contains(c)))
    {
        eprintln!("{arch}: {l}");
    }
    eprintln!("{arch}: {} checks passed; {summary}", ok.len());
}

both_arches!(checker_finds_no_hole);

/// The value after `key=` in `line`.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace().find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

/// The hog's limit, as configs/hostile.toml sets it.
const HOG_LIMIT_MIB: u64 = 32;

/// The memory limit held the hog: the kernel's own `memory.max` (which the hog read from its
/// cgroup) is the config's, no size the hog reported reached it, and keel-init reported the OOM
/// kill with that limit, for the hog alone. `Err` says what did not hold.
fn hog_was_held(run: &Run) -> Result<String, String> {
    let console = &run.console;
    let hog = run.output("hog");
    let start = hog.iter().find(|l| l.starts_with("probe: hog start")).ok_or("the hog never started")?;
    let limit = HOG_LIMIT_MIB << 20;
    if field(start, "memory.max") != Some(limit.to_string().as_str()) {
        return Err(format!("the hog's cgroup does not hold the limit of {HOG_LIMIT_MIB} MiB: {start}"));
    }
    let sizes: Vec<u64> =
        hog.iter().filter_map(|l| l.strip_prefix("probe: hog ")?.strip_suffix(" MiB")?.parse().ok()).collect();
    let last = *sizes.last().ok_or("the hog reported no size")?;
    if last >= HOG_LIMIT_MIB {
        return Err(format!("the hog reported {last} MiB, over its {HOG_LIMIT_MIB} MiB limit"));
    }
    let oom: Vec<&str> = console.lines().filter(|l| l.starts_with("keel: ") && l.contains("out of memory")).collect();
    let want = format!("container hog: out of memory: the kernel killed 1 process (memory.max {HOG_LIMIT_MIB} MiB)");
    if !oom.iter().any(|l| l.contains(&want)) {
        return Err(format!("no OOM report `{want}`: {oom:?}"));
    }
    if !oom.iter().all(|l| l.contains("container hog")) {
        return Err(format!("OOM reported for another container: {oom:?}"));
    }
    if !console.contains("container hog killed by signal SIGKILL") {
        return Err("the hog was not killed by SIGKILL".to_string());
    }
    Ok(format!("memory.max={limit}, last reported {last} MiB"))
}

fn hostile_neighbours_are_contained(arch: Arch) {
    let run = boot("configs/hostile.toml", arch);
    let console = &run.console;

    // Fork bomb: stopped by pids.max = 64 at exactly 64 processes (the probe and its 63
    // children: nothing else runs in its cgroup), and the kernel counted the refusals.
    let bomb = run.output("bomb");
    let stopped = bomb.iter().find(|l| l.starts_with("probe: fork-bomb stopped at")).unwrap_or_else(|| {
        panic!("the fork bomb never hit its limit:\n{console}");
    });
    let n: u64 = stopped.split_whitespace().nth(4).and_then(|n| n.parse().ok()).expect("process count");
    assert_eq!(n, 64, "fork bomb got {n} processes with pids.max = 64: {stopped}");
    assert!(stopped.contains("(EAGAIN)"), "fork bomb stopped for another reason: {stopped}");
    assert_eq!(field(stopped, "pids.max"), Some("64"), "{stopped}");
    let refused: u64 = field(stopped, "pids.events.max").and_then(|s| s.parse().ok()).unwrap_or(0);
    assert!(refused >= 1, "the kernel counted no refused fork: {stopped}");
    assert!(console.contains("container bomb exited with status 0"), "bomb did not finish:\n{console}");

    // Memory hog: held by its own cgroup's limit, OOM-killed, reported by name, and alone.
    let hog = hog_was_held(&run).unwrap_or_else(|why| panic!("{why}\n{console}"));

    // Spinner: held to cpus = 0.25.
    let spin = run.output("spin");
    let line = spin.iter().find(|l| l.starts_with("probe: spin ")).expect("spinner report");
    assert_eq!(field(line, "cpu.max"), Some("25000/100000"), "{line}");
    let share: f64 = field(line, "share").and_then(|s| s.parse().ok()).expect("share");
    assert!((0.10..=0.35).contains(&share), "spinner used {share} of a CPU with cpus = 0.25: {line}");
    let throttled: u64 = field(line, "nr_throttled").and_then(|s| s.parse().ok()).expect("nr_throttled");
    assert!(throttled > 0, "the spinner was never throttled: {line}");

    // Heartbeat: every beat, on schedule, beside all of that.
    let beats: Vec<_> = run.lines.iter().filter(|l| l.text.contains("beat| probe: beat ")).collect();
    assert_eq!(beats.len(), 40, "heartbeats lost:\n{console}");
    let max_gap = beats.windows(2).map(|w| w[1].at.saturating_sub(w[0].at)).max().unwrap_or_default();
    let done = run.output("beat").into_iter().find(|l| l.starts_with("probe: heartbeat done")).expect("done");
    let late_ms: u64 = field(done, "max_late_ms").and_then(|s| s.parse().ok()).expect("max_late_ms");
    assert!(late_ms <= 1000, "a heartbeat was {late_ms} ms late: {done}");
    assert!(max_gap <= Duration::from_millis(1500), "heartbeats {max_gap:?} apart on the console (interval 250 ms)");
    eprintln!(
        "{arch} hostile: bomb stopped at {n} processes ({refused} refused); hog {hog}; spinner share {share} \
         (throttled {throttled} times); heartbeat max lateness {late_ms} ms in guest, max console gap {max_gap:?}"
    );
}

both_arches!(hostile_neighbours_are_contained);

/// The hog check can fail: the same hog with no memory limit (tests/scenarios/hog-unlimited.toml)
/// grows past 32 MiB until the guest's own OOM killer takes it, and the check says so.
#[test]
fn an_unlimited_hog_fails_the_check_x86_64() {
    let run = Scenario::new("hog-unlimited", Arch::X86_64, &[]).boot(Duration::from_secs(400));
    match hog_was_held(&run) {
        Ok(held) => panic!("the check passed a hog with no memory limit: {held}\n{}", run.console),
        Err(why) => {
            assert!(why.contains("does not hold the limit"), "{why}");
            eprintln!("unlimited hog: {why}");
        }
    }
}
