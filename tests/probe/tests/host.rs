//! keel-probe run on the build host, as root and outside any container: the checker must find
//! the holes a container would have (so a check that passes in the guest is a check that can
//! fail), leave nothing behind, and the workloads must print what the boot tests parse. The fork
//! bomb and the hog run in a cgroup of their own with real pids and memory limits.
//!
//! These tests need root (cgroups, and the checks are meaningful only as root); they fail, not
//! skip, without it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const PROBE: &str = env!("CARGO_BIN_EXE_keel-probe");

/// Every check `keel-probe check` prints (tests/tests/isolation.rs requires them all in the guest).
const CHECKS: &[&str] = &[
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
    "rootfs-read-only",
    "sys-read-only",
    "tmp-writable",
    "masked-paths",
    "read-only-paths",
    "proc-sysrq-masked",
    "cgroup-limits-visible",
    "allowed-syscalls",
    "net-interfaces",
    "net-raw-socket",
    "net-ping",
    "net-bind-80",
];

/// Checks that fail for root on any Linux host outside a container.
const MUST_FAIL_ON_HOST: &[&str] = &[
    "ns-pid",
    "ns-user",
    "root-not-host-root",
    "caps-none",
    "no-new-privs",
    "seccomp-filter",
    "deny-mount",
    "deny-keyctl",
    "deny-ptrace",
    "deny-unshare-user",
    "deny-mknod-block",
    "deny-af-packet",
    "rootfs-read-only",
    "sys-read-only",
    "masked-paths",
    "read-only-paths",
    "proc-sysrq-masked",
    "cgroup-limits-visible",
    "net-raw-socket",
];

fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:")).expect("Uid line");
    assert_eq!(
        uid.split_whitespace().next(),
        Some("0"),
        "these tests need root (cgroups, and root's view of the checks)"
    );
}

fn probe(args: &[&str]) -> (Output, Vec<String>) {
    let out = Command::new(PROBE).args(args).output().expect("run keel-probe");
    let text = String::from_utf8(out.stdout.clone()).expect("utf-8 output");
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    for l in &lines {
        assert!(l.starts_with("probe: "), "unprefixed line {l:?} from {args:?}");
    }
    (out, lines)
}

/// The value after `key=` in `line`.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace().find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

fn leftover_scratch_dirs(pid: u32) -> Vec<PathBuf> {
    let prefix = format!("keel-probe-{pid}-");
    std::fs::read_dir("/tmp")
        .expect("read /tmp")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect()
}

#[test]
fn check_finds_the_holes_of_a_bare_host() {
    require_root();
    let child = Command::new(PROBE).arg("check").stdout(Stdio::piped()).spawn().expect("spawn keel-probe");
    let pid = child.id();
    let out = child.wait_with_output().expect("wait");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(out.status.code(), Some(1), "check must exit 1 when checks fail:\n{text}");

    let verdict = |name: &str| -> Vec<&str> {
        lines
            .iter()
            .filter_map(|l| {
                let (v, rest) = l
                    .strip_prefix("probe: ok ")
                    .map(|r| ("ok", r))
                    .or_else(|| l.strip_prefix("probe: FAIL ").map(|r| ("FAIL", r)))?;
                (rest.split_whitespace().next() == Some(name)).then_some(v)
            })
            .collect()
    };
    for name in CHECKS {
        assert_eq!(verdict(name).len(), 1, "check {name} must print exactly one verdict:\n{text}");
    }
    for name in MUST_FAIL_ON_HOST {
        assert_eq!(verdict(name), ["FAIL"], "{name} must fail on the bare host:\n{text}");
    }
    // The sanity check itself must hold anywhere, or the denials prove nothing.
    assert_eq!(verdict("allowed-syscalls"), ["ok"], "{text}");
    assert_eq!(verdict("tmp-writable"), ["ok"], "{text}");

    let oks = lines.iter().filter(|l| l.starts_with("probe: ok ")).count();
    let fails = lines.iter().filter(|l| l.starts_with("probe: FAIL ")).count();
    assert_eq!(oks + fails, CHECKS.len(), "unexpected extra checks:\n{text}");
    let summary = lines.last().copied().unwrap_or_default();
    assert_eq!(summary, format!("probe: summary {oks} ok {fails} failed"), "{text}");

    // The namespace lines name this process's (the host's) namespaces, in the readlink form
    // the boot test matches against keel-init's.
    for kind in ["pid", "mnt", "uts", "ipc", "net", "cgroup", "user"] {
        let link = std::fs::read_link(format!("/proc/self/ns/{kind}")).expect("readlink");
        let link = link.to_string_lossy();
        let ino = link.trim_start_matches(&format!("{kind}:[")).trim_end_matches(']');
        let want = format!("probe: ns {kind} {ino} {link}");
        assert!(lines.contains(&want.as_str()), "missing {want:?}:\n{text}");
    }

    // Nothing left behind: the scratch dir, the mount on it, the block node, /probe-write.
    assert_eq!(leftover_scratch_dirs(pid), Vec::<PathBuf>::new(), "scratch directory left behind");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(!mounts.contains("keel-probe"), "a probe mount was left behind:\n{mounts}");
    assert!(!Path::new("/probe-write").exists(), "/probe-write left behind");
}

/// As root with every capability and no seccomp filter, each call of `filter-only` is allowed
/// (or refused for another reason than EPERM), so every `filter-*` check fails: each can.
#[test]
fn filter_only_fails_without_a_filter() {
    require_root();
    let (out, lines) = probe(&["filter-only"]);
    assert_eq!(out.status.code(), Some(1), "{lines:?}");
    assert!(lines.iter().any(|l| l.starts_with("probe: ok caps-granted ")), "{lines:#?}");
    let failed: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("probe: FAIL filter-"))
        .filter_map(|r| r.split_whitespace().next())
        .collect();
    assert_eq!(
        failed,
        ["mount", "keyctl", "ptrace", "perf-event-open", "unshare-user", "io-uring-setup", "userfaultfd"],
        "{lines:#?}"
    );
    assert_eq!(lines.last().map(String::as_str), Some("probe: summary 1 ok 7 failed"));
    // Without the capabilities, caps-granted fails too.
    let nobody = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", PROBE, "filter-only"])
        .output()
        .expect("run setpriv");
    let text = String::from_utf8_lossy(&nobody.stdout);
    assert!(text.lines().any(|l| l.starts_with("probe: FAIL caps-granted CapEff=0000000000000000 lacks")), "{text}");
}

/// The checks that `keel-probe check` FAILs when run as `wrapper… keel-probe check`.
fn failed_under(wrapper: &[&str]) -> Vec<String> {
    let (program, args) = wrapper.split_first().expect("a wrapper command");
    let out = Command::new(program).args(args).args([PROBE, "check"]).output().expect("run keel-probe");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("probe: summary "),
        "{wrapper:?}: no summary:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .filter_map(|l| l.strip_prefix("probe: FAIL "))
        .filter_map(|r| r.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// Every check is seen failing on this host, so none passes in the guest by construction. The
/// bare host as root fails most of them; the rest fail where their subject is broken:
/// - as `nobody` with RLIMIT_NPROC at 1: `net-bind-80` (port 80 needs privilege on the host)
///   and `allowed-syscalls` (fork fails with EAGAIN);
/// - in a private mount namespace with /tmp read-only and a readable `kcore` in a tmpfs over
///   /proc: `tmp-writable` and `proc-kcore-masked`.
#[test]
fn every_check_is_seen_failing() {
    require_root();
    let mut seen = failed_under(&["env"]);
    seen.extend(failed_under(&[
        "prlimit",
        "--nproc=1:1",
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ]));
    let broken = "mount --bind /tmp /tmp && mount -o remount,bind,ro /tmp && mount -t tmpfs keel-probe-proc /proc \
         && echo core > /proc/kcore && exec \"$0\" \"$@\"";
    seen.extend(failed_under(&["unshare", "--mount", "--propagation", "private", "sh", "-c", broken]));
    let never: Vec<&&str> = CHECKS.iter().filter(|c| !seen.iter().any(|s| s == **c)).collect();
    assert!(never.is_empty(), "checks never seen failing: {never:?}");
}

#[test]
fn heartbeat_keeps_its_schedule() {
    let started = Instant::now();
    let (out, lines) = probe(&["heartbeat", "50", "5"]);
    let elapsed = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{lines:?}");
    assert_eq!(lines.len(), 6, "{lines:?}");
    let mut times = Vec::new();
    for (i, line) in lines.iter().take(5).enumerate() {
        let prefix = format!("probe: beat {} t=", i + 1);
        let t: u64 = line.strip_prefix(&prefix).and_then(|t| t.parse().ok()).unwrap_or_else(|| panic!("{line:?}"));
        times.push(t);
    }
    assert!(times.windows(2).all(|w| w[1] >= w[0]), "beats out of order: {times:?}");
    assert!(elapsed >= Duration::from_millis(250), "5 beats of 50 ms took {elapsed:?}");
    let done = &lines[5];
    assert!(done.starts_with("probe: heartbeat done "), "{done}");
    let late: u64 = field(done, "max_late_ms").and_then(|v| v.parse().ok()).expect("max_late_ms");
    assert!(late < 1000, "{done}");
    assert_eq!(field(done, "count"), Some("5"), "{done}");
    // Absolute deadlines: beat 5 is at least 4 intervals after beat 1, less beat 1's lateness (and 1 ms of rounding).
    assert!(times[4] - times[0] + late + 1 >= 200, "beats closer than their schedule: {times:?} {done}");
}

#[test]
fn spin_reports_its_share() {
    let (out, lines) = probe(&["spin", "1"]);
    assert_eq!(out.status.code(), Some(0), "{lines:?}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert!(line.starts_with("probe: spin share="), "{line}");
    let share_text = field(line, "share").expect("share");
    assert_eq!(share_text.split_once('.').map(|(_, d)| d.len()), Some(3), "three decimals: {line}");
    let share: f64 = share_text.parse().expect("share");
    let cpu: f64 = field(line, "cpu_usec").and_then(|v| v.parse().ok()).expect("cpu_usec");
    let wall: f64 = field(line, "wall_usec").and_then(|v| v.parse().ok()).expect("wall_usec");
    assert!(wall >= 1_000_000.0, "spun for less than a second: {line}");
    assert!(cpu > 0.0 && cpu <= wall * 1.05, "{line}");
    assert!((share - cpu / wall).abs() < 0.0011, "share is not cpu/wall: {line}");
    // Outside a cgroup namespace the container's files are not at /sys/fs/cgroup: `?`.
    assert!(field(line, "cpu.max").is_some() && field(line, "nr_throttled").is_some(), "{line}");
}

#[test]
fn bad_command_lines_exit_2() {
    for args in [&[][..], &["nope"], &["spin"], &["heartbeat", "x", "1"], &["filter-only", "extra"]] {
        let (out, lines) = probe(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {lines:?}");
        assert!(lines.len() == 1 && lines[0].contains("usage: keel-probe"), "{lines:?}");
    }
    assert_eq!(probe(&["exit", "7"]).0.status.code(), Some(7));
    let started = Instant::now();
    assert_eq!(probe(&["sleep", "1"]).0.status.code(), Some(0));
    assert!(started.elapsed() >= Duration::from_secs(1));
}

/// A cgroup of the host's for one test, removed on drop.
struct TestCgroup {
    dir: PathBuf,
}

impl TestCgroup {
    /// A new cgroup with `controller` (pids or memory), under this process's own cgroup on
    /// cgroup v1 and under the root on cgroup v2.
    fn new(controller: &str) -> Self {
        let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        let base = if v2 {
            let ctl = Path::new("/sys/fs/cgroup/cgroup.subtree_control");
            let enabled = std::fs::read_to_string(ctl).expect("read subtree_control");
            if !enabled.split_whitespace().any(|c| c == controller) {
                std::fs::write(ctl, format!("+{controller}")).expect("enable the controller");
            }
            PathBuf::from("/sys/fs/cgroup")
        } else {
            let own = std::fs::read_to_string("/proc/self/cgroup").expect("read /proc/self/cgroup");
            let path = own
                .lines()
                .find_map(|l| {
                    let mut f = l.splitn(3, ':');
                    let (_, ctls, path) = (f.next()?, f.next()?, f.next()?);
                    ctls.split(',').any(|c| c == controller).then(|| path.to_string())
                })
                .unwrap_or_else(|| panic!("no {controller} cgroup v1 hierarchy"));
            PathBuf::from(format!("/sys/fs/cgroup/{controller}{path}"))
        };
        let dir = base.join(format!("keel-probe-test-{}-{controller}", std::process::id()));
        let _ = std::fs::remove_dir(&dir);
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        TestCgroup { dir }
    }

    fn set(&self, file: &str, value: &str) {
        let path = self.dir.join(file);
        std::fs::write(&path, value).unwrap_or_else(|e| panic!("write {value} to {}: {e}", path.display()));
    }

    fn get(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.join(file)).unwrap_or_default()
    }

    fn is_v2(&self) -> bool {
        self.dir.starts_with("/sys/fs/cgroup") && Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
    }

    /// keel-probe with `args`, started inside this cgroup (sh joins it, then execs the probe).
    fn spawn(&self, args: &str) -> std::process::Child {
        let procs = self.dir.join("cgroup.procs");
        let script = format!("echo $$ > '{}' && exec '{PROBE}' {args}", procs.display());
        Command::new("sh").arg("-c").arg(script).stdout(Stdio::piped()).spawn().expect("spawn sh")
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn fork_bomb_stops_at_the_pids_limit_and_cleans_up() {
    require_root();
    let cg = TestCgroup::new("pids");
    cg.set("pids.max", "16");
    let out = cg.spawn("fork-bomb 1").wait_with_output().expect("wait");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let stopped = text.lines().find(|l| l.starts_with("probe: fork-bomb stopped at ")).expect(&text);
    // The boot test reads the count as the fifth word.
    assert_eq!(stopped.split_whitespace().nth(4), Some("16"), "pids.max = 16 counts the probe too: {stopped}");
    assert!(stopped.contains("(EAGAIN)"), "{stopped}");
    let held = text.lines().find(|l| l.starts_with("probe: fork-bomb held 1s: ")).expect(&text);
    assert!(held.contains(" failed, 16 processes"), "{held}");
    assert!(text.lines().last() == Some("probe: fork-bomb done"), "{text}");
    assert_eq!(cg.get("pids.current").trim(), "0", "children left alive after the bomb exited");
    let events = cg.get("pids.events");
    let hits: u64 =
        events.lines().find_map(|l| l.strip_prefix("max ")).and_then(|n| n.trim().parse().ok()).unwrap_or(0);
    assert!(hits >= 2, "the limit was hit once at the top and again while holding: {events}");
}

#[test]
fn hog_is_oom_killed_by_the_memory_limit() {
    require_root();
    let cg = TestCgroup::new("memory");
    if cg.is_v2() {
        cg.set("memory.max", "32M");
        if cg.dir.join("memory.swap.max").exists() {
            cg.set("memory.swap.max", "0");
        }
    } else {
        cg.set("memory.limit_in_bytes", "32M");
        if cg.dir.join("memory.memsw.limit_in_bytes").exists() {
            cg.set("memory.memsw.limit_in_bytes", "32M");
        }
    }
    let mut child = cg.spawn("hog");
    let stdout = child.stdout.take().expect("stdout");
    let pid = child.id();
    // A watchdog: the hog never exits by itself, so if the limit does not kill it, we do, and fail.
    let watchdog = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        true
    });
    let lines: Vec<String> = BufReader::new(stdout).lines().map_while(Result::ok).collect();
    let status = child.wait().expect("wait");
    let watchdog_fired = watchdog.join().expect("watchdog");
    assert!(!watchdog_fired, "the hog outlived the memory limit for 60 s: {lines:?}");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9), "the hog must die by SIGKILL (the OOM killer): {status:?} {lines:?}");
    assert!(lines.first().is_some_and(|l| l.starts_with("probe: hog start")), "{lines:?}");
    assert!(lines.iter().any(|l| l == "probe: hog 16 MiB"), "{lines:?}");
    assert!(!lines.iter().any(|l| l == "probe: hog 32 MiB"), "32 MiB touched under a 32 MiB limit: {lines:?}");
}
