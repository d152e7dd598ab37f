//! The keel partitions: found by GPT partition name in sysfs uevents (no udev), then mounted.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;
use keel_plan::{DATA_LABEL, DATA_MOUNT, IMAGES_LABEL, IMAGES_MOUNT};
use libc::{c_ulong, MS_NODEV, MS_NOSUID, MS_RDONLY};

use crate::{console, sys};

/// Where the kernel lists block devices.
pub const SYS_BLOCK: &str = "/sys/class/block";
/// Where devtmpfs puts their nodes.
pub const DEV: &str = "/dev";
/// How often to look again while waiting.
pub const POLL: Duration = Duration::from_millis(20);
/// Filesystem of both partitions.
pub const FSTYPE: &str = "ext4";

/// A partition keel-init mounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    /// GPT partition name.
    pub label: &'static str,
    /// Mount point.
    pub mount: &'static str,
    /// MS_* flags.
    pub flags: c_ulong,
}

/// The partitions, in mount order.
pub const PARTITIONS: [Partition; 2] = [
    Partition { label: IMAGES_LABEL, mount: IMAGES_MOUNT, flags: MS_RDONLY | MS_NOSUID | MS_NODEV },
    Partition { label: DATA_LABEL, mount: DATA_MOUNT, flags: MS_NOSUID | MS_NODEV },
];

/// The fields of a block device's `uevent` file keel cares about.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Uevent {
    /// `DEVNAME=`: the node under /dev.
    pub devname: Option<String>,
    /// `PARTNAME=`: the GPT partition name.
    pub partname: Option<String>,
}

/// Parse a `uevent` file (`KEY=VALUE` lines).
pub fn parse_uevent(text: &str) -> Uevent {
    let mut u = Uevent::default();
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("DEVNAME=") {
            u.devname = Some(v.to_string());
        } else if let Some(v) = line.strip_prefix("PARTNAME=") {
            u.partname = Some(v.to_string());
        }
    }
    u
}

/// Partition name → device node, for every named partition under `sys_block` whose node exists
/// under `dev`. On a duplicate name the first device in name order wins.
pub fn scan(sys_block: &Path, dev: &Path) -> BTreeMap<String, PathBuf> {
    let mut entries: Vec<PathBuf> = match fs::read_dir(sys_block) {
        Ok(d) => d.filter_map(Result::ok).map(|e| e.path()).collect(),
        Err(_) => return BTreeMap::new(),
    };
    entries.sort();
    let mut found = BTreeMap::new();
    for entry in entries {
        let Ok(text) = fs::read_to_string(entry.join("uevent")) else { continue };
        if let Uevent { devname: Some(devname), partname: Some(partname) } = parse_uevent(&text) {
            let node = dev.join(&devname);
            if node.exists() {
                found.entry(partname).or_insert(node);
            }
        }
    }
    found
}

/// Look for `labels` every [`POLL`] until all are found or `timeout` passes. Returns the nodes in
/// the order of `labels`, or the labels still missing.
pub fn wait_for(sys_block: &Path, dev: &Path, labels: &[&str], timeout: Duration) -> Result<Vec<PathBuf>, Vec<String>> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut found = scan(sys_block, dev);
        let missing: Vec<String> = labels.iter().filter(|l| !found.contains_key(**l)).map(|l| l.to_string()).collect();
        if missing.is_empty() {
            return Ok(labels.iter().filter_map(|l| found.remove(*l)).collect());
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(missing);
        }
        thread::sleep(POLL.min(deadline - now));
    }
}

/// Wait (at most `timeout`) for the keel partitions; their nodes in [`PARTITIONS`] order.
pub fn find(timeout: Duration) -> anyhow::Result<Vec<PathBuf>> {
    let labels = PARTITIONS.map(|p| p.label);
    wait_for(Path::new(SYS_BLOCK), Path::new(DEV), &labels, timeout).map_err(|missing| {
        anyhow::anyhow!("partitions not found within {} ms: {}", timeout.as_millis(), missing.join(", "))
    })
}

/// The node of the partition `label` among `nodes` (from [`find`]).
pub fn node<'a>(nodes: &'a [PathBuf], label: &str) -> Option<&'a Path> {
    PARTITIONS.iter().zip(nodes).find(|(p, _)| p.label == label).map(|(_, n)| n.as_path())
}

/// Mount the keel partitions `nodes` (from [`find`]).
pub fn mount(nodes: &[PathBuf]) -> anyhow::Result<()> {
    for (p, node) in PARTITIONS.iter().zip(nodes) {
        let target = Path::new(p.mount);
        fs::create_dir_all(target).with_context(|| format!("create {}", p.mount))?;
        let source = node.to_string_lossy();
        sys::mount(Some(&source), target, Some(FSTYPE), p.flags, None)
            .with_context(|| format!("mount {source} ({}) on {} as {FSTYPE}", p.label, p.mount))?;
    }
    Ok(())
}

/// Unmount the keel partitions, data first. Busy ones are remounted read-only and detached.
pub fn unmount() {
    for p in PARTITIONS.iter().rev() {
        let target = Path::new(p.mount);
        match sys::umount2(target, 0) {
            Ok(()) => {}
            // Not mounted (the boot failed before mounting it).
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOENT)) => {}
            Err(e) => {
                console::say(format_args!("unmount {}: {e}; detaching it", p.mount));
                let _ = sys::mount(None, target, None, libc::MS_REMOUNT | libc::MS_RDONLY, None);
                if let Err(e) = sys::umount2(target, libc::MNT_DETACH) {
                    console::say(format_args!("detach {}: {e}", p.mount));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VDA2: &str =
        "MAJOR=254\nMINOR=2\nDEVNAME=vda2\nDEVTYPE=partition\nDISKSEQ=1\nPARTN=2\nPARTNAME=keel-images\n";

    #[test]
    fn parses_uevents() {
        assert_eq!(parse_uevent(VDA2), Uevent { devname: Some("vda2".into()), partname: Some("keel-images".into()) });
        assert_eq!(parse_uevent("MAJOR=254\nDEVNAME=vda\nDEVTYPE=disk\n").partname, None);
        assert_eq!(parse_uevent(""), Uevent::default());
    }

    /// A fake /sys/class/block and /dev: `(entry, uevent, node exists)`.
    fn fake(devices: &[(&str, &str, bool)]) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        for (name, uevent, node) in devices {
            let d = t.path().join("sys").join(name);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("uevent"), uevent).unwrap();
            fs::create_dir_all(t.path().join("dev")).unwrap();
            if *node {
                fs::write(t.path().join("dev").join(name), "").unwrap();
            }
        }
        t
    }

    #[test]
    fn finds_partitions_by_name() {
        let t = fake(&[
            ("vda", "DEVNAME=vda\nDEVTYPE=disk\n", true),
            ("vda1", "DEVNAME=vda1\nPARTNAME=keel-esp\n", true),
            ("vda2", VDA2, true),
            ("vda3", "DEVNAME=vda3\nPARTNAME=keel-data\n", true),
        ]);
        let (sys, dev) = (t.path().join("sys"), t.path().join("dev"));
        let nodes = wait_for(&sys, &dev, &[IMAGES_LABEL, DATA_LABEL], Duration::ZERO).unwrap();
        assert_eq!(nodes, [dev.join("vda2"), dev.join("vda3")]);
    }

    #[test]
    fn reports_what_is_missing_after_the_timeout() {
        // keel-data's node is not there yet.
        let t = fake(&[("vda2", VDA2, true), ("vda3", "DEVNAME=vda3\nPARTNAME=keel-data\n", false)]);
        let start = Instant::now();
        let missing = wait_for(
            &t.path().join("sys"),
            &t.path().join("dev"),
            &[IMAGES_LABEL, DATA_LABEL],
            Duration::from_millis(60),
        )
        .unwrap_err();
        assert_eq!(missing, [DATA_LABEL]);
        assert!(start.elapsed() >= Duration::from_millis(60));
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn the_first_of_duplicates_wins() {
        let t = fake(&[("sda2", "DEVNAME=sda2\nPARTNAME=keel-images\n", true), ("vda2", VDA2, true)]);
        let found = scan(&t.path().join("sys"), &t.path().join("dev"));
        assert_eq!(found.get(IMAGES_LABEL), Some(&t.path().join("dev").join("sda2")));
    }

    #[test]
    fn nodes_by_label() {
        let nodes = [PathBuf::from("/dev/vda2"), PathBuf::from("/dev/vda3")];
        assert_eq!(node(&nodes, DATA_LABEL), Some(Path::new("/dev/vda3")));
        assert_eq!(node(&nodes, IMAGES_LABEL), Some(Path::new("/dev/vda2")));
        assert_eq!(node(&nodes[..1], DATA_LABEL), None);
    }

    #[test]
    fn images_are_read_only_and_data_is_not() {
        assert_eq!(PARTITIONS.map(|p| p.label), [IMAGES_LABEL, DATA_LABEL]);
        assert_ne!(PARTITIONS[0].flags & MS_RDONLY, 0);
        assert_eq!(PARTITIONS[1].flags & MS_RDONLY, 0);
    }
}
