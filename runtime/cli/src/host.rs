//! What the build host offers keel-runtime: a cgroup v2 for the container, and a scratch
//! directory.

use std::fs;
use std::path::{Path, PathBuf};

/// Where keel-runtime keeps per-container scratch directories (empty on the host: the overlay's
/// tmpfs is mounted only in the container's mount namespace).
pub const SCRATCH: &str = "/run/keel-runtime";

/// The cgroup v2 subtree keel-runtime makes its containers' cgroups in.
pub const CGROUP_SUBTREE: &str = "keel-runtime";

/// True if `mountinfo` (the text of `/proc/self/mountinfo`) shows `mount_point` as a cgroup2
/// mount (the last mount there wins, as in the kernel).
pub fn is_cgroup2(mountinfo: &str, mount_point: &str) -> bool {
    let mut found = false;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else { continue };
        if fields.get(4) == Some(&mount_point) {
            found = fields.get(sep + 1) == Some(&"cgroup2");
        }
    }
    found
}

/// True if a `cgroup.controllers` text lists every controller keel uses.
pub fn has_controllers(controllers: &str) -> bool {
    let have: Vec<&str> = controllers.split_whitespace().collect();
    ["cpu", "memory", "pids"].iter().all(|c| have.contains(c))
}

/// The directory to make container cgroups in, if `/sys/fs/cgroup` is a pure cgroup v2 with the
/// cpu, memory and pids controllers (a hybrid or v1 host has none to offer); prepared with
/// [`keel_runtime::prepare_cgroups`].
pub fn cgroups() -> std::io::Result<Option<PathBuf>> {
    let root = Path::new("/sys/fs/cgroup");
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
    if !is_cgroup2(&mountinfo, "/sys/fs/cgroup") {
        return Ok(None);
    }
    let controllers = fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
    if !has_controllers(&controllers) {
        return Ok(None);
    }
    let dir = root.join(CGROUP_SUBTREE);
    keel_runtime::prepare_cgroups(&dir)?;
    Ok(Some(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup2_is_recognised_and_hybrid_is_not() {
        let pure = "35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw\n";
        assert!(is_cgroup2(pure, "/sys/fs/cgroup"));
        let hybrid = "35 24 0:30 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755\n\
                      36 35 0:31 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw\n";
        assert!(!is_cgroup2(hybrid, "/sys/fs/cgroup"));
        assert!(is_cgroup2(hybrid, "/sys/fs/cgroup/unified"));
        // Mounted over: the last one counts.
        let over = format!("{pure}40 35 0:40 / /sys/fs/cgroup rw - tmpfs none rw\n");
        assert!(!is_cgroup2(&over, "/sys/fs/cgroup"));
        assert!(has_controllers("cpuset cpu io memory hugetlb pids rdma misc\n"));
        assert!(!has_controllers(""));
        assert!(!has_controllers("cpu io"));
    }
}
