//! The masks keel-runtime puts over /proc and /sys, checked as mounts in the container's own
//! /proc/self/mountinfo, from the runtime's own lists: an open that merely fails (for want of a
//! capability, or for the file's mode) proves nothing about a mask.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use keel_runtime::kernfs::{MASKED_DIRS, MASKED_FILES, READ_ONLY};

use crate::errno::Errno;
use crate::parse::{self, Mount};
use crate::report::{verdict, Outcome, Report};

/// Records masked-paths, read-only-paths and proc-sysrq-masked.
pub fn run(report: &mut Report) {
    match fs::read_to_string("/proc/self/mountinfo") {
        Ok(text) => {
            let mounts = parse::mountinfo(&text);
            report.record("masked-paths", masked_paths(&mounts));
            report.record("read-only-paths", read_only_paths(&mounts, &READ_ONLY));
            report.record("proc-sysrq-masked", read_only_paths(&mounts, &["proc/sysrq-trigger"]));
        }
        Err(e) => {
            let why = format!("/proc/self/mountinfo: {}", Errno::from_io(&e));
            for name in ["masked-paths", "read-only-paths", "proc-sysrq-masked"] {
                report.record(name, Err(why.clone()));
            }
        }
    }
}

/// Whether `/rel` exists here; a path this kernel lacks needs no mask (keel-init lists those).
fn present(rel: &str) -> bool {
    Path::new("/").join(rel).symlink_metadata().is_ok()
}

/// Every masked file is the null device bound over it, and every masked directory an empty
/// read-only tmpfs.
fn masked_paths(mounts: &[Mount]) -> Outcome {
    let cpus = thermal_throttle_dirs();
    let dirs = MASKED_DIRS.iter().copied().chain(cpus.iter().map(String::as_str));
    let mut bad = Vec::new();
    let mut absent = Vec::new();
    let mut masked = 0;
    for rel in MASKED_FILES {
        if !present(rel) {
            absent.push(rel);
            continue;
        }
        let point = format!("/{rel}");
        let null =
            fs::metadata(&point).is_ok_and(|m| m.file_type().is_char_device() && m.rdev() == libc::makedev(1, 3));
        match parse::mount_at(mounts, &point) {
            Some(_) if null => masked += 1,
            Some(m) => bad.push(format!("{point}: a {} mount, not the null device", m.fstype)),
            None => bad.push(format!("{point}: not a mount point")),
        }
    }
    for rel in dirs {
        if !present(rel) {
            absent.push(rel);
            continue;
        }
        let point = format!("/{rel}");
        let empty = fs::read_dir(&point).map(|mut d| d.next().is_none()).unwrap_or(false);
        match parse::mount_at(mounts, &point) {
            Some(m) if m.fstype == "tmpfs" && m.read_only() && empty => masked += 1,
            Some(m) => {
                bad.push(format!("{point}: {} {}{}", m.fstype, m.options, if empty { "" } else { ", not empty" }))
            }
            None => bad.push(format!("{point}: not a mount point")),
        }
    }
    let detail = format!("{masked} masked; absent here: [{}]; not masked: [{}]", absent.join(" "), bad.join("; "));
    verdict(bad.is_empty() && masked > 0, detail)
}

/// Each of `paths` (relative to /) is a mount point whose own options say `ro`.
fn read_only_paths(mounts: &[Mount], paths: &[&str]) -> Outcome {
    let mut bad = Vec::new();
    let mut absent = Vec::new();
    let mut ro = 0;
    for rel in paths {
        if !present(rel) {
            absent.push(*rel);
            continue;
        }
        let point = format!("/{rel}");
        match parse::mount_at(mounts, &point) {
            Some(m) if m.read_only() => ro += 1,
            Some(m) => bad.push(format!("{point}: {}", m.options)),
            None => bad.push(format!("{point}: not a mount point")),
        }
    }
    let detail =
        format!("{ro} read-only mount(s); absent here: [{}]; writable: [{}]", absent.join(" "), bad.join("; "));
    verdict(bad.is_empty() && ro > 0, detail)
}

/// `sys/devices/system/cpu/cpuN/thermal_throttle` of every CPU that has one.
fn thermal_throttle_dirs() -> Vec<String> {
    let Ok(cpus) = fs::read_dir("/sys/devices/system/cpu") else { return Vec::new() };
    let mut dirs: Vec<String> = cpus
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.strip_prefix("cpu").is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())))
        .map(|n| format!("sys/devices/system/cpu/{n}/thermal_throttle"))
        .filter(|rel| present(rel))
        .collect();
    dirs.sort();
    dirs
}
