//! The kernel's filesystems in the container: `/proc` with the paths that leak host information
//! or control the host masked, `/sys` read-only, and the container's own cgroup read-only at
//! `/sys/fs/cgroup`. The masks are runc's, crun's and youki's: paths the running kernel does not
//! have are skipped ([`Step::optional`]).
//!
//! Mounting proc and sysfs from a user namespace is allowed because the container owns its pid and
//! network namespaces and the host has them mounted, unobstructed, already; cgroup2 because it owns
//! its cgroup namespace.

use std::path::Path;

use libc::{c_ulong, MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_REC, MS_REMOUNT};

use crate::child::{Op, Step};
use crate::error::RuntimeError;
use crate::process::cstring;
use crate::rootfs::{c_path, tmpfs};

/// Files hidden behind the host's `/dev/null` (a bind mount: reads give nothing, writes vanish).
/// `/proc/interrupts` joined moby's list in 2023: its per-CPU counts leak what the host's other
/// tenants are doing.
pub const MASKED_FILES: [&str; 7] = [
    "proc/interrupts",
    "proc/kcore",
    "proc/keys",
    "proc/latency_stats",
    "proc/timer_list",
    "proc/timer_stats",
    "proc/sched_debug",
];

/// Directories hidden under an empty read-only tmpfs.
pub const MASKED_DIRS: [&str; 5] =
    ["proc/acpi", "proc/asound", "proc/scsi", "sys/firmware", "sys/devices/virtual/powercap"];

/// Paths bound onto themselves and remounted read-only.
pub const READ_ONLY: [&str; 5] = ["proc/bus", "proc/fs", "proc/irq", "proc/sys", "proc/sysrq-trigger"];

const PROC_FLAGS: c_ulong = MS_NOSUID | MS_NODEV | MS_NOEXEC;
const SYS_FLAGS: c_ulong = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC;

/// `/proc`, `/sys` (and `/sys/fs/cgroup` if `cgroup`) under `root`, with the masks; device
/// nodes for the masks come from `host_dev`. Masks of paths the running kernel lacks are left out.
pub(crate) fn steps(root: &Path, host_dev: &Path, cgroup: bool) -> Result<Vec<Step>, RuntimeError> {
    steps_for(root, host_dev, cgroup, &on_this_kernel, thermal_throttle_dirs())
}

/// `sys/devices/system/cpu/cpuN/thermal_throttle` of every CPU that has one (Intel's thermal
/// interrupt counters, masked by moby since 2023), found once per process.
fn thermal_throttle_dirs() -> &'static [String] {
    static DIRS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    DIRS.get_or_init(|| {
        let Ok(cpus) = std::fs::read_dir("/sys/devices/system/cpu") else { return Vec::new() };
        let mut dirs: Vec<String> = cpus
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.strip_prefix("cpu").is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())))
            .map(|n| format!("sys/devices/system/cpu/{n}/thermal_throttle"))
            .filter(|rel| Path::new("/").join(rel).is_dir())
            .collect();
        dirs.sort();
        dirs
    })
}

/// [`steps`], with `present` saying which mask targets exist.
fn steps_for(
    root: &Path,
    host_dev: &Path,
    cgroup: bool,
    present: &dyn Fn(&str) -> bool,
    per_cpu: &[String],
) -> Result<Vec<Step>, RuntimeError> {
    let under = |rel: &str| c_path(&root.join(rel));
    let mut steps = vec![mount("proc", under("proc")?, PROC_FLAGS)?];
    let null = c_path(&host_dev.join("null"))?;
    let proc_masked = MASKED_DIRS.iter().filter(|d| d.starts_with("proc/") && present(d));
    let sys_masked = MASKED_DIRS.iter().filter(|d| d.starts_with("sys/") && present(d));
    for file in MASKED_FILES.into_iter().filter(|f| present(f)) {
        steps.push(
            Step::new(
                format!("mask /{file}"),
                Op::Mount {
                    source: Some(null.clone()),
                    target: under(file)?,
                    fstype: None,
                    flags: MS_BIND,
                    data: None,
                },
            )
            .optional(),
        );
    }
    for dir in proc_masked {
        steps.push(mask_dir(dir, under(dir)?)?);
    }
    for path in READ_ONLY.into_iter().filter(|p| present(p)) {
        let target = under(path)?;
        steps.push(
            Step::new(
                format!("bind /{path} onto itself"),
                Op::Mount {
                    source: Some(target.clone()),
                    target: target.clone(),
                    fstype: None,
                    flags: MS_BIND | MS_REC,
                    data: None,
                },
            )
            .optional(),
        );
        steps.push(
            Step::new(
                format!("remount /{path} read-only"),
                Op::Mount { source: None, target, fstype: None, flags: MS_BIND | MS_REMOUNT | SYS_FLAGS, data: None },
            )
            .optional(),
        );
    }
    steps.push(mount("sysfs", under("sys")?, SYS_FLAGS)?);
    for dir in sys_masked.copied().chain(per_cpu.iter().map(String::as_str)) {
        steps.push(mask_dir(dir, under(dir)?)?);
    }
    if cgroup {
        steps.push(Step::new(
            "mount cgroup2 on /sys/fs/cgroup",
            Op::Mount {
                source: Some(cstring("cgroup2", "")?),
                target: under("sys/fs/cgroup")?,
                fstype: Some(cstring("cgroup2", "")?),
                flags: SYS_FLAGS,
                data: None,
            },
        ));
    }
    Ok(steps)
}

/// The masked and read-only paths that this kernel lacks (judged as [`steps`] judges them), as
/// absolute paths: keel-init lists them once at boot, so a mask left out is said, not silent.
pub fn absent_masks() -> Vec<String> {
    MASKED_FILES
        .iter()
        .chain(MASKED_DIRS.iter())
        .chain(READ_ONLY.iter())
        .filter(|rel| !on_this_kernel(rel))
        .map(|rel| format!("/{rel}"))
        .collect()
}

/// Whether the running kernel has `rel` (`proc/…` or `sys/…`), judged from the caller's own
/// /proc and /sys: a path it lacks needs no mask, which saves the container a failing mount. When
/// the caller's /proc or /sys is not mounted (no `proc/self`, no `sys/kernel`), every path counts
/// as present, and the step stays optional.
fn on_this_kernel(rel: &str) -> bool {
    let fs = if rel.starts_with("proc/") { "/proc/self" } else { "/sys/kernel" };
    !Path::new(fs).exists() || Path::new("/").join(rel).exists()
}

fn mount(fstype: &str, target: std::ffi::CString, flags: c_ulong) -> Result<Step, RuntimeError> {
    let at = if fstype == "proc" { "/proc" } else { "/sys" };
    Ok(Step::new(
        format!("mount {fstype} on {at}"),
        Op::Mount { source: Some(cstring(fstype, "")?), target, fstype: Some(cstring(fstype, "")?), flags, data: None },
    ))
}

fn mask_dir(dir: &str, target: std::ffi::CString) -> Result<Step, RuntimeError> {
    Ok(tmpfs(&format!("/{dir} (mask)"), target, SYS_FLAGS, "mode=555")?.optional())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::child::{self, fake::Recorder, ChildPlan};
    use crate::process::Exec;

    fn record(cgroup: bool, fail_on: Option<(String, i32)>) -> (Vec<String>, Option<String>) {
        let plan = ChildPlan {
            steps: steps_for(
                Path::new("/r"),
                Path::new("/dev"),
                cgroup,
                &|_| true,
                &["sys/devices/system/cpu/cpu0/thermal_throttle".to_string()],
            )
            .unwrap(),
            exec: Exec::for_tests(&[], "exec"),
        };
        let mut r = Recorder { fail_on, ..Default::default() };
        let f = child::run(&plan, &mut r);
        let failed = (f.index < plan.steps.len()).then(|| plan.describe(f.index).to_string());
        (r.calls, failed)
    }

    #[test]
    fn proc_is_masked_and_sys_read_only() {
        let (calls, failed) = record(true, None);
        assert_eq!(failed, None);
        assert_eq!(
            calls,
            [
                "mount proc /r/proc proc 0xe -",
                "mount /dev/null /r/proc/interrupts - 0x1000 -",
                "mount /dev/null /r/proc/kcore - 0x1000 -",
                "mount /dev/null /r/proc/keys - 0x1000 -",
                "mount /dev/null /r/proc/latency_stats - 0x1000 -",
                "mount /dev/null /r/proc/timer_list - 0x1000 -",
                "mount /dev/null /r/proc/timer_stats - 0x1000 -",
                "mount /dev/null /r/proc/sched_debug - 0x1000 -",
                "mount tmpfs /r/proc/acpi tmpfs 0xf mode=555",
                "mount tmpfs /r/proc/asound tmpfs 0xf mode=555",
                "mount tmpfs /r/proc/scsi tmpfs 0xf mode=555",
                "mount /r/proc/bus /r/proc/bus - 0x5000 -",
                "mount - /r/proc/bus - 0x102f -",
                "mount /r/proc/fs /r/proc/fs - 0x5000 -",
                "mount - /r/proc/fs - 0x102f -",
                "mount /r/proc/irq /r/proc/irq - 0x5000 -",
                "mount - /r/proc/irq - 0x102f -",
                "mount /r/proc/sys /r/proc/sys - 0x5000 -",
                "mount - /r/proc/sys - 0x102f -",
                "mount /r/proc/sysrq-trigger /r/proc/sysrq-trigger - 0x5000 -",
                "mount - /r/proc/sysrq-trigger - 0x102f -",
                "mount sysfs /r/sys sysfs 0xf -",
                "mount tmpfs /r/sys/firmware tmpfs 0xf mode=555",
                "mount tmpfs /r/sys/devices/virtual/powercap tmpfs 0xf mode=555",
                "mount tmpfs /r/sys/devices/system/cpu/cpu0/thermal_throttle tmpfs 0xf mode=555",
                "mount cgroup2 /r/sys/fs/cgroup cgroup2 0xf -",
            ]
        );
        let (without, _) = record(false, None);
        assert_eq!(without.len(), calls.len() - 1);
        assert!(!without.iter().any(|c| c.contains("cgroup2")));
    }

    #[test]
    fn missing_mask_targets_are_skipped_other_failures_are_not() {
        // A kernel without /proc/timer_stats (every kernel since 4.11).
        let (calls, failed) = record(true, Some(("mount /dev/null /r/proc/timer_stats".into(), libc::ENOENT)));
        assert_eq!(failed, None);
        assert!(calls.last().is_some_and(|c| c.contains("cgroup2")));
        let (_, failed) = record(true, Some(("mount /dev/null /r/proc/kcore".into(), libc::EPERM)));
        assert_eq!(failed.as_deref(), Some("mask /proc/kcore"));
        let (_, failed) = record(true, Some(("mount proc".into(), libc::ENOENT)));
        assert_eq!(failed.as_deref(), Some("mount proc on /proc"), "proc itself is not optional");
        let (_, failed) = record(true, Some(("mount - /r/proc/sys ".into(), libc::EPERM)));
        assert_eq!(failed.as_deref(), Some("remount /proc/sys read-only"));
    }

    #[test]
    fn masks_of_paths_the_kernel_lacks_are_left_out() {
        let all = steps_for(Path::new("/r"), Path::new("/dev"), false, &|_| true, &[]).unwrap();
        let some = steps_for(Path::new("/r"), Path::new("/dev"), false, &|p| p != "proc/timer_stats", &[]).unwrap();
        assert_eq!(some.len() + 1, all.len());
        assert!(!some.iter().any(|s| s.what.contains("timer_stats")));
        assert!(some.iter().any(|s| s.what == "mask /proc/kcore"));
    }
}
