//! cgroup v2: keel's subtree, one cgroup per container with its limits, and what the caller reads
//! back (OOM kills) and cleans up.
//!
//! The parent makes `<root>/<name>` and writes the limits before the clone, and puts the child in
//! it before releasing it (so nothing the container runs is ever outside it). The child then
//! unshares its cgroup namespace, so that cgroup is `/` inside, and mounts cgroup2 read-only on
//! `/sys/fs/cgroup` (see [`crate::kernfs`]): the container can read its limits, not change them.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use keel_plan::Limits;

use crate::error::RuntimeError;

/// Controllers keel's subtree delegates to each container's cgroup.
pub const CONTROLLERS: &str = "+cpu +memory +pids";

/// Create keel's cgroup `root` and enable [`CONTROLLERS`] in its parent's and its own
/// `cgroup.subtree_control`, so each container cgroup under it has `memory.max`, `cpu.max` and
/// `pids.max`. keel-init calls this once at boot, before starting containers. Fails if a
/// controller is not available (e.g. taken by a cgroup v1 hierarchy).
pub fn prepare_cgroups(root: &Path) -> io::Result<()> {
    fs::create_dir_all(root).map_err(|e| at(root, e))?;
    for dir in root.parent().into_iter().chain([root]) {
        let file = dir.join("cgroup.subtree_control");
        write(&file, CONTROLLERS).map_err(|e| at(&file, e))?;
    }
    Ok(())
}

/// Write `value` to the existing file `path` in one write(2), as cgroupfs wants. A file that does
/// not exist is NotFound (creating files in cgroupfs fails with EACCES, which would hide that).
fn write(path: &Path, value: &str) -> io::Result<()> {
    OpenOptions::new().write(true).open(path)?.write_all(value.as_bytes())
}

fn at(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// What to do when a limit's file does not exist (its controller is not enabled).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IfAbsent {
    /// A limit was asked for and cannot be enforced: refuse to start the container.
    Fail,
    /// The value is the default anyway (or swap accounting is off): nothing to enforce.
    Skip,
}

/// The files written to set `limits`, in order: (file, value, what if the file is absent).
/// An unset limit is written as `max`, so a reused cgroup loses an old limit.
pub(crate) fn limit_files(limits: &Limits) -> Vec<(&'static str, String, IfAbsent)> {
    let value = |v: Option<u64>| v.map_or(("max".to_string(), IfAbsent::Skip), |v| (v.to_string(), IfAbsent::Fail));
    let (memory, memory_absent) = value(limits.memory_max);
    let (pids, pids_absent) = value(limits.pids_max);
    let (cpu, cpu_absent) = limits
        .cpu_max
        .map_or(("max".to_string(), IfAbsent::Skip), |c| (format!("{} {}", c.quota_us, c.period_us), IfAbsent::Fail));
    vec![
        ("memory.max", memory, memory_absent),
        // No swap: memory.max is the container's whole budget.
        ("memory.swap.max", "0".to_string(), IfAbsent::Skip),
        ("cpu.max", cpu, cpu_absent),
        ("pids.max", pids, pids_absent),
    ]
}

/// A container's cgroup, `<root>/<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup {
    path: PathBuf,
}

impl Cgroup {
    /// Make (or reuse, for a restart) `<root>/<name>` and write `limits` to it.
    pub(crate) fn create(root: &Path, name: &str, limits: &Limits) -> Result<Cgroup, RuntimeError> {
        let path = root.join(name);
        match fs::create_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(source) => return Err(RuntimeError::Cgroup { path, source }),
        }
        let cgroup = Cgroup { path };
        for (file, value, absent) in limit_files(limits) {
            let path = cgroup.path.join(file);
            match write(&path, &value) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound && absent == IfAbsent::Skip => {}
                Err(source) => return Err(RuntimeError::Cgroup { path, source }),
            }
        }
        Ok(cgroup)
    }

    /// Move process `pid` (in the caller's pid namespace) into the cgroup.
    pub(crate) fn add(&self, pid: libc::pid_t) -> Result<(), RuntimeError> {
        let path = self.path.join("cgroup.procs");
        write(&path, &pid.to_string()).map_err(|source| RuntimeError::Cgroup { path, source })
    }

    /// The cgroup's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many processes the kernel has killed in this cgroup for going over `memory.max`
    /// (`oom_kill` in `memory.events`, which counts since the cgroup was made, restarts included).
    /// Fails if the memory controller is not enabled for it (no `memory.events`).
    pub fn oom_kills(&self) -> io::Result<u64> {
        let path = self.path.join("memory.events");
        let text = fs::read_to_string(&path).map_err(|e| at(&path, e))?;
        oom_kills(&text).ok_or_else(|| at(&path, io::Error::new(io::ErrorKind::InvalidData, "no oom_kill count")))
    }

    /// The kernel's `memory.max` for this cgroup: `None` for `max` (no limit). This is what the
    /// kernel enforces, whatever the plan asked for.
    pub fn memory_max(&self) -> io::Result<Option<u64>> {
        let path = self.path.join("memory.max");
        let text = fs::read_to_string(&path).map_err(|e| at(&path, e))?;
        limit_value(&text).ok_or_else(|| at(&path, io::Error::new(io::ErrorKind::InvalidData, "not a limit")))
    }

    /// Remove the cgroup. Fails with EBUSY while a process is still in it (or not yet fully gone
    /// after being reaped): call again later.
    pub fn remove(&self) -> io::Result<()> {
        fs::remove_dir(&self.path)
    }
}

/// A limit file's value: `Some(None)` for `max`, `Some(Some(n))` for a number.
fn limit_value(text: &str) -> Option<Option<u64>> {
    match text.trim() {
        "max" => Some(None),
        n => n.parse().ok().map(Some),
    }
}

/// The `oom_kill` count of a `memory.events` text.
fn oom_kills(events: &str) -> Option<u64> {
    events.lines().find_map(|l| l.strip_prefix("oom_kill ")).and_then(|n| n.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_plan::CpuMax;

    #[test]
    fn limits_become_files() {
        let set = Limits {
            memory_max: Some(64 << 20),
            cpu_max: Some(CpuMax { quota_us: 50_000, period_us: 100_000 }),
            pids_max: Some(32),
        };
        assert_eq!(
            limit_files(&set),
            [
                ("memory.max", "67108864".to_string(), IfAbsent::Fail),
                ("memory.swap.max", "0".to_string(), IfAbsent::Skip),
                ("cpu.max", "50000 100000".to_string(), IfAbsent::Fail),
                ("pids.max", "32".to_string(), IfAbsent::Fail),
            ]
        );
        let unset = limit_files(&Limits::default());
        assert!(unset.iter().all(|(_, _, a)| *a == IfAbsent::Skip));
        assert_eq!(unset.iter().filter(|(_, v, _)| v == "max").count(), 3);
    }

    /// A cgroup directory as the kernel would show it, with `files`, in a tempdir.
    fn fake_cgroup(parent: &Path, name: &str, files: &[&str]) {
        fs::create_dir(parent.join(name)).unwrap();
        for f in files {
            fs::write(parent.join(name).join(f), "").unwrap();
        }
    }

    #[test]
    fn create_writes_limits_and_reuses_the_directory() {
        let t = tempfile::tempdir().unwrap();
        let all = ["memory.max", "memory.swap.max", "cpu.max", "pids.max", "cgroup.procs"];
        fake_cgroup(t.path(), "web", &all);
        let limits = Limits { memory_max: Some(1 << 20), cpu_max: None, pids_max: Some(7) };
        let cg = Cgroup::create(t.path(), "web", &limits).unwrap();
        assert_eq!(cg.path(), t.path().join("web"));
        assert_eq!(fs::read_to_string(cg.path().join("memory.max")).unwrap(), "1048576");
        assert_eq!(fs::read_to_string(cg.path().join("memory.swap.max")).unwrap(), "0");
        assert_eq!(fs::read_to_string(cg.path().join("cpu.max")).unwrap(), "max");
        assert_eq!(fs::read_to_string(cg.path().join("pids.max")).unwrap(), "7");
        cg.add(42).unwrap();
        assert_eq!(fs::read_to_string(cg.path().join("cgroup.procs")).unwrap(), "42");
        assert_eq!(cg.memory_max().unwrap(), Some(1 << 20));
        fs::write(cg.path().join("memory.max"), "max\n").unwrap();
        assert_eq!(cg.memory_max().unwrap(), None);
        fs::write(cg.path().join("memory.max"), "lots\n").unwrap();
        assert!(cg.memory_max().is_err());
    }

    #[test]
    fn absent_controllers_fail_only_asked_for_limits() {
        let t = tempfile::tempdir().unwrap();
        // No controller files at all (a cgroup2 without memory, cpu, pids), no swap accounting.
        fake_cgroup(t.path(), "bare", &[]);
        let cg = Cgroup::create(t.path(), "bare", &Limits::default()).unwrap();
        assert!(!cg.path().join("pids.max").exists(), "files are never created");
        let limits = Limits { memory_max: None, cpu_max: None, pids_max: Some(7) };
        match Cgroup::create(t.path(), "bare", &limits) {
            Err(RuntimeError::Cgroup { path, source }) => {
                assert_eq!(path, t.path().join("bare/pids.max"));
                assert_eq!(source.kind(), io::ErrorKind::NotFound);
            }
            other => panic!("{other:?}"),
        }
        // A new directory is made when there is none.
        Cgroup::create(t.path(), "new", &Limits::default()).unwrap();
        assert!(t.path().join("new").is_dir());
    }

    #[test]
    fn a_missing_parent_is_an_error_naming_the_path() {
        let t = tempfile::tempdir().unwrap();
        match Cgroup::create(&t.path().join("nope"), "web", &Limits::default()) {
            Err(RuntimeError::Cgroup { path, .. }) => assert_eq!(path, t.path().join("nope/web")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn oom_kills_are_read_from_memory_events() {
        let t = tempfile::tempdir().unwrap();
        let cg = Cgroup { path: t.path().to_path_buf() };
        assert_eq!(cg.oom_kills().unwrap_err().kind(), io::ErrorKind::NotFound);
        fs::write(t.path().join("memory.events"), "low 0\nhigh 0\nmax 4\noom 2\noom_kill 2\noom_group_kill 0\n")
            .unwrap();
        assert_eq!(cg.oom_kills().unwrap(), 2);
        fs::write(t.path().join("memory.events"), "low 0\n").unwrap();
        assert_eq!(cg.oom_kills().unwrap_err().kind(), io::ErrorKind::InvalidData);
        cg.remove().unwrap_err();
    }

    #[test]
    fn prepare_enables_the_controllers_in_parent_and_root() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("keel");
        let e = prepare_cgroups(&root).unwrap_err();
        assert!(e.to_string().contains("cgroup.subtree_control"), "{e}");
        fs::write(t.path().join("cgroup.subtree_control"), "").unwrap();
        fs::write(root.join("cgroup.subtree_control"), "").unwrap();
        prepare_cgroups(&root).unwrap();
        assert!(root.is_dir());
        assert_eq!(fs::read_to_string(t.path().join("cgroup.subtree_control")).unwrap(), CONTROLLERS);
        assert_eq!(fs::read_to_string(root.join("cgroup.subtree_control")).unwrap(), CONTROLLERS);
    }
}
